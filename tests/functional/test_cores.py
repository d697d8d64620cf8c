"""`--cores N`: N worker processes, each reading the file through a BPF filter that keeps its share of the
connections, merged by core 0. The result must be what one engine finds: same connections, same states and
counters, events in packet-time order; only the CPU column (the owning shard) and connection ids differ."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from midstat_tui.engine.shards import shard_of, share_filter
from tests.helpers import FIXTURES, midstat, shared

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
        "bytes_c2s", "bytes_s2c", "retrans_c2s", "retrans_s2c", "zeek_state", "history", "midstream", "ended")


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
    from midstat_tui.engine.multicore import Job
    from midstat_tui.tcp.tracker import TrackerConfig

    return Job(str(FIXTURES / "mixed_traffic.pcap"), None, TrackerConfig(), summary=True)


class _Collect:
    def event(self, record):
        pass

    def snapshot(self, ts, stats, conns):
        pass

    def last(self, ts, stats, conns, everything, warning):
        self.everything = everything

    def end_time(self, ts):
        return ts


def test_a_failing_worker_is_reported(monkeypatch):
    from midstat_tui.engine import multicore
    from midstat_tui.errors import MidstatError

    real = multicore.run_shard

    def broken(job, shard, count, sink, source=None):
        if shard == 1:
            raise RuntimeError("disk on fire")
        return real(job, shard, count, sink, source)

    monkeypatch.setattr(multicore, "run_shard", broken)  # the forked workers inherit it
    with pytest.raises(MidstatError, match="worker 1 failed: RuntimeError: disk on fire"):
        multicore.run_sharded(_job(), 2, _Collect())


def test_a_dead_worker_is_reported_not_waited_for(monkeypatch):
    import os

    from midstat_tui.engine import multicore
    from midstat_tui.errors import MidstatError

    real = multicore.run_shard

    def dying(job, shard, count, sink, source=None):
        if shard == 0:
            os._exit(3)
        return real(job, shard, count, sink, source)

    monkeypatch.setattr(multicore, "run_shard", dying)
    with pytest.raises(MidstatError, match=r"worker 0 died \(exit status 3\)"):
        multicore.run_sharded(_job(), 2, _Collect())


def test_in_process_merge_gives_every_connection():
    from midstat_tui.engine import multicore

    sink = _Collect()
    multicore.run_sharded(_job(), 3, sink)
    assert len(sink.everything) == 21
