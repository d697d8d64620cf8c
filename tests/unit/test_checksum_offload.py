"""Checksum offload: a capture taken on a host whose NIC fills in its outgoing TCP checksums sees those packets
with checksums that do not verify. `--checksum auto` (the default) tracks them when they come from the capturing
host's own addresses, both in the pure-Python engine and in the compiled packet loop (which must agree); the
others are still counted and not tracked; the counters and hints add up on several shards."""

from __future__ import annotations

import json
import socket
import subprocess

import pytest

from midstat_tui.capture.files import FileSource
from midstat_tui.capture.host import host_addresses
from midstat_tui.decode.checksum import ChecksumPolicy
from midstat_tui.engine.headless import add_stats
from midstat_tui.engine.hints import packet_status, stats_hints
from midstat_tui.engine.pipeline import Engine, run_file
from midstat_tui.tcp.connection import COMPILED_AVAILABLE
from tests.helpers import FIXTURES, midstat, unfilled_copy
from tests.unit.test_compiled_core import state_of

CLIENT4 = socket.inet_aton("10.231.1.1")
CLIENT6 = socket.inet_pton(socket.AF_INET6, "fd31:1::1")


def _run(path, policy: ChecksumPolicy, compiled: bool, slow: list | None = None) -> tuple[dict, dict]:
    source = FileSource(str(path))
    engine = Engine(source.datalink, checksums=policy, compiled=compiled)
    if slow is not None:  # the packets the Python path took (the compiled loop left them)
        feed = engine.feed
        engine.feed = lambda ts, frame: (slow.append(frame), feed(ts, frame))  # type: ignore[method-assign]
    last = run_file(engine, source.batches())
    table = {key: state_of(conn) for key, conn in engine.tracker.table.items()}
    return last.stats, table


FILES = ["close_client_first.pcap", "lossy_transfer.pcap", "ipv6_close.pcap", "vlan_close.pcap",
         "simultaneous_close.pcap", "mixed_traffic.pcap"]


@pytest.mark.parametrize("name", FILES)
def test_the_hosts_own_unfilled_checksums_are_tracked_as_if_right(name, tmp_path):
    original = FIXTURES / name
    spoiled_path = tmp_path / name
    spoiled = unfilled_copy(original, spoiled_path, (CLIENT4, CLIENT6))
    assert spoiled > 0
    host = ChecksumPolicy("auto", host=(CLIENT4, CLIENT6, socket.inet_aton("127.0.0.1")))
    want_stats, want = _run(original, ChecksumPolicy("verify"), compiled=False)
    for compiled in (False, True) if COMPILED_AVAILABLE else (False,):
        stats, table = _run(spoiled_path, host, compiled)
        assert table == want, compiled  # every field of every connection, as on the undamaged capture
        assert stats["offloaded_checksum"] == spoiled and stats["bad_checksum"] == 0
        assert stats["started"] == want_stats["started"] and stats["ended"] == want_stats["ended"]
        assert any("checksum offload" in hint for hint in stats["hints"])
        if compiled:  # the compiled loop takes the offloaded packets itself, as it takes the right ones
            slow: list = []
            _run(spoiled_path, host, True, slow)
            slow_right: list = []
            _run(original, ChecksumPolicy("verify"), True, slow_right)
            assert len(slow) == len(slow_right)
        # verify: the same packets are bad and not tracked, counted by source; the two engines still agree
        stats_v, table_v = _run(spoiled_path, ChecksumPolicy("verify"), compiled)
        assert stats_v["bad_checksum"] == spoiled and stats_v["offloaded_checksum"] == 0
        assert sum(stats_v["bad_checksum_from"].values()) == spoiled
        assert table_v == _run(spoiled_path, ChecksumPolicy("verify"), False)[1]


def test_bad_checksums_from_elsewhere_are_still_bad(tmp_path):
    """Only the host's own packets are taken as offloaded: the server's spoiled packets stay untracked."""
    spoiled_path = tmp_path / "c.pcap"
    server = socket.inet_aton("10.231.2.1")
    spoiled = unfilled_copy(FIXTURES / "close_client_first.pcap", spoiled_path, (server,))
    for compiled in (False, True) if COMPILED_AVAILABLE else (False,):
        stats, table = _run(spoiled_path, ChecksumPolicy("auto", host=(CLIENT4,)), compiled)
        assert stats["bad_checksum"] == spoiled and stats["offloaded_checksum"] == 0
        assert stats["bad_checksum_from"] == {"10.231.2.1": spoiled}
        conns = list(table.values())
        assert conns and all(conn["s.packets"] == 0 for conn in conns)
        # the flow screen's `bad csum`: every spoiled packet arrived after the client's SYN made the connection
        assert sum(conn["bad_checksum"] for conn in conns) == spoiled


def test_ignore_takes_every_packet_and_says_nothing(tmp_path):
    spoiled_path = tmp_path / "c.pcap"
    unfilled_copy(FIXTURES / "close_client_first.pcap", spoiled_path, (CLIENT4,))
    stats, table = _run(spoiled_path, ChecksumPolicy("ignore"), True)
    assert table == _run(FIXTURES / "close_client_first.pcap", ChecksumPolicy("verify"), True)[1]
    assert stats["bad_checksum"] == stats["offloaded_checksum"] == 0 and stats["hints"] == []


def test_hints_are_made_from_the_merged_counters():
    """Two shards' counters: the hint speaks of their sum and of the source with most bad checksums overall."""
    policy = ChecksumPolicy("verify").describe()
    one = {"packets": 10, "bad_checksum": 3, "bad_checksum_from": {"10.0.0.1": 1, "10.0.0.2": 2},
           "offloaded_checksum": 0, "checksum": policy, "non_tcp": 1, "malformed": {"short": 2}, "hints": ["x"]}
    two = {"packets": 10, "bad_checksum": 4, "bad_checksum_from": {"10.0.0.1": 4}, "offloaded_checksum": 0,
           "checksum": policy, "non_tcp": 0, "malformed": {"short": 1, "bad_header": 1}, "hints": ["y"]}
    merged = add_stats([one, two])
    assert merged["hints"] == stats_hints(merged)
    assert merged["hints"] == ["7 TCP packets with a bad checksum not tracked (5 from 10.0.0.1): a capture taken on "
                               "10.0.0.1 with checksum offload? --checksum ignore tracks them"]
    assert packet_status(merged) == ("packets: 1 non-TCP (skipped), 4 malformed (bad_header 1, short 3; skipped), "
                                     "7 bad checksum (not tracked)")
    live = dict(merged, checksum=ChecksumPolicy("verify", host=(socket.inet_aton("10.0.0.1"),), interface="eth0",
                                                tx_offload=True).describe())
    assert "sent by this host (10.0.0.1): checksum offload; --checksum auto" in stats_hints(live)[0]
    offloaded = dict(live, bad_checksum=0, offloaded_checksum=9, checksum=dict(live["checksum"], mode="auto"))
    assert stats_hints(offloaded) == ["9 packets sent by this host carried a checksum its network card fills in "
                                      "later (checksum offload, tx-checksumming on eth0): tracked; --checksum "
                                      "verify drops them"]
    assert stats_hints({}) == [] and packet_status({}) == ""


def test_the_host_addresses_come_from_the_kernel():
    """The netlink dump holds loopback's addresses and every address `ip` lists."""
    found = set(host_addresses())
    assert socket.inet_aton("127.0.0.1") in found
    listed = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True, check=True).stdout.split()
    for word in listed:
        if "/" in word and word[0].isalnum() and ("." in word or ":" in word):
            text = word.split("/")[0]
            family = socket.AF_INET6 if ":" in text else socket.AF_INET
            assert socket.inet_pton(family, text) in found, text


def test_a_file_with_unfilled_checksums_says_what_to_do(tmp_path):
    """A file has no host to ask: the default verifies, and --plain says how many, from where, and the flag."""
    spoiled_path = tmp_path / "offloaded.pcap"
    spoiled = unfilled_copy(FIXTURES / "close_client_first.pcap", spoiled_path, (CLIENT4,))
    proc = midstat("-r", str(spoiled_path), "--plain", "--cores", "1")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.decode().splitlines()
    assert f"# packets: {spoiled} bad checksum (not tracked)" in lines
    assert (f"# hint: {spoiled} TCP packets with a bad checksum not tracked ({spoiled} from 10.231.1.1): a capture "
            "taken on 10.231.1.1 with checksum offload? --checksum ignore tracks them") in lines
    for flags in (("--checksum", "ignore"), ("--no-checksum",)):
        fixed = midstat("-r", str(spoiled_path), "--summary", "--json", "--cores", "2", *flags)
        want = midstat("-r", str(FIXTURES / "close_client_first.pcap"), "--summary", "--json", "--cores", "2")
        assert fixed.returncode == 0 and want.returncode == 0
        got, expected = json.loads(fixed.stdout), json.loads(want.stdout)
        assert [(c["client"], c["packets_c2s"], c["packets_s2c"], c["zeek_state"]) for c in got["connections"]] == \
            [(c["client"], c["packets_c2s"], c["packets_s2c"], c["zeek_state"]) for c in expected["connections"]]
        assert got["stats"]["hints"] == [] and got["stats"]["checksum"]["mode"] == "ignore"


def test_contradicting_checksum_flags_are_an_error():
    proc = midstat("-r", str(FIXTURES / "close_client_first.pcap"), "--summary", "--no-checksum",
                   "--checksum", "verify")
    assert proc.returncode == 2
    assert proc.stderr.decode() == "midstat: --no-checksum and --checksum verify contradict each other\n"
    bad = midstat("-r", str(FIXTURES / "close_client_first.pcap"), "--summary", "--checksum", "maybe")
    assert bad.returncode == 2 and b"Traceback" not in bad.stderr




def test_a_tui_session_keeps_the_policy_across_a_seek():
    """The TUI's session seeks back on a checkpoint (the engine pickled) or on a fresh engine: the host's offloaded
    packets must stay tracked on both."""
    import pickle

    from midstat_tui.engine.session import Session

    policy = ChecksumPolicy("auto", host=(CLIENT4,), interface="c0", tx_offload=True)
    source = FileSource(str(FIXTURES / "close_client_first.pcap"))
    session = Session(Engine(source.datalink, checksums=policy), source, live=False, speed=0.0)
    try:
        for engine in (session._fresh_engine(), pickle.loads(pickle.dumps(session.engine))):
            assert engine.checksums == policy and engine.tracker.offload_sources == {CLIENT4}
            assert engine._offload_blob == b"\x04" + CLIENT4
    finally:
        source.close()
