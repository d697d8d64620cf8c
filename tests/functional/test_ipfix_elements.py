"""midstat's enterprise elements, decoded from the raw export by an independent decoder (the `ipfix` package),
equal what --summary --json says of each connection: states, Zeek's view, RTT legs, retransmitted and payload
bytes, flags, shard; each core exports as its own observation domain with its own sequence numbers."""

from __future__ import annotations

import ipaddress
import json
from collections import defaultdict

import pytest

from tests.collectors import UdpCollector, endpoint
from tests.helpers import FIXTURES, midstat, shared
from tests.ipfix_decoder import decode


def _endpoint(addr, port: int) -> str:
    return endpoint(str(ipaddress.ip_address(addr)), port)


def export(capture, *extra: str) -> tuple[dict, list[tuple[dict, dict]], list]:
    collector = UdpCollector()
    try:
        run = midstat("-r", str(capture), "--summary", "--json", "--ipfix", collector.address, *extra)
    finally:
        datagrams = collector.close()
    assert run.returncode == 0, run.stderr.decode()
    return json.loads(run.stdout), decode([d for _, d in datagrams]), datagrams


@pytest.mark.parametrize("capture", [shared("ndpi/tests/cfgs/default/pcap/1kxun.pcap"),
                                     shared("zeek/Traces/ssh/ssh.pcap"), FIXTURES / "reset_by_server.pcap",
                                     FIXTURES / "midstream.pcap"], ids=lambda p: p.name)
def test_enterprise_elements_say_what_summary_says(capture):
    summary, records, _ = export(capture, "--cores", "2")
    by_key = defaultdict(list)
    for c in summary["connections"]:
        by_key[(c["client"], c["server"])].append(c)
    grouped = defaultdict(list)
    for head, r in records:
        src = r.get("sourceIPv4Address") or r.get("sourceIPv6Address")
        dst = r.get("destinationIPv4Address") or r.get("destinationIPv6Address")
        grouped[(_endpoint(src, r["sourceTransportPort"]), _endpoint(dst, r["destinationTransportPort"]))].append(
            (head, r))
    assert set(grouped) == set(by_key)
    checked = 0
    for key, conns in by_key.items():
        if len(conns) != 1:
            continue  # a reused port: several connections on one tuple
        (c,) = conns
        parts = grouped[key]
        last = parts[-1][1]
        assert last["midstatClientState"] == c["client_state"]
        assert last["midstatServerState"] == c["server_state"]
        assert last["midstatZeekConnState"] == c["zeek_state"]
        assert last["midstatZeekHistory"] == c["history"]
        for name, field in (("midstatRttClientMicroseconds", "rtt_client_ms"),
                            ("midstatRttServerMicroseconds", "rtt_server_ms")):
            if c[field] is None:
                assert last[name] == 0xFFFFFFFF
            else:
                assert abs(last[name] / 1000.0 - c[field]) <= 0.001
        total = defaultdict(int)
        for _, r in parts:
            for name in ("midstatRetransOctetsInitiator", "midstatRetransOctetsResponder",
                         "midstatPayloadOctetsInitiator", "midstatPayloadOctetsResponder", "packetDeltaCount",
                         "reversePacketDeltaCount", "octetDeltaCount", "reverseOctetDeltaCount"):
                total[name] += r[name]
        assert (total["midstatRetransOctetsInitiator"], total["midstatRetransOctetsResponder"]) == \
            (c["retrans_bytes_c2s"], c["retrans_bytes_s2c"])
        assert (total["midstatPayloadOctetsInitiator"], total["midstatPayloadOctetsResponder"]) == \
            (c["payload_c2s"], c["payload_s2c"])
        assert (total["packetDeltaCount"], total["reversePacketDeltaCount"]) == (c["packets_c2s"], c["packets_s2c"])
        assert (total["octetDeltaCount"], total["reverseOctetDeltaCount"]) == (c["bytes_c2s"], c["bytes_s2c"])
        assert bool(last["midstatFlags"] & 1) == c["midstream"]
        assert bool(last["midstatFlags"] & 2) == bool(c["suspicious_rst"])
        assert last["midstatShard"] == c["shard"]
        for head, _ in parts:
            assert head["domain"] == 1 + c["shard"]
        ended = c["ended"]
        expected_reason = 4 if ended is None else {"idle_timeout": 1, "evicted": 5}.get(ended, 3)
        assert last["flowEndReason"] == expected_reason
        checked += 1
    assert checked


def test_each_core_numbers_its_own_records():
    """Sequence numbers per observation domain: each message's is the count of records its domain sent before."""
    summary, _, datagrams = export(shared("ndpi/tests/cfgs/default/pcap/1kxun.pcap"), "--cores", "2")
    sent: dict[int, int] = defaultdict(int)
    for _, data in datagrams:
        domain = int.from_bytes(data[12:16], "big")
        assert int.from_bytes(data[8:12], "big") == sent[domain]
        sent[domain] += _records_in(data)
    assert sorted(sent) == [1, 2]
    assert sum(sent.values()) == summary["stats"]["ipfix"]["sent"]


def _records_in(message: bytes) -> int:
    """Data records in one message, counted from its sets (templates known: 256 and 257)."""
    from midstat_tui.export import ipfix

    sizes = {}
    for template_id, version in ((ipfix.TEMPLATE_V4, 4), (ipfix.TEMPLATE_V6, 6)):
        sizes[template_id] = [e.size for e in ipfix.fields(version)]
    count, offset = 0, 16
    while offset < len(message):
        set_id = int.from_bytes(message[offset:offset + 2], "big")
        length = int.from_bytes(message[offset + 2:offset + 4], "big")
        if set_id in sizes:
            pos, end = offset + 4, offset + length
            while pos < end:
                for size in sizes[set_id]:
                    pos += 1 + message[pos] if size == ipfix.VARLEN else size
                count += 1
        offset += length
    return count


def test_templates_go_first():
    _, _, datagrams = export(FIXTURES / "close_client_first.pcap", "--cores", "1")
    first = datagrams[0][1]
    assert int.from_bytes(first[16:18], "big") == 2  # a template set leads the first message
