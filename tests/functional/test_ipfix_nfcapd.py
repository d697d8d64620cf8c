"""--ipfix against the real nfdump collector: nfcapd receives the export of real captures, `nfdump -R` reads it
back, and every connection's addresses, ports, VLAN, packets and bytes each way equal midstat's --summary --json."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.collectors import nfcapd, nfdump_totals, summary_totals
from tests.helpers import FIXTURES, midstat, shared

pytestmark = pytest.mark.skipif(shutil.which("nfcapd") is None, reason="nfdump (nfcapd) is not installed")

CAPTURES = [
    shared("ndpi/tests/cfgs/default/pcap/1kxun.pcap"),
    shared("zeek/Traces/ssh/ssh.pcap"),
    FIXTURES / "vlan_close.pcap",
    FIXTURES / "ipv6_close.pcap",
    FIXTURES / "mixed_traffic.pcap",
    FIXTURES / "reset_by_server.pcap",
]


def export(tmp_path, capture, *extra: str) -> tuple[dict, list[dict]]:
    with nfcapd(tmp_path) as collector:
        run = midstat("-r", str(capture), "--summary", "--json", "--ipfix", collector.address, *extra)
        assert run.returncode == 0, run.stderr.decode()
        flows = collector.flows()
    return json.loads(run.stdout), flows


@pytest.mark.parametrize("cores", [1, 2])
@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: p.name)
def test_nfdump_reads_what_summary_says(tmp_path, capture, cores):
    summary, flows = export(tmp_path, capture, "--cores", str(cores))
    conns = summary["connections"]
    assert conns, "the capture has connections"
    expected = summary_totals(conns)
    got = nfdump_totals(flows)
    assert got == expected
    # every record the shards counted as sent reached the collector, none dropped
    assert summary["stats"]["ipfix"]["sent"] == len(flows)
    assert summary["stats"]["ipfix"]["dropped"] == 0
    assert len(flows) >= len(conns)
    # each core exports as its own observation domain (1 + shard): nfcapd sees one exporter per core with records
    assert len({f["export_sysid"] for f in flows}) == len({c["shard"] for c in conns})
    assert all(f["proto"] == 6 for f in flows)


def test_vlan_and_ipv6_reach_nfdump(tmp_path):
    (tmp_path / "vlan").mkdir()
    (tmp_path / "v6").mkdir()
    _, flows = export(tmp_path / "vlan", FIXTURES / "vlan_close.pcap")
    assert flows and all(f["src_vlan"] for f in flows)
    _, flows = export(tmp_path / "v6", FIXTURES / "ipv6_close.pcap")
    assert flows and all("src6_addr" in f for f in flows)


def test_active_timeout_splits_a_long_connection(tmp_path):
    """With a 1 s active timeout the long SSH session goes out in slices, which add up to its totals."""
    capture = shared("zeek/Traces/ssh/ssh.pcap")
    summary, flows = export(tmp_path, capture, "--ipfix-active-timeout", "1", "--cores", "1")
    assert len(flows) > len(summary["connections"])
    assert nfdump_totals(flows) == summary_totals(summary["connections"])


def test_rfc5103_layout_is_the_one_nfdump_reads(tmp_path):
    """What README says: nfdump 1.7 decodes the RFC 5103 reverse counters, not initiator/responder 231/232/298/299."""
    import socket

    from midstat_tui.export import ipfix

    record = ipfix.FlowRecord(bytes([10, 0, 0, 1]), 40000, bytes([10, 0, 0, 2]), 443, 0, 1_700_000_000_000,
                              1_700_000_001_000, 1234, 5678, 12, 34, ipfix.SYN | ipfix.ACK, ipfix.SYN | ipfix.ACK,
                              ipfix.END_OF_FLOW, "TIME_WAIT", "CLOSED", "SF", "ShADadFf", 1, 2, 0, 0, 0, 0, 0, 0)
    seen = {}
    for layout in ipfix.LAYOUTS:
        (tmp_path / layout).mkdir()
        with nfcapd(tmp_path / layout) as collector:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                for message, _ in ipfix.messages([(True, ipfix.encode_record(record, layout))], 1_700_000_002, 0, 1,
                                                 ipfix.template_set(layout)):
                    sock.sendto(message, ("127.0.0.1", collector.port))
            (flow,) = collector.flows()
        seen[layout] = (flow.get("in_packets", 0), flow.get("out_packets", 0), flow.get("in_bytes", 0),
                        flow.get("out_bytes", 0))
    assert seen["rfc5103"] == (12, 34, 1234, 5678)
    assert seen["initiator"] != seen["rfc5103"]
