"""export.ipfix, the pure encoder: its messages read back by the `ipfix` package (an independent decoder) give
back every field; messages stay within their size and number their records as RFC 7011 asks."""

from __future__ import annotations

import calendar
import datetime
import ipaddress
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from midstat_tui.errors import MidstatError
from midstat_tui.export import ipfix
from midstat_tui.export.flows import history_flags
from midstat_tui.export.sender import Collector, parse_collector
from tests.ipfix_decoder import decode

U64 = st.integers(0, 2**64 - 1)
STATES = st.sampled_from(["ESTABLISHED", "CLOSE_WAIT", "TIME_WAIT", "CLOSED", "SYN_SENT", "FIN_WAIT_2"])


@st.composite
def records(draw) -> ipfix.FlowRecord:
    size = draw(st.sampled_from([4, 16]))
    start = draw(st.integers(0, 2**42))  # (the decoder gives datetimes: before year 9999)
    return ipfix.FlowRecord(
        draw(st.binary(min_size=size, max_size=size)), draw(st.integers(0, 65535)),
        draw(st.binary(min_size=size, max_size=size)), draw(st.integers(0, 65535)), draw(st.integers(0, 4095)),
        start, start + draw(st.integers(0, 2**36)), draw(U64), draw(U64), draw(U64), draw(U64),
        draw(st.integers(0, 255)), draw(st.integers(0, 255)), draw(st.sampled_from([1, 2, 3, 4, 5])),
        draw(STATES), draw(STATES), draw(st.sampled_from(["SF", "S0", "REJ", "RSTO", "OTH"])),
        draw(st.text("ShADadFfRrTtCcGgWw^", max_size=40)), draw(st.integers(0, 2**32 - 1)),
        draw(st.integers(0, 2**32 - 1)), draw(U64), draw(U64), draw(U64), draw(U64), draw(st.integers(0, 15)),
        draw(st.integers(0, 65535)))


def _ms(when: datetime.datetime) -> int:
    return calendar.timegm(when.timetuple()) * 1000 + when.microsecond // 1000


def _addr(value) -> bytes:
    return ipaddress.ip_address(value).packed


@settings(max_examples=150, deadline=None)
@given(st.lists(records(), min_size=1, max_size=40), st.integers(0, 2**32 - 1), st.integers(0, 2**31))
def test_round_trip_through_an_independent_decoder(recs, domain, sequence):
    encoded = [(len(r.c_addr) == 4, ipfix.encode_record(r)) for r in recs]
    msgs = ipfix.messages(encoded, 1_700_000_000, sequence, domain, ipfix.template_set())
    assert sum(count for _, count in msgs) == len(recs)
    back = decode([m for m, _ in msgs])
    assert len(back) == len(recs)
    expected_sequence = sequence
    for (head, got), r, in zip(back, recs, strict=True):
        assert head["domain"] == domain
        v4 = len(r.c_addr) == 4
        assert _addr(got["sourceIPv4Address" if v4 else "sourceIPv6Address"]) == r.c_addr
        assert _addr(got["destinationIPv4Address" if v4 else "destinationIPv6Address"]) == r.s_addr
        assert (got["sourceTransportPort"], got["destinationTransportPort"]) == (r.c_port, r.s_port)
        assert got["protocolIdentifier"] == 6 and got["vlanId"] == r.vlan
        assert (got["octetDeltaCount"], got["reverseOctetDeltaCount"]) == (r.octets_c2s, r.octets_s2c)
        assert (got["packetDeltaCount"], got["reversePacketDeltaCount"]) == (r.packets_c2s, r.packets_s2c)
        assert (got["tcpControlBits"], got["reverseTcpControlBits"]) == (r.flags_c2s, r.flags_s2c)
        assert got["flowEndReason"] == r.end_reason
        assert (_ms(got["flowStartMilliseconds"]), _ms(got["flowEndMilliseconds"])) == (r.start_ms, r.end_ms)
        assert got["midstatClientState"] == r.client_state and got["midstatServerState"] == r.server_state
        assert got["midstatZeekConnState"] == r.zeek_state and got["midstatZeekHistory"] == r.history
        assert (got["midstatRttClientMicroseconds"], got["midstatRttServerMicroseconds"]) == \
            (r.rtt_client_us, r.rtt_server_us)
        assert (got["midstatRetransOctetsInitiator"], got["midstatRetransOctetsResponder"]) == \
            (r.retrans_c2s, r.retrans_s2c)
        assert (got["midstatPayloadOctetsInitiator"], got["midstatPayloadOctetsResponder"]) == \
            (r.payload_c2s, r.payload_s2c)
        assert got["midstatFlags"] == r.flags and got["midstatShard"] == r.shard
    # each message's sequence number: the records sent before it
    for message, count in msgs:
        assert len(message) <= ipfix.MAX_MESSAGE
        version, length, _, seq, _ = ipfix.HEADER.unpack_from(message)
        assert (version, length) == (10, len(message))
        assert seq == expected_sequence & 0xFFFFFFFF
        expected_sequence += count


def test_templates_lead_only_when_asked():
    r = ipfix.FlowRecord(bytes(4), 1, bytes(4), 2, 0, 0, 0, 1, 1, 1, 1, 0, 0, 3, "A", "B", "SF", "", 0, 0, 0, 0, 0,
                         0, 0, 0)
    (with_t, _), = ipfix.messages([(True, ipfix.encode_record(r))], 0, 0, 1, ipfix.template_set())
    (without, _), = ipfix.messages([(True, ipfix.encode_record(r))], 0, 1, 1, None)
    set_ids = []
    for message in (with_t, without):
        offset, ids = 16, []
        while offset < len(message):
            set_id, length = struct.unpack_from("!HH", message, offset)
            ids.append(set_id)
            offset += length
        set_ids.append(ids)
    assert set_ids == [[ipfix.TEMPLATE_SET, ipfix.TEMPLATE_V4], [ipfix.TEMPLATE_V4]]


def test_history_flags_each_side():
    assert history_flags("ShADadFf") == (ipfix.SYN | ipfix.ACK | ipfix.FIN, ipfix.SYN | ipfix.ACK | ipfix.FIN)
    assert history_flags("Sr") == (ipfix.SYN, ipfix.RST)
    assert history_flags("") == (0, 0)


@pytest.mark.parametrize("text, expected", [
    ("127.0.0.1:4739", Collector("127.0.0.1", 4739)),
    ("udp://collector:2055", Collector("collector", 2055)),
    ("tcp://[2001:db8::1]:4739", Collector("2001:db8::1", 4739, True)),
])
def test_collector_addresses(text, expected):
    assert parse_collector(text) == expected


@pytest.mark.parametrize("text", ["nohost", "host:", "host:0", "host:70000", "sctp://h:1", ":4739", "h:port"])
def test_bad_collector_addresses_are_one_line_errors(text):
    with pytest.raises(MidstatError, match="--ipfix"):
        parse_collector(text)


def test_values_beyond_their_elements_are_clamped_not_fatal():
    """A counter past 2**64 or below 0, an RTT past 2**32: the record still goes, the value at the element's end."""
    r = ipfix.FlowRecord(bytes(4), 1, bytes(4), 2, 0, -5, 1000, 2**65, -1, 3, 4, 0, 0, 3, "A", "B", "SF", "S", 2**40,
                         -2, 0, 0, 0, 0, 0, 0)
    ((_, got),) = decode([m for m, _ in ipfix.messages([(True, ipfix.encode_record(r))], 0, 0, 1,
                                                      ipfix.template_set())])
    assert got["octetDeltaCount"] == 2**64 - 1 and got["reverseOctetDeltaCount"] == 0
    assert got["midstatRttClientMicroseconds"] == 2**32 - 1 and got["midstatRttServerMicroseconds"] == 0
    assert _ms(got["flowStartMilliseconds"]) == 0
