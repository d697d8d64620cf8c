"""engine.live_write: a live shard's --write choices and picks, driven here by kernel-made captures cut into batches
(the wall clock read from the packets), checked against the file mode's exact two-pass --write and the flow's
replay: a term true from the first packet picks what the file mode writes; a state term starts at the packet that
made it true; port-reuse incarnations stay apart; batch borders change nothing."""

from __future__ import annotations

from pathlib import Path

import dpkt
import pytest

from midstat_tui.engine.driver import Driver
from midstat_tui.engine.flow_packets import FlowReader, FlowRef
from midstat_tui.engine.live_write import LiveChooser
from midstat_tui.engine.pipeline import Engine
from midstat_tui.engine.records import row_of
from midstat_tui.output.pcap_write import LiveOutput, PcapWriter, open_output, write_connections
from midstat_tui.problems import Lens
from midstat_tui.query import compile_query
from midstat_tui.tcp.states import CLOSE_WAIT, TIME_WAIT
from tests.helpers import FIXTURES
from tests.rewrite_pcap import port_reuse


def _packets(path: Path) -> tuple[list[tuple[float, bytes]], int]:
    with open(path, "rb") as fh:
        reader = dpkt.pcap.Reader(fh)
        return [(ts, bytes(frame)) for ts, frame in reader], reader.datalink()


def _live(path: Path, match: str | None, size: int, compiled: bool = True) -> tuple[list[tuple[float, bytes]], int]:
    """The capture through a live shard's engine in batches of `size`; the frames picked (by the compiled core's
    pick_keys, or the Python loop) and the connections chosen."""
    packets, link = _packets(path)
    engine = Engine(link)
    predicate = compile_query(match, Lens()) if match else None

    def wanted(conn, now):
        return predicate is None or predicate(row_of(conn), now)

    picked: list[tuple[float, bytes]] = []
    chosen = [0]

    def send(now, fresh, frames):
        chosen[0] += fresh
        picked.extend(frames)

    chooser = LiveChooser(engine, wanted, send, match)
    if not compiled:
        chooser._pick = None
    batches = [packets[i:i + size] for i in range(0, len(packets), size)]
    clock = iter([b[-1][0] for b in batches] + [packets[-1][0]] * 2)
    Driver(engine, every_second=True).run_wall(batches, clock=lambda: next(clock),
                                               after_batch=lambda batch, now: chooser.tap(batch, now))
    assert chooser.chosen == chosen[0] and chooser.packets == len(picked)
    return picked, chosen[0]


def _file_mode(path: Path, match: str | None, tmp_path: Path) -> list[tuple[float, bytes]]:
    reader = FlowReader(str(path))
    rows = reader.select(match)
    out = tmp_path / "file_mode.pcap"
    writer = PcapWriter(open_output(str(out)), reader.datalink)
    write_connections(reader, rows, writer)
    writer.close()
    reader.close()
    return _packets(out)[0]


def _reuse(tmp_path: Path) -> Path:
    """close_client_first.pcap, then the same conversation on the same ports 5 s later with other ISNs."""
    return port_reuse(tmp_path / "reuse.pcap")[0]


def _same(ours, theirs) -> None:
    assert [f for _, f in ours] == [f for _, f in theirs]
    assert all(abs(a - b) < 1e-6 for (a, _), (b, _) in zip(ours, theirs, strict=True))


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("size", [1, 7, 1024])
@pytest.mark.parametrize(("capture", "match", "count"), [
    ("mixed_traffic.pcap", "dport 6002", 3),
    ("mixed_traffic.pcap", None, None),
    ("vlan_close.pcap", "vlan 100", 1),
    ("unreachable.pcap", None, None),      # ICMP errors quoting the connection, with its segments
    ("reuse", "port 5001 or port 5000 or port 5002 or port 5003", 2),
])
def test_a_term_true_from_the_first_packet_picks_what_the_file_mode_writes(tmp_path, capture, match, count, size,
                                                                          compiled):
    path = _reuse(tmp_path) if capture == "reuse" else FIXTURES / capture
    if capture == "reuse":  # its server port, whatever it is
        port = dpkt.ethernet.Ethernet(_packets(path)[0][0][1]).data.data.dport
        match = f"dport {port}"
    picked, chosen = _live(path, match, size, compiled)
    expected = _file_mode(path, match, tmp_path)
    assert expected
    _same(picked, expected)
    if count is not None:
        assert chosen == count


@pytest.mark.parametrize("size", [1, 5, 1024])
def test_a_state_term_starts_at_the_packet_that_made_it_true(size):
    """close_client_first.pcap: the server is in CLOSE_WAIT from the client's FIN on; that packet and those after
    it are picked, as the flow's replay shows them."""
    path = FIXTURES / "close_client_first.pcap"
    picked, chosen = _live(path, "sstate CLOSE_WAIT", size)
    reader = FlowReader(str(path))
    (row,) = reader.select(None)
    flow = reader.flow(FlowRef.of(row), keep_frames=True)
    first = next(i for i, p in enumerate(flow.packets) if p.states[1] == CLOSE_WAIT)
    assert 0 < first < len(flow.packets) - 1
    _same(picked, [(p.ts, p.frame) for p in flow.packets[first:]])
    assert chosen == 1


@pytest.mark.parametrize("size", [1, 4, 1024])
def test_reused_port_incarnations_are_picked_each_from_its_own_moment(tmp_path, size):
    """Two incarnations of one tuple, each matching `cstate TIME_WAIT` at its server's FIN: each is picked from that
    packet on, the first one's up to the second one's SYN only (the second takes the tuple there)."""
    path = _reuse(tmp_path)
    picked, chosen = _live(path, "cstate TIME_WAIT", size)
    assert chosen == 2
    reader = FlowReader(str(path))
    expected = []
    for row in reader.select(None):
        flow = reader.flow(FlowRef.of(row), keep_frames=True)
        first = next(i for i, p in enumerate(flow.packets) if p.states[0] == TIME_WAIT)
        expected += [(p.ts, p.frame) for p in flow.packets[first:]]
    assert len(expected) > 2
    _same(picked, expected)


def test_live_output_merges_shards_in_time_order(tmp_path):
    """Core 0's writer: each shard's frames in its order, merged in time order once every shard is past them by
    HOLD; all of it at the close."""
    out = tmp_path / "merged.pcap"
    live = LiveOutput(PcapWriter(open_output(str(out)), 1), shards=2)
    a = [(100.0 + i, b"a" * 60) for i in range(0, 10, 2)]
    b = [(100.0 + i, b"b" * 60) for i in range(1, 10, 2)]
    live.add(0, 1, a[:3])
    live.add(1, 1, b[:4])
    live.clock(104.5)  # up to 103.5 goes out
    assert live.writer.packets == 4
    live.add(0, 0, a[3:])
    live.add(1, 0, b[4:])
    live.close()
    got = _packets(out)[0]
    assert [ts for ts, _ in got] == [100.0 + i for i in range(10)]
    assert live.connections == 2 and live.packets == 10


@pytest.mark.parametrize(("match", "settled"), [
    ("dport 22", True), ("host 10.0.0.1 and not port 80", True), ("10.1.", True), ("vlan 7 or midstream", True),
    ("estab", False), ("wait", False), ("sstate CLOSE_WAIT", False), ("port 80 and ended", False),
    ("problem any", False), ("zeek REJ", False),
])
def test_what_the_first_packet_settles_is_judged_at_the_start_only(match, settled):
    from midstat_tui.query import settled_at_start

    assert settled_at_start(match) is settled


def test_the_tick_judgement_of_a_big_table_goes_in_turns_within_its_budget(monkeypatch):
    """A term that moves without an event (`zeek`) is judged once a second over the table; a table too big for the
    tick's budget is gone through in turns (from where the last tick stopped), and a whole round chooses what one
    unbounded pass would (before the budget, a million connections took 3.9 s of CPU every second)."""
    from midstat_tui.engine import live_write

    packets, link = _packets(FIXTURES / "mixed_traffic.pcap")
    match = "zeek SF or zeek REJ or zeek S0"

    def chooser_after_feeding():
        engine = Engine(link)
        for i in range(0, len(packets), 64):
            engine.feed_batch(packets[i:i + 64])
        predicate = compile_query(match, Lens())
        return engine, LiveChooser(engine, lambda conn, now: predicate(row_of(conn), now), lambda *a: None, match)

    engine, whole = chooser_after_feeding()
    now = engine.tracker.now
    whole._tick(now)
    assert whole.chosen > 4 and whole._round_at >= len(engine.tracker.table)

    monkeypatch.setattr(live_write, "SCAN_BUDGET", 0.0)  # one chunk a tick
    monkeypatch.setattr(live_write, "SCAN_CHUNK", 4)
    engine, turns = chooser_after_feeding()
    rounds = -(-len(engine.tracker.table) // 4)
    chosen_by_tick = []
    for _ in range(rounds):
        turns._tick(now)
        chosen_by_tick.append(turns.chosen)
    assert chosen_by_tick[0] <= 4 and chosen_by_tick[0] < whole.chosen  # the first tick judged one chunk only
    assert turns.chosen == whole.chosen and set(turns.choices) == set(whole.choices)
    turns._tick(now)  # a new round: the chosen ones are not chosen again
    assert turns.chosen == whole.chosen
