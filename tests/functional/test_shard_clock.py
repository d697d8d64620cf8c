"""One clock for a file's packets on every shard (issue #10): a far-future packet, or packets dated back, give the
same connections, states, times and counts on one core and on several, read from a file, a .gz or a pipe.

Each shard keeps only its share of the packets, so before this a packet dated ten days ahead timed out the other
connections on one core but only those of its own shard on two, and the count of packets dated backwards differed
(each shard compared only its own packets' times)."""

from __future__ import annotations

import gzip
import json
import sys
from collections import Counter

import pytest

from midstat_tui.capture.clock import PacketClock
from tests.helpers import ROOT, fixture_packets, midstat

sys.path.insert(0, str(ROOT / "scripts"))
import hostile_frames as hf  # noqa: E402

TEN_DAYS = 10 * 86400.0


_packets = fixture_packets


def _time_travelled() -> list[tuple[float, bytes]]:
    """mixed_traffic.pcap with one packet dated ten days ahead (mid-file) and a run of packets dated a minute back."""
    packets = _packets("mixed_traffic.pcap")
    middle = len(packets) // 2
    out = []
    for i, (ts, frame) in enumerate(packets):
        if i == middle:
            ts += TEN_DAYS
        elif 10 <= i < 30:
            ts -= 60.0
        out.append((ts, frame))
    return out


@pytest.fixture(scope="module")
def travelled(tmp_path_factory):
    path = tmp_path_factory.mktemp("clock") / "travelled.pcap"
    hf.write_pcap(str(path), _time_travelled())
    gz = path.with_suffix(".pcap.gz")
    gz.write_bytes(gzip.compress(path.read_bytes()))
    return path, gz


def _summary(*args: str, stdin: bytes | None = None) -> dict:
    proc = midstat(*args, "--summary", "--json", stdin=stdin)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _comparable(doc: dict) -> tuple:
    """The stats and the connections, apart from what names a shard (ids are numbered per shard, and connections
    that start at the same time are listed by id)."""
    stats = {k: v for k, v in doc["stats"].items() if k not in ("hints", "checksum")}
    conns = Counter(json.dumps({k: v for k, v in c.items() if k not in ("conn", "shard")}, sort_keys=True)
                    for c in doc["connections"])
    return stats, conns


def test_the_far_future_packet_ends_the_same_connections_on_every_shard(travelled):
    path, gz = travelled
    one = _summary("-r", str(path), "--cores", "1")
    # the run is not trivially equal: the far-future packet timed connections out, and the late ones were counted
    assert one["stats"]["time_backwards"] > 0
    assert any(c["ended"] == "idle_timeout" for c in one["connections"]), one["connections"]
    for args in (("-r", str(path), "--cores", "2"), ("-r", str(path), "--cores", "3"),
                 ("-r", str(gz), "--cores", "2")):
        assert _comparable(_summary(*args)) == _comparable(one), args


def test_a_pipe_is_dated_as_the_file_is(travelled):
    path, _ = travelled
    one = _summary("-r", str(path), "--cores", "1")
    data = path.read_bytes()
    for cores in ("1", "2"):
        assert _comparable(_summary("-r", "-", "--cores", cores, stdin=data)) == _comparable(one), cores


def test_at_a_moment_after_the_jump_is_the_same_on_every_shard(travelled):
    path, _ = travelled
    packets = _time_travelled()
    at = f"{packets[len(packets) // 2][0] + 0.5:.6f}"
    docs = [_comparable(_summary("-r", str(path), "--cores", cores, "--at", at)) for cores in ("1", "2")]
    assert docs[0] == docs[1]


def test_the_clock_dates_late_packets_at_the_latest_time():
    import struct
    clock = PacketClock()
    meta = b"".join(struct.pack("=IIII", sec, usec, 0, 0) for sec, usec in
                    [(10, 5), (12, 0), (11, 999_999), (12, 0), (9, 0), (13, 1)])
    late = clock.late_in_meta(meta)
    assert late == [(2, 12.0), (4, 12.0)]
    assert clock.latest == 13_000_001
    # the next batch continues the same clock
    assert clock.late_in_meta(struct.pack("=IIII", 13, 0, 0, 0)) == [(0, 13 + 1 * 1e-6)]
    assert clock.date(13, 1) is None and clock.date(12, 0) == 13 + 1e-6
    assert clock.late_in_meta(b"") == []
