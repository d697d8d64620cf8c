"""`--cores N`: N worker processes, each reading the file through a BPF filter that keeps its share of the
connections, merged by core 0. The result must be what one engine finds: same connections, same states and
counters, events in packet-time order; only the CPU column (the owning shard) and connection ids differ."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest

from midstat_tui.engine.share_filter import shard_of, share_filter
from tests.helpers import FIXTURES, ROOT, apply_pulled, midstat, shared

CAPTURES = [
    shared("zeek/Traces/ssh/ssh.pcap"),
    shared("zeek/Traces/vlan-collisions.pcap"),
    shared("arkime/tests/pcap/twovlan.pcap"),
    shared("ndpi/tests/cfgs/default/pcap/1kxun.pcap"),
    shared("ndpi/tests/cfgs/default/pcap/reddit.pcap"),
    shared("zeek/Traces/echo-connections.pcap.gz"),
    FIXTURES / "mixed_traffic.pcap",
    FIXTURES / "unreachable.pcap",
]
SAME = ("client", "server", "vlan", "client_state", "server_state", "first", "last", "packets_c2s", "packets_s2c",
        "bytes_c2s", "bytes_s2c", "retrans_bytes_c2s", "retrans_bytes_s2c", "zeek_state", "history", "midstream",
        "ended")


def _summary(path, cores: int) -> dict:
    proc = midstat("-r", str(path), "--summary", "--json", "--no-checksum", "--cores", str(cores))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _facts(doc: dict) -> Counter:
    return Counter(tuple(json.dumps(c[k]) for k in SAME) for c in doc["connections"])


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
@pytest.mark.parametrize("cores", [2, 3])
def test_summary_is_the_same_on_several_cores(path, cores):
    one = _summary(path, 1)
    many = _summary(path, cores)
    assert _facts(many) == _facts(one)
    assert many["stats"]["packets"] == one["stats"]["packets"]
    assert many["stats"]["tcp_packets"] == one["stats"]["tcp_packets"]
    shards = {c["shard"] for c in many["connections"]}
    assert shards <= set(range(cores))
    if len(many["connections"]) > 20:
        assert len(shards) == cores  # the work is actually spread
    assert len({c["conn"] for c in many["connections"]}) == len(many["connections"])  # ids stay unique
    order = [(c["first"], c["conn"]) for c in many["connections"]]
    assert order == sorted(order)  # merged in the order they started


def _snapshots(path, cores: int) -> list:
    proc = midstat("-r", str(path), "--json", "--no-checksum", "--cores", str(cores))
    assert proc.returncode == 0, proc.stderr
    return [(d["ts"], d["stats"]["packets"], d["stats"]["bad_checksum"], _facts(d))
            for d in map(json.loads, proc.stdout.splitlines())]


@pytest.mark.parametrize("path", [shared("ndpi/tests/cfgs/default/pcap/alexa-app.pcapng"),
                                  shared("ndpi/tests/cfgs/default/pcap/1kxun.pcap")], ids=lambda p: p.name)
def test_the_last_seconds_snapshots_are_the_same_on_several_cores(path):
    """`--json`'s snapshots of the file's last seconds: the same moments, counters and rows on 2 cores as on 1 (a
    shard whose share ended before the file did gave core 0 its counters of a second or more before)."""
    one, two = _snapshots(path, 1), _snapshots(path, 2)
    assert [s[0] for s in two] == [s[0] for s in one]
    assert two[-4:] == one[-4:]


@pytest.mark.parametrize("path", [shared("ndpi/tests/cfgs/default/pcap/alexa-app.pcapng"),
                                  shared("ndpi/tests/cfgs/default/pcap/1kxun.pcap")], ids=lambda p: p.name)
def test_every_snapshot_is_the_same_on_several_cores(path):
    """`--json`'s snapshots all through the file, not just its end: a connection whose linger time ran out in a
    second with no packet of its shard left that shard's table unreported, and core 0 merged the next snapshot with
    the shard's table of a second before (it showed one snapshot late on 2 cores)."""
    one, two = _snapshots(path, 1), _snapshots(path, 2)
    assert len(two) == len(one)
    for a, b in zip(one, two, strict=True):
        assert b == a, f"snapshot at {a[0]}"


def test_events_stay_in_packet_time_order_across_shards():
    path = shared("zeek/Traces/ssh/ssh.pcap")

    def events(cores: int) -> list[dict]:
        proc = midstat("-r", str(path), "--events", "--no-checksum", "--cores", str(cores))
        assert proc.returncode == 0
        return [json.loads(line) for line in proc.stdout.splitlines()]

    one, many = events(1), events(2)
    assert [e["ts"] for e in many] == sorted(e["ts"] for e in many)
    key = ("ts", "event", "client", "server", "client_state", "server_state", "side", "from", "to", "reason")
    assert Counter(tuple(str(e.get(k)) for k in key) for e in many) == Counter(
        tuple(str(e.get(k)) for k in key) for e in one)
    assert {e["shard"] for e in many} == {0, 1}


def test_plain_at_a_moment_on_several_cores():
    path = FIXTURES / "mixed_traffic.pcap"
    ts = json.loads((FIXTURES / "mixed_traffic.json").read_text())["checkpoints"][0]["ts"]

    def rows(cores: int) -> Counter:
        proc = midstat("-r", str(path), "--plain", "--at", repr(ts), "--cores", str(cores))
        assert proc.returncode == 0
        lines = proc.stdout.decode().splitlines()
        assert lines[0].startswith("Proto CPU Client Address")
        return Counter(tuple(line.split()[2:]) for line in lines[1:])

    assert rows(3) == rows(1)


def test_a_connection_and_its_icmp_errors_hash_to_one_shard():
    a, b = bytes([10, 0, 0, 7]), bytes([192, 168, 1, 200])
    for count in (2, 3, 4):
        assert shard_of(a, 40000, b, 80, count) == shard_of(b, 80, a, 40000, count)
    with pytest.raises(ValueError):
        share_filter(2, 2)


def _job():
    from midstat_tui.engine.headless import Job
    from midstat_tui.tcp.tracker import TrackerConfig

    return Job(str(FIXTURES / "mixed_traffic.pcap"), None, TrackerConfig(), summary=True, summary_json=True)


class _Collect:
    def __init__(self):
        self.lost = []

    def event(self, record):
        pass

    def snapshot(self, ts, stats, conns):
        pass

    def last(self, ts, stats, conns, everything, warning):
        self.everything = [json.loads(text) for _, _, text in everything]  # (first packet, id, JSON text)

    def end_time(self, ts):
        return ts

    def worker_lost(self, shard, reason):
        self.lost.append((shard, reason))


def _shard_conns(shard: int, count: int = 2) -> set[int]:
    from midstat_tui.engine import headless

    sink = _Collect()
    headless.run_sharded(_job(), count, sink)
    return {c["conn"] for c in sink.everything if c["shard"] == shard}


def test_a_failing_worker_is_reported_and_the_others_kept(monkeypatch):
    from midstat_tui.engine import headless

    kept = _shard_conns(0)
    real = headless.run_shard

    def broken(job, shard, count, sink, source=None, halt=None):
        if shard == 1:
            raise RuntimeError("disk on fire")
        return real(job, shard, count, sink, source, halt)

    monkeypatch.setattr(headless, "run_shard", broken)  # the forked workers inherit it
    sink = _Collect()
    headless.run_sharded(_job(), 2, sink)
    assert [shard for shard, _ in sink.lost] == [1]
    assert "worker 1 failed: RuntimeError: disk on fire" in sink.lost[0][1]
    assert kept and {c["conn"] for c in sink.everything} == kept


def test_a_dead_worker_is_reported_not_waited_for(monkeypatch):
    import os

    from midstat_tui.engine import headless

    kept = _shard_conns(1)
    real = headless.run_shard

    def dying(job, shard, count, sink, source=None, halt=None):
        if shard == 0:
            os._exit(3)
        return real(job, shard, count, sink, source, halt)

    monkeypatch.setattr(headless, "run_shard", dying)
    sink = _Collect()
    headless.run_sharded(_job(), 2, sink)
    assert sink.lost == [(0, "worker 0 died (exit status 3); its share of the connections is missing from the "
                             "output")]
    assert kept and {c["conn"] for c in sink.everything} == kept


def test_every_worker_failing_is_an_error(monkeypatch):
    from midstat_tui.engine import headless
    from midstat_tui.errors import MidstatError

    def broken(job, shard, count, sink, source=None, halt=None):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(headless, "run_shard", broken)
    with pytest.raises(MidstatError, match="worker 0 failed: RuntimeError: disk on fire"):
        headless.run_sharded(_job(), 2, _Collect())


def test_in_process_merge_gives_every_connection():
    from midstat_tui.engine import headless

    sink = _Collect()
    headless.run_sharded(_job(), 3, sink)
    assert len(sink.everything) == 21


# -- the TUI's replay of a file on several cores ------------------------------------------------------------------


def _rows_facts(rows) -> Counter:
    """What a replay shows, whatever the shard numbering: endpoints, first packet, both states, packet counts."""
    return Counter((r.client, r.server, r.first, r.cstate, r.sstate, r.packets_c2s, r.packets_s2c, r.ended)
                   for r in rows.values())


def _pull_until(session, rows: dict, cond, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = apply_pulled(rows, session.pull())
        if cond():
            return rows
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_the_tuis_sharded_file_replay_matches_one_shard_and_seeks_back():
    from midstat_tui.engine.headless import Job
    from midstat_tui.engine.shard_sessions import ShardedFileSession
    from midstat_tui.tcp.tracker import TrackerConfig
    from tests.unit.test_session import _reference_rows

    path = FIXTURES / "mixed_traffic.pcap"  # two dozen real connections of every kind
    whole = _reference_rows(path, until=None)
    first, last = min(r.first for r in whole.values()), max(r.last for r in whole.values())
    target = (first + last) / 2
    session = ShardedFileSession(Job(str(path), None, TrackerConfig()), 2, speed=0)
    session.start()
    try:
        rows = _pull_until(session, {}, lambda: session.at_end)
        rows = _pull_until(session, rows, lambda: True)
        assert _rows_facts(rows) == _rows_facts(whole)
        assert {r.shard for r in rows.values()} == {0, 1}
        some = next(iter(rows.values()))
        detail = session.connection(some.id)  # from the shard that owns it
        assert detail is not None and detail[0].id == some.id and detail[2][0]["to"] in ("SYN_SENT", "ESTABLISHED")
        session.toggle_pause()
        session.seek(target)
        deadline = time.monotonic() + 30
        while not (pulled := session.pull()).reset:  # the new picture comes whole, once every shard has sought
            assert time.monotonic() < deadline, "no reset after the seek"
            time.sleep(0.05)
        seen = apply_pulled({}, pulled)
        assert seen and pulled.position == target
        assert _rows_facts(seen) == _rows_facts(_reference_rows(path, until=target))
    finally:
        session.stop()


def test_the_tuis_sharded_file_replay_keeps_capture_pace_pauses_and_steps():
    from midstat_tui.engine.headless import Job
    from midstat_tui.engine.shard_sessions import ShardedFileSession
    from midstat_tui.tcp.tracker import TrackerConfig

    # 2.5 s of real traffic, played at half speed: 5 s
    session = ShardedFileSession(Job(str(FIXTURES / "mixed_traffic.pcap"), None, TrackerConfig()), 2, speed=0.5)
    session.start()
    try:
        _pull_until(session, {}, lambda: session.first_ts is not None and session.position is not None)
        time.sleep(2.0)
        played = session.position - session.first_ts
        assert 0.3 <= played <= 1.8, played  # both shards on one clock, at half the capture's pace
        session.toggle_pause()
        time.sleep(0.5)
        held = session.position
        time.sleep(1.0)
        assert session.position == held  # paused: nothing moves
        session.step(0.5)
        _pull_until(session, {}, lambda: session.position != held, timeout=10)
        assert abs(session.position - (held + 0.5)) < 1e-6
        assert session.paused and not session.at_end
    finally:
        session.stop()


def test_the_tuis_sharded_seeks_across_the_start_and_the_end():
    """Issue 9 §4 on two shards: each seek gives the table of that moment, before the first packet and past the
    last one too, and a replay resumed from before the start shows the whole file again."""
    from midstat_tui.engine.headless import Job
    from midstat_tui.engine.shard_sessions import ShardedFileSession
    from midstat_tui.tcp.tracker import TrackerConfig
    from tests.unit.test_session import SEEKS, _reference_rows

    path = FIXTURES / "mixed_traffic.pcap"
    whole = _reference_rows(path, until=None)
    first = min(r.first for r in whole.values())
    session = ShardedFileSession(Job(str(path), None, TrackerConfig()), 2, speed=0)
    session.start()
    try:
        _pull_until(session, {}, lambda: session.at_end)
        session.toggle_pause()
        for offset in SEEKS:
            session.seek(first + offset)
            deadline = time.monotonic() + 30
            while not (pulled := session.pull()).reset:
                assert time.monotonic() < deadline, "no reset after the seek"
                time.sleep(0.05)
            assert pulled.position == first + offset, offset
            seen = apply_pulled({}, pulled)
            assert _rows_facts(seen) == _rows_facts(_reference_rows(path, until=first + offset)), offset
        session.toggle_pause()  # on from the last seek's table, as the face goes on from what it shows
        rows = _pull_until(session, seen, lambda: session.at_end and session.position == max(r.last for r in
                                                                                                 whole.values()))
        rows = _pull_until(session, rows, lambda: True)
    finally:
        session.stop()
    assert _rows_facts(rows) == _rows_facts(whole)


def _late_second_shard(tmp_path) -> str:
    """A capture whose first 3 s hold one connection (shard 0 or 1) and then connections on both shards."""
    import sys

    import dpkt

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from synth import ACK, SYN, frame

    c, s = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    t0 = 1_700_000_000.0
    path = tmp_path / "late.pcap"
    with open(path, "wb") as fh:
        writer = dpkt.pcap.Writer(fh, linktype=dpkt.pcap.DLT_EN10MB)
        for start, ports in ((0.0, [40000]), (3.0, list(range(40001, 40017)))):
            for i, port in enumerate(ports):
                t = t0 + start + i * 0.01
                writer.writepkt(frame(c, s, port, 80, 1, 0, SYN, 0, None), ts=t)
                writer.writepkt(frame(s, c, 80, port, 100, 2, SYN | ACK, 0, None), ts=t + 0.001)
                writer.writepkt(frame(c, s, port, 80, 2, 101, ACK, 0, None), ts=t + 0.002)
    return str(path)


def test_the_tuis_sharded_clock_runs_before_every_shard_has_a_packet(tmp_path):
    """Issue 9 §4: on several shards the clock read 1970-01-01 (position 0) until every shard had seen a packet.
    Here one shard's first packet comes 3 s in: the clock must show the file's time from the first second on."""
    from midstat_tui.engine.headless import Job
    from midstat_tui.engine.shard_sessions import ShardedFileSession
    from midstat_tui.tcp.tracker import TrackerConfig

    path = _late_second_shard(tmp_path)
    t0 = 1_700_000_000.0
    session = ShardedFileSession(Job(path, None, TrackerConfig()), 2, speed=1.0)
    session.start()
    seen: list = []
    rows: dict = {}
    try:
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            rows = apply_pulled(rows, session.pull())
            seen.append(session.position)
            time.sleep(0.05)
        assert session.span == (t0, pytest.approx(t0 + 3.152, abs=1e-5))
        rows = _pull_until(session, rows, lambda: session.at_end)
    finally:
        session.stop()
    assert {r.shard for r in rows.values()} == {0, 1}  # both shards own connections: one of them started late
    known = [p for p in seen if p is not None]
    assert known and all(t0 <= p <= t0 + 3.0 for p in known), seen
    assert known[-1] >= t0 + 1.0  # the clock moved on its own within those 2.5 s


def test_the_tuis_file_replay_on_one_core_runs_its_engine_in_a_worker():
    """On one core too, a file's engine is a shard worker's (a process of its own: the app's thread never waits for
    the engine's interpreter lock), and it replays the file as one engine does; a once-only stream (a pipe, a FIFO:
    it cannot be read again to seek) keeps the engine in a thread of the app's process."""
    import os

    from midstat_tui.capture.files import FileSource
    from midstat_tui.engine.headless import Job
    from midstat_tui.engine.run import tui_session
    from midstat_tui.engine.session import Session
    from midstat_tui.engine.shard_sessions import ShardedFileSession
    from midstat_tui.tcp.tracker import TrackerConfig
    from tests.unit.test_session import _reference_rows

    path = FIXTURES / "mixed_traffic.pcap"
    session = tui_session(Job(str(path), None, TrackerConfig()), 1, FileSource(str(path)), 0.0)
    assert isinstance(session, ShardedFileSession) and session.count == 1
    session.start()
    try:
        (worker,) = session._workers.processes
        assert worker.is_alive() and worker.pid != os.getpid()
        rows = _pull_until(session, {}, lambda: session.at_end)
        rows = _pull_until(session, rows, lambda: True)
        assert rows == _reference_rows(path, until=None)
    finally:
        session.stop()
    assert not worker.is_alive()

    source = FileSource(str(path))
    source.stream = True  # as a pipe or FIFO opens (capture.files: read once, through a feeder)
    session = tui_session(Job(str(path), None, TrackerConfig()), 1, source, 0.0)
    try:
        assert isinstance(session, Session) and session.source is source
    finally:
        source.close()
