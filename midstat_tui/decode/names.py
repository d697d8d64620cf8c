"""Host names carried by the traffic itself: DNS answers (A, AAAA, through CNAME chains), the TLS ClientHello's
server name (SNI) and HTTP/1.x `Host:` headers. Nothing here sends a packet; it only reads bytes already captured.

Every parser takes untrusted bytes and either returns what it found or raises `Malformed` (the caller counts and
skips it); the work per packet is bounded (at most MAX_RECORDS records, MAX_POINTERS compression jumps per name,
MAX_HEADER_LINES header lines). `locate` finds a frame's IP addresses and transport payload for every link type
midstat reads, without dpkt (it runs only on the few packets that can carry names)."""

from __future__ import annotations

import re
import struct

from midstat_tui.decode import layers

MAX_RECORDS = 64         # questions + answers read from one DNS message
MAX_POINTERS = 16        # compression pointers followed in one name
MAX_CNAME_HOPS = 8       # CNAME links followed from the asked name
MAX_HEADER_LINES = 64    # HTTP header lines read from one segment
MAX_NAME = 253

PROTO_TCP = 6
PROTO_UDP = 17
_TYPE_A, _TYPE_CNAME, _TYPE_AAAA = 1, 5, 28
_NAME = re.compile(rb"[a-z0-9._-]{1,253}")
_DIGITS = re.compile(rb"[0-9.]*")
# a Host header line within the request's head (MAX_HEADER_LINES lines at most are looked at)
_HOST = re.compile(rb"\r\nhost[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE)
_METHODS = (b"GET ", b"POST ", b"HEAD ", b"PUT ", b"DELETE ", b"OPTIONS ", b"PATCH ", b"CONNECT ", b"TRACE ")


class Malformed(Exception):
    """The bytes claim to be a DNS answer, a ClientHello or an HTTP request and are not a valid one."""


def clean_name(raw: bytes) -> str | None:
    """A host name as midstat keeps it (lower case, no trailing dot), or None if it is none (an address literal,
    empty, too long, odd characters)."""
    name = raw.lower().rstrip(b".")
    if _NAME.fullmatch(name) is None or _DIGITS.fullmatch(name) is not None:
        return None  # empty, too long, odd characters; or a dotted-quad literal: not a name
    return name.decode("ascii")


# -- link and IP layers -----------------------------------------------------------------------------------------
def locate(dlt: int, frame: bytes) -> tuple[bytes, bytes, int, int, int] | None:
    """(source address, destination address, IP protocol, offset of the transport header, end of the IP packet
    within the frame) for an unfragmented IPv4 or IPv6 packet (no extension headers), else None. The link layer is
    decode/layers.py's walk (up to two VLAN tags on Ethernet)."""
    link = layers.link_layer(dlt, frame, 2)
    if link is None:
        return None
    kind, off = link
    version = 4 if kind in (layers.IP4, 0x0800) else 6 if kind in (layers.IP6, 0x86DD) else 0
    size = len(frame)
    if version == 4:
        if size < off + 20 or frame[off] >> 4 != 4:
            return None
        ihl = (frame[off] & 0x0F) << 2
        total = (frame[off + 2] << 8) | frame[off + 3]
        if ihl < 20 or total < ihl or ((frame[off + 6] << 8) | frame[off + 7]) & 0x3FFF:
            return None
        return frame[off + 12:off + 16], frame[off + 16:off + 20], frame[off + 9], off + ihl, min(size, off + total)
    if version == 6:
        if size < off + 40 or frame[off] >> 4 != 6:
            return None
        plen = (frame[off + 4] << 8) | frame[off + 5]
        return frame[off + 8:off + 24], frame[off + 24:off + 40], frame[off + 6], off + 40, min(size, off + 40 + plen)
    return None


def udp_dns_payload(dlt: int, frame: bytes) -> tuple[bytes, int, bytes] | None:
    """(the DNS message, its offset, the destination address: the client it answers) of a UDP packet from port 53,
    else None."""
    where = locate(dlt, frame)
    if where is None or where[2] != PROTO_UDP:
        return None
    at, end = where[3], where[4]
    if end - at < 8 or frame[at] != 0 or frame[at + 1] != 53:
        return None
    return frame[at + 8:end], at + 8, where[1]


def tcp_payload(dlt: int, frame: bytes) -> tuple[bytes, bytes] | None:
    """(destination address, the TCP payload captured) of a TCP segment, else None."""
    found = tcp_segment(dlt, frame)
    return None if found is None else (found[2], found[4])


def tcp_segment(dlt: int, frame: bytes) -> tuple[bytes, int, bytes, int, bytes] | None:
    """(source address, source port, destination address, destination port, the payload captured) of a TCP
    segment, else None."""
    where = locate(dlt, frame)
    if where is None or where[2] != PROTO_TCP:
        return None
    at, end = where[3], where[4]
    if end - at < 20:
        return None
    start = at + ((frame[at + 12] >> 4) << 2)
    return (where[0], (frame[at] << 8) | frame[at + 1], where[1], (frame[at + 2] << 8) | frame[at + 3],
            frame[start:end])


# -- DNS ----------------------------------------------------------------------------------------------------------
def _name(msg: bytes, at: int) -> tuple[bytes, int]:
    """The (possibly compressed) name at `at`, and the offset just past it where it sits."""
    labels: list[bytes] = []
    end = -1
    jumps = 0
    total = 0
    size = len(msg)
    while True:
        if at >= size:
            raise Malformed("name runs past the message")
        length = msg[at]
        if length == 0:
            if end < 0:
                end = at + 1
            break
        if length & 0xC0 == 0xC0:
            if at + 1 >= size:
                raise Malformed("cut pointer")
            jumps += 1
            if jumps > MAX_POINTERS:
                raise Malformed("pointer loop")
            if end < 0:
                end = at + 2
            at = ((length & 0x3F) << 8) | msg[at + 1]
            continue
        if length & 0xC0:
            raise Malformed("unknown label type")
        total += length + 1
        if total > 255 or at + 1 + length > size:
            raise Malformed("label too long")
        labels.append(msg[at + 1:at + 1 + length])
        at += 1 + length
    return b".".join(labels), end


def dns_answers(msg: bytes) -> list[tuple[bytes, str]]:
    """(address, name) for each A/AAAA record of a DNS response; the name is the one the client asked for when a
    CNAME chain leads from it to the record's owner. Raises Malformed."""
    if len(msg) < 12:
        raise Malformed("short DNS header")
    flags, qd, an = struct.unpack_from("!HHH", msg, 2)
    if not flags & 0x8000 or flags & 0x000F:
        return []  # a query, or an error response: no answers to learn
    if qd + an > MAX_RECORDS:
        raise Malformed("too many records")
    at = 12
    asked: list[bytes] = []
    for _ in range(qd):
        name, at = _name(msg, at)
        at += 4
        if at > len(msg):
            raise Malformed("cut question")
        asked.append(name.lower())
    cname: dict[bytes, bytes] = {}
    found: list[tuple[bytes, bytes]] = []
    for _ in range(an):
        owner, at = _name(msg, at)
        if at + 10 > len(msg):
            raise Malformed("cut record")
        rtype, _, _, rdlen = struct.unpack_from("!HHIH", msg, at)
        at += 10
        if at + rdlen > len(msg):
            raise Malformed("cut record data")
        if rtype == _TYPE_A and rdlen == 4 or rtype == _TYPE_AAAA and rdlen == 16:
            found.append((msg[at:at + rdlen], owner.lower()))
        elif rtype == _TYPE_CNAME:
            target, _ = _name(msg, at)
            cname[owner.lower()] = target.lower()
        at += rdlen
    out: list[tuple[bytes, str]] = []
    for addr, owner in found:
        text = clean_name(_asked_for(owner, asked, cname))
        if text is not None:
            out.append((addr, text))
    return out


def _asked_for(owner: bytes, asked: list[bytes], cname: dict[bytes, bytes]) -> bytes:
    """The asked name whose CNAME chain leads to `owner` (owner itself when none does)."""
    for name in asked:
        hop: bytes | None = name
        for _ in range(MAX_CNAME_HOPS + 1):
            if hop == owner:
                return name
            hop = cname.get(hop)  # type: ignore[arg-type]
            if hop is None:
                break
    return owner


# -- TLS ----------------------------------------------------------------------------------------------------------
def looks_like_client_hello(payload: bytes) -> bool:
    return len(payload) >= 6 and payload[0] == 0x16 and payload[1] == 3 and payload[5] == 1


def tls_sni(payload: bytes) -> str | None:
    """The server name of a TLS ClientHello (as much of it as this segment holds), or None if it names none or the
    name lies beyond the segment. Raises Malformed on a ClientHello that contradicts itself."""
    if not looks_like_client_hello(payload):
        return None
    size = len(payload)
    at = 9 + 2 + 32  # record header, handshake header, client version, random
    if at + 1 > size:
        return None
    at += 1 + payload[at]  # session id
    if at + 2 > size:
        return None
    at += 2 + ((payload[at] << 8) | payload[at + 1])  # cipher suites
    if at + 1 > size:
        return None
    at += 1 + payload[at]  # compression methods
    if at + 2 > size:
        return None
    ext_end = at + 2 + ((payload[at] << 8) | payload[at + 1])
    at += 2
    while at + 4 <= min(ext_end, size):
        etype = (payload[at] << 8) | payload[at + 1]
        elen = (payload[at + 2] << 8) | payload[at + 3]
        at += 4
        if at + elen > ext_end:
            raise Malformed("extension past the extensions")
        if etype == 0:
            if at + elen > size:
                return None  # cut by the segment's end
            body = payload[at:at + elen]
            if len(body) < 2:
                raise Malformed("short server_name")
            list_end = 2 + ((body[0] << 8) | body[1])
            if list_end > len(body):
                raise Malformed("server_name list past its extension")
            pos = 2
            while pos + 3 <= list_end:
                kind = body[pos]
                nlen = (body[pos + 1] << 8) | body[pos + 2]
                pos += 3
                if pos + nlen > list_end:
                    raise Malformed("server name past its list")
                if kind == 0:
                    return clean_name(body[pos:pos + nlen])
                pos += nlen
            return None
        at += elen
    return None


# -- HTTP ---------------------------------------------------------------------------------------------------------
def looks_like_http_request(payload: bytes) -> bool:
    return payload.startswith(_METHODS)


def http_host(payload: bytes) -> str | None:
    """The host of an HTTP/1.x request's `Host:` header (without its port), or None."""
    if not payload.startswith(_METHODS):
        return None
    end = payload.find(b"\r\n\r\n")
    head = payload if end < 0 else payload[:end]
    found = _HOST.search(head)
    if found is None or head.count(b"\r\n", 0, found.start()) >= MAX_HEADER_LINES:
        return None
    host = found.group(1).strip()
    if host.startswith(b"["):
        return None  # an IPv6 literal
    return clean_name(host.rsplit(b":", 1)[0] if b":" in host else host)
