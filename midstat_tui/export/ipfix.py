"""IPFIX (RFC 7011) messages for midstat's connection records: pure encoding, bytes out, no I/O.

One bidirectional record per connection (or per active-timeout slice of a long one). The counters each way are
RFC 5103's: the forward (client to server) elements and their reverse elements (PEN 29305). nfdump 1.7 decodes
those, and not the initiator/responder elements 231/232/298/299 (tried: README, "Feeding collectors").
What no standard element says (each side's TCP state, Zeek's view, RTT legs, ...) goes in enterprise-specific
elements under PEN 32473, the documentation/example number of RFC 5612: midstat has no number of its own, and
32473 says so to anyone decoding the records.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import NamedTuple

VERSION = 10
PEN = 32473                  # RFC 5612: the example enterprise number, for documentation and examples
PEN_REVERSE = 29305          # RFC 5103's reverse-element PEN (the "rfc5103" layout, kept for collectors that want it)
TEMPLATE_SET = 2
TEMPLATE_V4 = 256
TEMPLATE_V6 = 257
VARLEN = 0xFFFF
MAX_MESSAGE = 1400           # bytes: one message per UDP datagram, within an Ethernet MTU
HEADER = struct.Struct("!HHIII")  # version, length, export time, sequence number, observation domain

# flowEndReason (IANA 136)
IDLE_TIMEOUT = 1
ACTIVE_TIMEOUT = 2
END_OF_FLOW = 3
FORCED_END = 4
LACK_OF_RESOURCES = 5

# how each of midstat's end reasons reads as a flowEndReason
END_REASONS = {
    "closed": END_OF_FLOW, "reset": END_OF_FLOW, "time_wait_expired": END_OF_FLOW, "port_reuse": END_OF_FLOW,
    "bad_flags": END_OF_FLOW, "idle_timeout": IDLE_TIMEOUT, "evicted": LACK_OF_RESOURCES,
}

# TCP flag bits (tcpControlBits)
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

# midstat's flag bits (enterprise element 11)
MIDSTREAM = 0x01
SUSPICIOUS_RST = 0x02
ODD_RST = 0x04
FLIPPED = 0x08


@dataclass(frozen=True)
class Element:
    number: int
    name: str
    size: int          # bytes; VARLEN for a variable-length string
    kind: str          # "u" (unsigned), "s" (string), "a" (address: bytes as they are)
    enterprise: int = 0
    meaning: str = ""


def _std(number: int, name: str, size: int, kind: str = "u") -> Element:
    return Element(number, name, size, kind)


# The enterprise elements (PEN 32473): number, name, type, meaning. The README's table is made from this list.
ENTERPRISE = (
    Element(1, "midstatClientState", VARLEN, "s", PEN, "the client side's TCP state (e.g. ESTABLISHED, CLOSE_WAIT)"),
    Element(2, "midstatServerState", VARLEN, "s", PEN, "the server side's TCP state"),
    Element(3, "midstatZeekConnState", VARLEN, "s", PEN, "Zeek's conn_state (SF, S0, REJ, RSTO, ...)"),
    Element(4, "midstatZeekHistory", VARLEN, "s", PEN, "Zeek's history letters (ShADadFf...)"),
    Element(5, "midstatRttClientMicroseconds", 4, "u", PEN,
            "client leg of the handshake RTT (tap to client and back: SYN/ACK to ACK), microseconds; "
            "0xFFFFFFFF when unknown"),
    Element(6, "midstatRttServerMicroseconds", 4, "u", PEN,
            "server leg of the handshake RTT (tap to server and back: SYN to SYN/ACK), microseconds; "
            "0xFFFFFFFF when unknown"),
    Element(7, "midstatRetransOctetsInitiator", 8, "u", PEN, "retransmitted payload bytes, client to server"),
    Element(8, "midstatRetransOctetsResponder", 8, "u", PEN, "retransmitted payload bytes, server to client"),
    Element(9, "midstatPayloadOctetsInitiator", 8, "u", PEN, "TCP payload bytes, client to server"),
    Element(10, "midstatPayloadOctetsResponder", 8, "u", PEN, "TCP payload bytes, server to client"),
    Element(11, "midstatFlags", 1, "u", PEN,
            "bits: 1 picked up mid-stream, 2 a suspicious (out-of-window) RST seen, 4 an RST with another TTL or MAC "
            "than its sender's, 8 first packet came from the server (Zeek's ^)"),
    Element(12, "midstatShard", 2, "u", PEN, "the midstat core (shard) that tracked the connection"),
    Element(13, "midstatResponderTcpFlags", 1, "u", PEN,
            "the 'initiator' layout only: the server's TCP flags (SYN, ACK, FIN, RST, from Zeek's history)"),
)

_COMMON_HEAD = (_std(7, "sourceTransportPort", 2), _std(11, "destinationTransportPort", 2),
                _std(4, "protocolIdentifier", 1), _std(58, "vlanId", 2),
                _std(152, "flowStartMilliseconds", 8), _std(153, "flowEndMilliseconds", 8))
_COUNTERS = (_std(231, "initiatorOctets", 8), _std(232, "responderOctets", 8),
             _std(298, "initiatorPackets", 8), _std(299, "responderPackets", 8),
             _std(6, "tcpControlBits", 1), _std(136, "flowEndReason", 1))
_COUNTERS_5103 = (_std(1, "octetDeltaCount", 8), _std(2, "packetDeltaCount", 8),
                  Element(1, "reverseOctetDeltaCount", 8, "u", PEN_REVERSE),
                  Element(2, "reversePacketDeltaCount", 8, "u", PEN_REVERSE),
                  # the reverse flags before the forward ones: nfdump 1.7 writes both into its one tcp_flags field,
                  # the last one read winning; this way it shows the client's
                  Element(6, "reverseTcpControlBits", 1, "u", PEN_REVERSE), _std(6, "tcpControlBits", 1),
                  _std(136, "flowEndReason", 1))

# "rfc5103" (the one midstat sends): octetDeltaCount/packetDeltaCount and their RFC 5103 reverse elements.
# "initiator": the standard elements 231/232/298/299, which nfdump 1.7 does not decode (kept for the test that
# shows it, and for collectors that want them).
LAYOUTS = ("initiator", "rfc5103")


def fields(version: int, layout: str = "rfc5103") -> tuple[Element, ...]:
    """The template's elements, in record order, for IPv4 (4) or IPv6 (6) records."""
    if version == 4:
        addrs = (_std(8, "sourceIPv4Address", 4, "a"), _std(12, "destinationIPv4Address", 4, "a"))
    else:
        addrs = (_std(27, "sourceIPv6Address", 16, "a"), _std(28, "destinationIPv6Address", 16, "a"))
    counters = _COUNTERS if layout == "initiator" else _COUNTERS_5103
    enterprise = ENTERPRISE if layout == "initiator" else ENTERPRISE[:-1]  # 5103 has the reverse flags itself
    return addrs + _COMMON_HEAD + counters + enterprise


class FlowRecord(NamedTuple):
    """One connection (or one slice of it) as exported: counters are this record's share (delta since the last
    record of the same connection). A named tuple: one is made per record, on the tracking's path."""

    c_addr: bytes
    c_port: int
    s_addr: bytes
    s_port: int
    vlan: int
    start_ms: int
    end_ms: int
    octets_c2s: int
    octets_s2c: int
    packets_c2s: int
    packets_s2c: int
    flags_c2s: int
    flags_s2c: int
    end_reason: int
    client_state: str
    server_state: str
    zeek_state: str
    history: str
    rtt_client_us: int
    rtt_server_us: int
    retrans_c2s: int
    retrans_s2c: int
    payload_c2s: int
    payload_s2c: int
    flags: int
    shard: int


def template_set(layout: str = "rfc5103") -> bytes:
    """The template set: both templates (IPv4 and IPv6)."""
    body = bytearray()
    for template_id, version in ((TEMPLATE_V4, 4), (TEMPLATE_V6, 6)):
        elements = fields(version, layout)
        body += struct.pack("!HH", template_id, len(elements))
        for e in elements:
            if e.enterprise:
                body += struct.pack("!HHI", e.number | 0x8000, e.size, e.enterprise)
            else:
                body += struct.pack("!HH", e.number, e.size)
    return struct.pack("!HH", TEMPLATE_SET, 4 + len(body)) + bytes(body)


def _varlen(text: str) -> bytes:
    data = text.encode("ascii", "replace")[:254]
    return bytes((len(data),)) + data


_V4_FIXED = struct.Struct("!4s4sHHBHQQQQQQBB")
_V6_FIXED = struct.Struct("!16s16sHHBHQQQQQQBB")
_5103_FIXED_V4 = struct.Struct("!4s4sHHBHQQQQQQBBB")
_5103_FIXED_V6 = struct.Struct("!16s16sHHBHQQQQQQBBB")
_TAIL = struct.Struct("!IIQQQQBH")
_U32 = 0xFFFFFFFF
_U64 = 0xFFFFFFFFFFFFFFFF


def _u(value: int, top: int) -> int:
    return 0 if value < 0 else top if value > top else value


def encode_record(r: FlowRecord, layout: str = "rfc5103") -> bytes:
    """One data record, in its template's order (the template follows from the address length)."""
    if layout == "rfc5103":
        try:
            return _encode_fast(r)
        except struct.error:  # a value out of its element's range: clamped, the slow way
            pass
    return _encode_checked(r, layout)


_TEXTS: dict[str, bytes] = {}  # states, Zeek states and histories repeat: each one's encoding made once


def _text(value: str) -> bytes:
    data = _TEXTS.get(value)
    if data is None:
        data = _varlen(value)
        if len(_TEXTS) < 65536:
            _TEXTS[value] = data
    return data


def _encode_fast(r: FlowRecord) -> bytes:
    return b"".join((
        (_5103_FIXED_V4 if len(r.c_addr) == 4 else _5103_FIXED_V6).pack(
            r.c_addr, r.s_addr, r.c_port, r.s_port, 6, r.vlan & 0xFFF, r.start_ms, r.end_ms, r.octets_c2s,
            r.packets_c2s, r.octets_s2c, r.packets_s2c, r.flags_s2c & 0xFF, r.flags_c2s & 0xFF, r.end_reason),
        _text(r.client_state), _text(r.server_state), _text(r.zeek_state), _text(r.history),
        _TAIL.pack(r.rtt_client_us, r.rtt_server_us, r.retrans_c2s, r.retrans_s2c, r.payload_c2s, r.payload_s2c,
                   r.flags & 0xFF, r.shard & 0xFFFF)))


def _encode_checked(r: FlowRecord, layout: str) -> bytes:
    v4 = len(r.c_addr) == 4
    head = (r.c_addr, r.s_addr, r.c_port, r.s_port, 6, r.vlan & 0xFFF, _u(r.start_ms, _U64), _u(r.end_ms, _U64))
    if layout == "initiator":
        fixed = (_V4_FIXED if v4 else _V6_FIXED).pack(
            *head, _u(r.octets_c2s, _U64), _u(r.octets_s2c, _U64), _u(r.packets_c2s, _U64),
            _u(r.packets_s2c, _U64), r.flags_c2s & 0xFF, r.end_reason)
    else:
        fixed = (_5103_FIXED_V4 if v4 else _5103_FIXED_V6).pack(
            *head, _u(r.octets_c2s, _U64), _u(r.packets_c2s, _U64), _u(r.octets_s2c, _U64),
            _u(r.packets_s2c, _U64), r.flags_s2c & 0xFF, r.flags_c2s & 0xFF, r.end_reason)
    tail = _TAIL.pack(_u(r.rtt_client_us, _U32), _u(r.rtt_server_us, _U32), _u(r.retrans_c2s, _U64),
                      _u(r.retrans_s2c, _U64), _u(r.payload_c2s, _U64), _u(r.payload_s2c, _U64), r.flags & 0xFF,
                      r.shard & 0xFFFF)
    text = b"".join((_varlen(r.client_state), _varlen(r.server_state), _varlen(r.zeek_state), _varlen(r.history)))
    extra = bytes((r.flags_s2c & 0xFF,)) if layout == "initiator" else b""
    return fixed + text + tail + extra


def header(length: int, export_time: int, sequence: int, domain: int) -> bytes:
    return HEADER.pack(VERSION, length, export_time & _U32, sequence & _U32, domain & _U32)


def messages(encoded: list[tuple[bool, bytes]], export_time: int, sequence: int, domain: int,
             templates: bytes | None = None, limit: int = MAX_MESSAGE) -> list[tuple[bytes, int]]:
    """Pack encoded records ((is IPv4, bytes)) into messages of at most `limit` bytes (a record larger than that
    still goes, alone). `templates` (a template set) leads the first message. Returns (message, records in it);
    each message's sequence number counts the data records sent before it (RFC 7011 section 3.1)."""
    out: list[tuple[bytes, int]] = []
    sets: list[bytes] = [templates] if templates else []
    size = HEADER.size + (len(templates) if templates else 0)
    count = 0
    current: bool | None = None
    body: list[bytes] = []

    def close_set() -> None:
        nonlocal body, size
        if body:
            data = b"".join(body)
            sets.append(struct.pack("!HH", TEMPLATE_V4 if current else TEMPLATE_V6, 4 + len(data)) + data)
            body = []

    def close_message() -> None:
        nonlocal sets, size, count, sequence
        close_set()
        if sets:
            data = b"".join(sets)
            out.append((header(HEADER.size + len(data), export_time, sequence, domain) + data, count))
            sequence += count
        sets, size, count = [], HEADER.size, 0

    for v4, record in encoded:
        need = len(record) + (4 if v4 is not current or not body else 0)
        if size + need > limit and (count or sets):
            close_message()
            need = len(record) + 4
        if v4 is not current:
            close_set()
            current = v4
        body.append(record)
        size += need
        count += 1
    close_message()
    return out
