"""A struct-based decoder for the plain, common frame: Ethernet (up to two VLAN tags) + IPv4 without options or
IPv6 without extension headers + TCP with its whole header captured.

It returns the same `Segment` dpkt's path would build, or None for anything else (other link layers, IP options,
fragments, extension headers, ICMP, short or odd headers), which then goes to dpkt. The equality is what
tests/unit/test_fastpath_differential.py checks, packet by packet, on every capture in fixtures/pcaps and
../shared/pcaps, on generated frames and on damaged copies of real ones.
"""

from __future__ import annotations

import struct

from midstat_tui.decode.checksum import checksum_ok
from midstat_tui.decode.segment import Segment

_TCP = struct.Struct("!HHIIBBH")       # sport, dport, seq, ack, offset byte, flags, window
_IPV4 = struct.Struct("!BBHHHBB")      # version/ihl, tos, total length, id, flags/fragment, ttl, protocol
_IPV6_LEN = struct.Struct("!HBB")      # payload length, next header, hop limit (at offset 4)
_TAG = struct.Struct("!HH")            # VLAN tag: TCI, next type
_QINQ_TYPES = (0x8100, 0x88A8, 0x9100)
_PROTO_TCP = 6


def decode_ethernet(ts: float, frame: bytes, verify_checksums: bool) -> Segment | None:
    size = len(frame)
    if size < 54:
        return None
    etype = (frame[12] << 8) | frame[13]
    off = 14
    vlan: tuple[int, ...] = ()
    if etype in _QINQ_TYPES:
        tci, etype = _TAG.unpack_from(frame, 14)
        off = 18
        if etype == 0x8100:
            tci2, etype = _TAG.unpack_from(frame, 18)
            off = 22
            vlan = (tci & 0x0FFF, tci2 & 0x0FFF)
        else:
            vlan = (tci & 0x0FFF,)
        if etype in _QINQ_TYPES:
            return None  # a third tag: dpkt's business
    if etype == 0x0800:
        if size < off + 40 or frame[off] != 0x45:
            return None
        _, _, ip_len, _, frag, ttl, proto = _IPV4.unpack_from(frame, off)
        if proto != _PROTO_TCP or frag & 0x3FFF or ip_len < 40:
            return None
        tcp_at = off + 20
        sport, dport, seq, ack, doff, flags, win = _TCP.unpack_from(frame, tcp_at)
        hdr_len = (doff >> 4) << 2
        payload = ip_len - 20 - hdr_len
        if hdr_len < 20 or payload < 0 or size < tcp_at + hdr_len:
            return None
        end = off + ip_len
        truncated = size < end
        src = frame[off + 12:off + 16]
        dst = frame[off + 16:off + 20]
        csum_ok = None
        if verify_checksums and not truncated:
            seg_len = ip_len - 20
            csum_ok = checksum_ok(src + dst + struct.pack("!BBH", 0, _PROTO_TCP, seg_len), frame[tcp_at:end])
        return Segment(ts, vlan, src, dst, sport, dport, seq, ack, flags, win, payload, ip_len, ttl, csum_ok,
                       truncated, frame[6:12])
    if etype == 0x86DD:
        if size < off + 60 or frame[off] >> 4 != 6:
            return None
        plen, nxt, hlim = _IPV6_LEN.unpack_from(frame, off + 4)
        if nxt != _PROTO_TCP or plen < 20:
            return None
        tcp_at = off + 40
        sport, dport, seq, ack, doff, flags, win = _TCP.unpack_from(frame, tcp_at)
        hdr_len = (doff >> 4) << 2
        payload = plen - hdr_len
        if hdr_len < 20 or payload < 0 or size < tcp_at + hdr_len:
            return None
        end = tcp_at + plen
        truncated = size < end
        src = frame[off + 8:off + 24]
        dst = frame[off + 24:off + 40]
        csum_ok = None
        if verify_checksums and not truncated:
            csum_ok = checksum_ok(src + dst + struct.pack("!IxxxB", plen, _PROTO_TCP), frame[tcp_at:end])
        return Segment(ts, vlan, src, dst, sport, dport, seq, ack, flags, win, payload, 40 + plen, hlim, csum_ok,
                       truncated, frame[6:12])
    return None
