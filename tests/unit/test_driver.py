"""The one driver (engine/driver.py): every mode closes its seconds through it, with the same result.

Real captures and real frames through the real engine; the structure checks read the source's syntax tree."""

from __future__ import annotations

import ast
from pathlib import Path

import dpkt
import pytest

from midstat_tui.capture.files import FileSource
from midstat_tui.engine import pipeline, session
from midstat_tui.engine import run as run_entry
from midstat_tui.engine.driver import Driver, Tick
from midstat_tui.engine.headless import Job
from midstat_tui.engine.pipeline import Engine
from midstat_tui.engine.records import row_of
from midstat_tui.tcp.states import ESTABLISHED
from midstat_tui.tcp.tracker import TrackerConfig
from tests.helpers import FIXTURES, shared

ROOT = Path(__file__).resolve().parents[2]
SSH = shared("zeek/Traces/ssh/ssh.pcap")
LOSSY = FIXTURES / "lossy_transfer.pcap"


def _packets(path) -> list[tuple[float, bytes]]:
    source = FileSource(str(path))
    try:
        return [p for batch in source.batches() for p in batch]
    finally:
        source.close()


def _frame(flags: int, seq: int, ack: int, to_server: bool) -> bytes:
    a, b = b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02"
    src, dst, sport, dport = (a, b, 40000, 80) if to_server else (b, a, 80, 40000)
    tcp = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, win=65535)
    ip = dpkt.ip.IP(src=src, dst=dst, p=dpkt.ip.IP_PROTO_TCP, data=tcp, ttl=64)
    ip.len = len(ip)
    return bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=dpkt.ethernet.ETH_TYPE_IP, data=ip))


def _handshake_then_gap(gap: float) -> list[tuple[float, bytes]]:
    """A handshake at t=100, then nothing for `gap` seconds, then one more handshake on another port (a
    packet far in the future)."""
    syn, ack = dpkt.tcp.TH_SYN, dpkt.tcp.TH_ACK
    frames = [(100.0, _frame(syn, 1000, 0, True)), (100.1, _frame(syn | ack, 5000, 1001, False)),
              (100.2, _frame(ack, 1001, 5001, True))]
    late = _frame(syn, 7000, 0, True)
    late = late[:34] + (40001).to_bytes(2, "big") + late[36:]  # another client port: a new connection
    return frames + [(100.2 + gap, late)]


def test_one_shape_for_a_moment_of_the_engine():
    """The headless snapshot, the TUI's pull and the shard's tick are one type."""
    assert pipeline.Snapshot is Tick
    assert session.Pulled is Tick
    tick = Tick(3.0, {"packets": 1}, connections=[])
    assert tick.ts == 3.0 and tick.changes == {} and not tick.reset


def test_a_quiet_gap_is_crossed_in_a_few_steps_and_a_timer_gets_its_own_second():
    """A day without packets costs a few closes, not 86,400; the idle timer's second is closed (and emitted, as
    the connection ended in it) on its own, before the far packet."""
    config = TrackerConfig()
    config.idle_timeouts[ESTABLISHED] = 30.0
    engine = Engine(1, config, verify_checksums=False)
    closed: list[float] = []
    ended_at: list[float] = []

    def emit(position: float, reset: bool) -> None:
        closed.append(position)
        ended_at.append(engine.tracker.stats.ended)
        engine.mark_clean()

    last = Driver(engine, emit).run_packets([_handshake_then_gap(86_400.0)])
    assert engine.tracker.stats.ended == 1
    assert len(closed) <= 4, closed                       # the 101st second, the timer's, and not the rest
    assert closed[0] == 101.0
    assert 130.0 <= closed[1] <= 131.0 and ended_at[1] == 1  # the idle timeout (30 s after the last packet)
    assert last.ts == pytest.approx(86_500.2)


def test_the_tui_emits_every_second_the_headless_run_only_changed_ones():
    packets = _packets(LOSSY)
    seconds: dict[bool, list[float]] = {}
    for every in (False, True):
        engine = Engine(1)
        got: list[float] = []

        def emit(position: float, reset: bool, engine=engine, got=got) -> None:
            got.append(position)
            engine.mark_clean()

        Driver(engine, emit, every_second=every).run_packets([packets])
        seconds[every] = got
    assert set(seconds[False]) <= set(seconds[True])
    assert seconds[True] == sorted(seconds[True]) and len(set(seconds[True])) == len(seconds[True])


@pytest.mark.parametrize("path", [SSH, LOSSY], ids=["ssh", "lossy"])
def test_packet_time_and_clock_driven_loops_end_in_the_same_state(path):
    """The same packets through the file loop (packet time) and the live loop (a clock: here each batch's last
    packet time), small batches so the live loop closes many moments: the same rows and counters at the end."""
    packets = _packets(path)
    batches = [packets[i:i + 7] for i in range(0, len(packets), 7)]
    file_engine = Engine(1)
    end = Driver(file_engine).run_packets(batches).ts

    live_engine = Engine(1)
    live_engine.tracker.track_changes()
    closes: list[float] = []
    driver = Driver(live_engine, lambda position, reset: closes.append(position), every_second=True)
    clock = iter([batches[0][0][0]] + [batch[-1][0] for batch in batches])
    driver.run_wall(batches, clock=lambda: next(clock))
    driver.finish(end)
    span = int(packets[-1][0] - packets[0][0])
    assert len(closes) >= min(2, span)  # the live loop really ticked on the way
    rows = {c.id: row_of(c) for c in live_engine.tracker.table.values()}
    assert rows == {c.id: row_of(c) for c in file_engine.tracker.table.values()}
    for key in ("packets", "tcp_packets", "started", "ended", "active"):
        assert live_engine.stats()[key] == file_engine.stats()[key]


def test_a_seek_back_lands_on_the_same_rows_as_a_run_to_that_moment():
    """The TUI's session replays on the driver: a seek back from the end (checkpoint or start, then quiet
    crossing) gives the rows the headless driver has at that moment."""
    import time

    from tests.helpers import apply_pulled

    packets = _packets(SSH)
    target = packets[len(packets) // 2][0] + 0.25  # mid-capture, connections open
    reference = Engine(1)
    snap = Driver(reference).run_packets([packets], until=target)
    expected = {c.id: row_of(c) for c in snap.connections}

    source = FileSource(str(SSH))
    s = session.Session(Engine(source.datalink), source, live=False, speed=0.0)
    s.start()
    try:
        deadline = time.monotonic() + 30
        while not s.at_end and time.monotonic() < deadline:
            time.sleep(0.01)
        s.pull()
        s.set_paused(True)  # the replay stays where the seek lands
        s.seek(target)
        rows: dict = {}
        while time.monotonic() < deadline:
            pulled = s.pull()
            if pulled.reset:
                rows = apply_pulled({}, pulled)
                break
            time.sleep(0.01)
    finally:
        s.stop()
    assert rows == expected and rows
    assert s.position == target


def _calls(tree: ast.AST) -> list[str]:
    return [node.func.attr for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)]


def test_only_the_driver_moves_an_engines_clock():
    """No run loop of its own anywhere else: the tracker's timers are advanced only in engine/driver.py (and in
    the tracker itself). engine/flow_packets.py (the flow reader, another area) still ends its pass itself."""
    exempt = {"driver.py", "flow_packets.py"}
    offenders = []
    for path in [*sorted((ROOT / "midstat_tui" / "engine").glob("*.py")), ROOT / "midstat_tui" / "cli.py"]:
        if path.name in exempt:
            continue
        if "advance" in _calls(ast.parse(path.read_text())):
            offenders.append(path.name)
    assert offenders == []


def test_the_cli_does_no_engine_work():
    """cli.py parses and wires: it opens no capture, builds no engine, decoder or session, and picks no run path
    (engine/run.py does)."""
    tree = ast.parse((ROOT / "midstat_tui" / "cli.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    for forbidden in ("midstat_tui.engine.pipeline", "midstat_tui.engine.session", "midstat_tui.engine.shard_sessions",
                      "midstat_tui.capture.files", "midstat_tui.capture.live", "midstat_tui.decode.frame"):
        assert forbidden not in imported
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    for forbidden in ("Engine", "FrameDecoder", "FileSource", "LiveSource", "Session", "run_shard", "run_sharded",
                      "run_live_shard"):
        assert forbidden not in names


def test_the_tui_session_is_chosen_by_the_engine():
    """A file: shard workers on one core too (tests/functional/test_cores.py: and a FIFO's engine in a thread)."""
    from midstat_tui.engine.shard_sessions import ShardedFileSession

    job = Job(str(SSH), None, TrackerConfig())
    for cores in (1, 2):
        source = run_entry.open_file(str(SSH), None, None)
        chosen = run_entry.tui_session(job, cores, source, 0.0)
        assert isinstance(chosen, ShardedFileSession) and chosen.count == cores


def test_core_0_merges_the_shards_ticks_into_the_one_engine_picture():
    """Two shards (the placement core 0 uses) each run a driver on their share and emit Ticks; merged, the last
    moment's counters and connections are those of one engine over the whole capture."""
    from midstat_tui.engine.headless import merge_ticks
    from midstat_tui.engine.placement import Placer

    packets = _packets(SSH)
    parts = Placer(1, 2).split(packets)
    assert all(parts)  # both shards really have packets
    end = packets[-1][0]
    lasts = []
    for shard, part in enumerate(parts):
        engine = Engine(1, shard=shard, shard_count=2)
        driver = Driver(engine)
        driver.start(packets[0][0])  # every shard's clock starts at the file's first packet
        driver.run_packets([part])
        driver.finish(end)
        lasts.append(engine.snapshot(end))
    merged = merge_ticks(lasts, end)
    whole = Driver(Engine(1)).run_packets([packets])
    for key in ("packets", "tcp_packets", "bytes", "started", "ended", "active", "in_table"):
        assert merged.stats[key] == whole.stats[key], key
    assert sorted(c.first for c in merged.connections) == sorted(c.first for c in whole.connections)
    assert merged.position == end and not merged.at_end
