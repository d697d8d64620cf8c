"""#13's time-sequence picture (output.timeseq) on kernel-made captures: every data segment is a point at its
relative end, the retransmitted ones are the ladder's, the state changes are the tracker's, and the drawing keeps
to its size."""

from __future__ import annotations

from midstat_tui.engine.flow_packets import RETRANS, FlowReader, FlowRef
from midstat_tui.output.timeseq import BRAILLE, data_span, draw, draw_text, time_sequence
from tests.helpers import FIXTURES


def _flow(name: str):
    reader = FlowReader(str(FIXTURES / f"{name}.pcap"))
    (row,) = reader.select(None)
    return reader.flow(FlowRef.of(row)), row


def test_points_are_the_data_segments_and_their_ends():
    flow, row = _flow("lossy_transfer")
    pic = time_sequence(flow)
    data = [p for p in flow.packets if p.seg.payload]
    assert len(pic.sent[0]) + len(pic.sent[1]) == len(data)
    # the client sent 300,000 bytes (and some again): the highest point is the bytes sent, retransmissions aside
    assert pic.top == row.payload_c2s - row.retrans_bytes_c2s == 300000
    assert max(v for _, v in pic.sent[1]) == row.payload_s2c == 4
    assert len(pic.retrans) == sum(1 for p in data if RETRANS in p.marks) > 0
    assert len(pic.states) == row.transitions


def test_drawing_keeps_to_its_size_and_marks_retransmissions():
    flow, _ = _flow("lossy_transfer")
    pic = time_sequence(flow)
    for width, height in ((80, 20), (160, 40), (40, 12)):
        for span in (None, data_span(pic)):
            rows = draw(pic, width, height, span)
            assert len(rows) == height
            assert all(len(row) <= width for row in rows)
    zoomed = draw(pic, 80, 20, data_span(pic))
    kinds = {kind for row in zoomed for _, kind in row}
    assert {"c2s", "retrans"} <= kinds
    dots = [ch for row in zoomed for ch, kind in row if kind in ("c2s", "s2c", "retrans")]
    assert all(BRAILLE < ord(ch) <= BRAILLE + 0xFF for ch in dots)


def test_state_changes_are_listed_with_their_times():
    flow, _ = _flow("simultaneous_close")
    text = draw_text(time_sequence(flow))
    assert "client FIN_WAIT_1" in text and "client CLOSING" in text and "server CLOSING" in text
    assert "▲" in text


def test_a_connection_without_data_draws_an_empty_plot():
    reader = FlowReader(str(FIXTURES / "refused.pcap"))
    (row,) = reader.select(None)
    pic = time_sequence(reader.flow(FlowRef.of(row)))
    assert pic.top == 0 and not pic.sent[0] and not pic.sent[1]
    assert len(draw(pic, 80, 20)) == 20
