"""#13: the ladder's states are those the main tracker had at each packet, timers firing on the file's clock.

The re-read sees only the flow's own packets (the compiled scanner and the BPF filter skip the rest), but the main
tracker's timers run on every packet of the file, and a packet dated before one read earlier in the file is dated
at that time (capture/clock.py), whichever connection that earlier packet was of. Captures made here from
kernel-made fixtures: the lossy transfer paused mid-stream past its idle timeout while other connections go on, in
file order and out of it. The reference is the main engine over the whole file, packet by packet: each packet of the
tuple, dated as it dated it, with the states of the connection that counted it and whether it had ended by then."""

from __future__ import annotations

import dpkt
import pytest

from midstat_tui.capture.files import FileSource
from midstat_tui.decode.frame import FrameDecoder
from midstat_tui.decode.segment import Segment
from midstat_tui.engine.flow_packets import LATE, FlowReader, FlowRef
from midstat_tui.engine.pipeline import Engine
from midstat_tui.tcp.states import DEFAULT_IDLE_TIMEOUTS, ESTABLISHED
from midstat_tui.tcp.tracker import Tracker, TrackerConfig
from tests.helpers import FIXTURES

IDLE = 20.0  # an established connection's idle timeout here; linger stays 60 s
CONFIG = TrackerConfig(idle_timeouts={**DEFAULT_IDLE_TIMEOUTS, ESTABLISHED: IDLE})
CUT = 150    # the transfer pauses after this many of its packets (mid-stream: both ESTABLISHED)


def _read(name: str) -> tuple[list[tuple[float, bytes]], int]:
    with open(FIXTURES / name, "rb") as fh:
        reader = dpkt.pcap.Reader(fh)
        return [(ts, bytes(frame)) for ts, frame in reader], reader.datalink()


def _write(path, packets: list[tuple[float, bytes]], link: int) -> None:
    with open(path, "wb") as fh:
        writer = dpkt.pcap.Writer(fh, linktype=link)
        for ts, frame in packets:
            writer.writepkt(frame, ts)


def _capture(path, pause: float, in_order: bool) -> None:
    """The lossy transfer, paused after CUT packets for `pause` seconds, mixed_traffic's connections going on
    meanwhile. Out of order: the others come in the file where the pause is, but the transfer's packets after them
    keep their own times (earlier: the file's clock dates them at the others' latest)."""
    flow, link = _read("lossy_transfer.pcap")
    others, _ = _read("mixed_traffic.pcap")
    head, tail = flow[:CUT], flow[CUT:]
    t_cut = head[-1][0]
    shift = t_cut + 1.0 - others[0][0]
    span = others[-1][0] - others[0][0]
    # the others spread over the pause, a packet every few seconds (their own order kept)
    step = (pause - 2.0) / max(1, len(others) - 1)
    moved = [(t_cut + 1.0 + i * step, frame) for i, (_, frame) in enumerate(others)]
    assert shift and span >= 0
    if in_order:
        rest = [(ts + pause, frame) for ts, frame in tail]
    else:
        rest = tail
    _write(path, head + moved + rest, link)


def _main_tracker(path) -> dict[float, list[tuple[float, tuple[int, int], bool]]]:
    """Each connection of the tuple the transfer is on (by its first packet time): its packets as the main engine
    dated them, the states right after each, and whether it had ended before it."""
    source = FileSource(str(path))
    engine = Engine(source.datalink, CONFIG)
    engine.clock = source.clock
    decode = FrameDecoder(source.datalink, True).decode
    key = None
    seen: dict[float, list] = {}
    try:
        for batch in source.batches_from(0):
            for ts, frame in batch:
                seg = decode(ts, frame)
                mine = type(seg) is Segment and seg.dport == 5010 or type(seg) is Segment and seg.sport == 5010
                if mine and key is None:
                    key = Tracker.key_of(seg.vlan, seg.src, seg.sport, seg.dst, seg.dport)
                if mine:
                    engine.tracker.advance(ts)  # what feeding it does first: the timers due by its time
                before = engine.tracker.table.get(key) if mine else None
                ended = before is not None and before.ended is not None
                engine.feed(ts, frame)
                if mine:
                    conn = engine.tracker.table[key]
                    if conn is not before:
                        ended = False
                    seen.setdefault(conn.first, []).append((ts, (conn.c.state, conn.s.state), ended))
    finally:
        source.close()
    return seen


def _ladders(path) -> dict[float, list[tuple[float, tuple[int, int], bool]]]:
    reader = FlowReader(str(path), CONFIG)
    try:
        rows = [row for row in reader.select(None) if row.s_port == 5010]
        assert reader.scanned(FlowRef.of(rows[0])) is not None  # the compiled scanner's way
        out = {}
        for row in rows:
            flow = reader.flow(FlowRef.of(row))
            out[row.first] = [(p.ts, p.states, LATE in p.marks) for p in flow.packets]
        return out
    finally:
        reader.close()


@pytest.mark.parametrize(("pause", "in_order", "incarnations", "late"), [
    (40.0, True, 1, True),     # past the idle timeout, within the linger: the rest is late on the ended one
    (100.0, True, 2, False),   # past the linger too: the rest is a new connection, picked up mid-stream
    (40.0, False, 1, True),    # out of order: the rest is dated at the others' latest (the file's clock)
    (100.0, False, 2, False),
], ids=["late-in-order", "reborn-in-order", "late-redated", "reborn-redated"])
def test_ladder_states_are_the_main_trackers_on_the_file_clock(tmp_path, pause, in_order, incarnations, late):
    path = tmp_path / "paused.pcap"
    _capture(path, pause, in_order)
    expected = _main_tracker(path)
    assert len(expected) == incarnations
    got = _ladders(path)
    assert sorted(got) == sorted(expected)
    for first, packets in expected.items():
        assert got[first] == packets, first
    first_one = expected[min(expected)]
    assert any(was_late for _, _, was_late in first_one) == late
    # the transfer's packets after the pause are dated past the idle timeout either way
    assert max(ts for packets in expected.values() for ts, _, _ in packets) - min(expected) > IDLE


def test_the_scan_ends_at_the_flows_last_packet_on_the_file_clock(tmp_path):
    """The scanner stops at the first record dated after the flow's last packet (the clock never goes back): the
    first incarnation's scan holds none of the second's packets, and its ladder is the one a whole scan gives."""
    import mmap

    from midstat_tui.engine.flow_packets import _core_scan, attribute

    path = tmp_path / "reborn.pcap"
    _capture(path, 100.0, in_order=False)
    reader = FlowReader(str(path), CONFIG)
    try:
        first, second = sorted((row for row in reader.select(None) if row.s_port == 5010), key=lambda r: r.first)
        ref = FlowRef.of(first)
        assert ref.bad_checksum == 0
        cut = reader.scanned(ref)
        with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as view:
            whole = _core_scan(view, reader.datalink, ref.c_addr, ref.c_port, ref.s_addr, ref.s_port, ref.first)
        assert cut == [item for item in whole if item[0] <= ref.last]
        assert len(cut) == CUT < len(whole)
        assert all(ts >= second.first for ts, _ in whole[CUT:])
        a = attribute(cut, ref, reader.datalink, CONFIG, None, False)
        b = attribute(whole, ref, reader.datalink, CONFIG, None, False)
        assert [(p.ts, p.states, p.marks) for p in a.packets] == [(p.ts, p.states, p.marks) for p in b.packets]
    finally:
        reader.close()
