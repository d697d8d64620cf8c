"""#13 in the flow screen: `l` switches the story and the ladder, the ladder scrolls, Enter unfolds a folded run,
`a` shows absolute numbers, `w` writes the flow's packets (read back with dpkt: the same frames as the capture's)."""

from __future__ import annotations

import dpkt
import pytest

from midstat_tui.engine.flow_packets import FlowReader, FlowRef
from midstat_tui.ui.flow_screen import FlowScreen
from midstat_tui.ui.ladder_view import LadderView
from tests.helpers import FIXTURES
from tests.ui.conftest import make_app

SIZES = [(80, 24), (160, 40)]
CASES = ["close_client_first", "simultaneous_close", "lossy_transfer", "reset_by_server", "midstream"]


def _capture_frames(path) -> list[tuple[float, bytes]]:
    with open(path, "rb") as fh:
        return [(ts, bytes(frame)) for ts, frame in dpkt.pcap.Reader(fh)]


async def _open_ladder(app, pilot) -> LadderView:
    await pilot.press("enter")
    await pilot.pause()
    assert isinstance(app.screen, FlowScreen)
    await pilot.press("l")
    await pilot.pause()
    view = app.screen.query_one(LadderView)
    assert view.display and app.screen.has_class("ladder")
    return view


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", CASES)
async def test_ladder_shows_every_packet_and_fits(tmp_path, name, size):
    app = make_app(FIXTURES / f"{name}.pcap", tmp_path)
    async with app.run_test(size=size) as pilot:
        view = await _open_ladder(app, pilot)
        flow = view.flow
        row = app.screen.last[0]
        assert flow is not None and len(flow.packets) == row.packets_c2s + row.packets_s2c
        shown = sum(1 for line in view.lines if line.kind == "packet")
        folded = sum(line.last - line.first + 1 for line in view.lines if line.kind == "fold" and
                     line.fold not in view.unfolded)
        assert shown + folded == len(flow.packets)
        assert max(len(line.text) for line in view.lines) <= view.scrollable_content_region.width
        await pilot.press("l")
        assert not app.screen.has_class("ladder")
        assert app.screen.query_one("#flow-timeline").display


async def test_enter_unfolds_and_folds_back(tmp_path):
    app = make_app(FIXTURES / "lossy_transfer.pcap", tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        view = await _open_ladder(app, pilot)
        folded = [i for i, line in enumerate(view.lines) if line.kind == "fold"]
        assert len(folded) == 1
        before = len(view.lines)
        view.highlighted = folded[0]
        await pilot.press("enter")
        await pilot.pause()
        assert len(view.lines) > before + 100
        assert sum(1 for line in view.lines if line.kind == "packet") == len(view.flow.packets)
        # scrolls: the end of the unfolded ladder is reachable
        await pilot.press("end")
        await pilot.pause()
        assert view.highlighted == len(view.lines) - 1
        assert view.scroll_offset.y > 0
        heading = next(i for i, line in enumerate(view.lines) if line.kind == "fold")
        view.highlighted = heading
        await pilot.press("enter")
        await pilot.pause()
        assert len(view.lines) == before


async def test_a_switches_absolute_numbers(tmp_path):
    app = make_app(FIXTURES / "close_client_first.pcap", tmp_path)
    async with app.run_test(size=(160, 40)) as pilot:
        view = await _open_ladder(app, pilot)
        syn = view.flow.packets[0].seg
        first = next(line.text for line in view.lines if line.kind == "packet")
        assert "seq=0 " in first
        await pilot.press("a")
        first = next(line.text for line in view.lines if line.kind == "packet")
        assert f"seq={syn.seq} " in first


async def test_w_writes_the_flow_packets(tmp_path):
    capture = FIXTURES / "reset_by_server.pcap"
    app = make_app(capture, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("enter")
        await pilot.pause()
        await pilot.press("w")
        await pilot.pause()
        screen = app.screen
        assert "wrote 12 packets" in screen.status
    written = list(tmp_path.glob("midstat-flow-*.pcap"))
    assert len(written) == 1
    tcp = [(pytest.approx(ts, abs=1e-6), frame) for ts, frame in _capture_frames(capture)
           if isinstance(getattr(dpkt.ethernet.Ethernet(frame).data, "data", None), dpkt.tcp.TCP)]
    assert len(tcp) == 12
    assert _capture_frames(written[0]) == tcp


async def test_w_in_a_folder_it_cannot_write_says_so(tmp_path):
    app = make_app(FIXTURES / "refused.pcap", tmp_path)
    app.export_dir = str(tmp_path / "missing")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("enter")
        await pilot.pause()
        await pilot.press("w")
        await pilot.pause()
        status = app.screen.status
        assert status.startswith(f"write failed: cannot write in {tmp_path / 'missing'} as ") and "--user" in status
        assert "--write" not in status  # the headless option's name meant nothing in the TUI


def test_flow_reader_is_what_the_screen_uses():
    reader = FlowReader(str(FIXTURES / "midstream.pcap"))
    (row,) = reader.select(None)
    flow = reader.flow(FlowRef.of(row), keep_frames=True)
    assert flow.midstream and all(p.frame for p in flow.packets)


async def test_t_shows_the_time_sequence_picture_and_z_zooms(tmp_path):
    from midstat_tui.ui.timeseq_view import TimeSeqView

    app = make_app(FIXTURES / "lossy_transfer.pcap", tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("enter")
        await pilot.pause()
        await pilot.press("t")
        await pilot.pause()
        screen = app.screen
        view = screen.query_one(TimeSeqView)
        assert screen.has_class("timeseq") and view.display and not screen.query_one("#flow-timeline").display
        whole = str(view.render())
        assert "300.0 kB" in whole and "0.839400 s" in whole
        await pilot.press("z")
        zoomed = str(view.render())
        assert zoomed != whole and "0.007677 s" in zoomed
        await pilot.press("l")  # to the ladder, and back to the story
        assert screen.has_class("ladder") and not screen.has_class("timeseq")
        await pilot.press("l")
        assert screen.query_one("#flow-timeline").display


async def test_a_watched_flow_is_drawn_followed_and_written(tmp_path):
    """Live, the screen draws what its watch holds (FlowWatch, filled by the capture thread: here with the frames of
    a real capture) and follows it as packets come; `w` writes them."""
    from midstat_tui.engine.flow_packets import FlowWatch

    capture = FIXTURES / "reset_by_server.pcap"
    frames = _capture_frames(capture)
    app = make_app(capture, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("enter")
        await pilot.pause()
        screen = app.screen
        row = screen.last[0]
        screen.reader = None
        screen.watch = watch = FlowWatch(FlowRef.of(row), 1)
        for ts, frame in frames[:6]:
            watch.add(ts, frame)
        await pilot.press("l")
        await pilot.pause()
        view = screen.query_one(LadderView)
        first = sum(1 for line in view.lines if line.kind == "packet")
        assert 0 < first <= 6
        for ts, frame in frames[6:]:
            watch.add(ts, frame)
        screen.refresh_flow()  # the screen's one-second refresh
        await pilot.pause()
        assert sum(1 for line in view.lines if line.kind == "packet") == 12
        await pilot.press("w")
        await pilot.pause()
        assert "wrote 12 packets" in screen.status


async def test_a_live_flow_opened_after_the_fact_shows_its_ring(tmp_path):
    """Live, a flow whose screen opens late: the ladder starts with the last packets its packet ring kept (the
    compiled core, while tracking: here a real capture through the engine, the ring on), then follows the packets
    that come; `w` writes those it has the bytes of and says which it has not."""
    from midstat_tui.capture.files import FileSource
    from midstat_tui.engine.flow_packets import FlowWatch, ring_on, ring_stats, seeded_watch
    from midstat_tui.engine.pipeline import Engine
    from midstat_tui.tcp.connection import COMPILED

    if not COMPILED:
        pytest.skip("the packet ring lives in the compiled core")
    capture = FIXTURES / "reset_by_server.pcap"
    frames = _capture_frames(capture)
    before = ring_stats()
    ring_on(4, 1 << 20)
    try:
        source = FileSource(str(capture))
        engine = Engine(source.datalink)
        source.close()
        engine.feed_batch(frames[:8])  # 8 packets before the screen opens: the ring keeps the last 4
        app = make_app(capture, tmp_path)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("enter")
            await pilot.pause()
            screen = app.screen
            row = screen.last[0]
            screen.reader = None
            screen.watch = watch = seeded_watch(engine, FlowRef.of(row))
            for ts, frame in frames[8:]:
                watch.add(ts, frame)
            await pilot.press("l")
            await pilot.pause()
            view = screen.query_one(LadderView)
            whole = FlowWatch(FlowRef.of(row), 1)
            for ts, frame in frames:
                whole.add(ts, frame)
            whole = whole.flow().packets  # every packet, the watch open from the start
            assert len(whole) > 8
            assert len(view.flow.packets) == len(whole) - 4  # all but the 4 the ring let go
            assert [(p.ts, p.seg.seq, p.seg.ack, p.seg.flags) for p in view.flow.packets] == \
                [(p.ts, p.seg.seq, p.seg.ack, p.seg.flags) for p in whole[4:]]
            assert any(line.kind == "packet" for line in view.lines)
            assert "the last 4 of 8 packets" in screen.status
            assert view.flow.packets[0].ts == frames[4][0] and view.flow.packets[-1].ts == frames[-1][0]
            await pilot.press("w")
            await pilot.pause()
            assert f"wrote {len(whole) - 8} packets" in screen.status and "4 earlier ones" in screen.status
    finally:
        ring_on(before["packets"], before["budget"])


async def test_question_mark_in_the_flow_screen_shows_the_keys_and_comes_back(tmp_path):
    """`?` in the flow screen (it did nothing there): the help, whose keys list the flow screen's, then back."""
    from midstat_tui.ui.help_screen import KEYS, HelpScreen

    app = make_app(FIXTURES / "close_client_first.pcap", tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await _open_ladder(app, pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        assert "`w`" in KEYS and "`l`" in KEYS
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, FlowScreen) and app.screen.has_class("ladder")
