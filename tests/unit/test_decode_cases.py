"""Decoder cases the generated frames do not reach: IP options, IPv6 extension headers, fragments, ICMP errors."""

from __future__ import annotations

import struct

import dpkt

from midstat_tui.decode import FrameDecoder, IcmpError, Segment, linktypes

RAW = linktypes.DLT_RAW
V6_SRC = b"\x20\x01" + b"\x00" * 13 + b"\x01"
V6_DST = b"\x20\x01" + b"\x00" * 13 + b"\x02"


def _tcp(payload: bytes = b"x" * 10) -> bytes:
    tcp = dpkt.tcp.TCP(sport=1234, dport=80, seq=7, ack=9, flags=0x18, win=100, data=payload)
    tcp.off = 5
    return bytes(tcp)


def _v6(next_header: int, body: bytes) -> bytes:
    return bytes(dpkt.ip6.IP6(src=V6_SRC, dst=V6_DST, nxt=next_header, hlim=64, plen=len(body)).pack_hdr()) + body


def test_ipv4_with_options():
    ip = dpkt.ip.IP(src=b"\x0a\x00\x00\x01", dst=b"\x0a\x00\x00\x02", p=6, data=dpkt.tcp.TCP(
        sport=1, dport=2, seq=3, ack=4, flags=0x10, data=b"abc"), opts=b"\x01\x01\x01\x00")
    ip.hl = 6
    ip.len = 24 + 20 + 3
    seg = FrameDecoder(RAW).decode(1.0, bytes(ip))
    assert isinstance(seg, Segment)
    assert (seg.sport, seg.dport, seg.payload, seg.ip_len) == (1, 2, 3, 47)
    assert seg.csum_ok is True


def test_ipv6_hop_by_hop_header_is_skipped():
    hop = bytes([6, 0]) + b"\x01\x04\x00\x00\x00\x00"  # next header TCP, PadN
    seg = FrameDecoder(RAW, verify_checksums=False).decode(1.0, _v6(0, hop + _tcp()))
    assert isinstance(seg, Segment)
    assert (seg.sport, seg.payload, seg.ip_len) == (1234, 10, 40 + 8 + 30)


def test_fragments_first_is_used_the_rest_skipped():
    later = struct.pack("!BBHI", 6, 0, 8 << 3, 99)  # offset 64, last fragment
    assert FrameDecoder(RAW).decode(1.0, _v6(44, later + b"y" * 16)) == "fragment"
    first = struct.pack("!BBHI", 6, 0, 1, 99)  # offset 0, more fragments follow
    seg = FrameDecoder(RAW).decode(1.0, _v6(44, first + _tcp()))
    assert isinstance(seg, Segment) and seg.csum_ok is None  # the checksum covers the whole datagram
    ip = dpkt.ip.IP(src=b"\x0a\x00\x00\x01", dst=b"\x0a\x00\x00\x02", p=6, offset=24, data=b"z" * 16)
    ip.len = 36
    assert FrameDecoder(RAW).decode(1.0, bytes(ip)) == "fragment"


def test_icmp_unreachable_quoting_a_syn():
    quoted = dpkt.ip.IP(src=b"\x0a\x00\x00\x01", dst=b"\x0a\x00\x00\x02", p=6,
                        data=dpkt.tcp.TCP(sport=40000, dport=80, seq=123456, flags=0x02))
    quoted.len = 40
    icmp = dpkt.icmp.ICMP(type=3, code=1, data=dpkt.icmp.ICMP.Unreach(data=bytes(quoted)[:28]))
    outer = dpkt.ip.IP(src=b"\x0a\x00\x00\xfe", dst=b"\x0a\x00\x00\x01", p=1, data=icmp)
    outer.len = 20 + len(bytes(icmp))
    err = FrameDecoder(RAW).decode(5.0, bytes(outer))
    assert err == IcmpError(5.0, (), b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02", 40000, 80, 123456)


def test_other_protocols_are_non_tcp():
    udp = dpkt.ip.IP(src=b"\x0a\x00\x00\x01", dst=b"\x0a\x00\x00\x02", p=17, data=dpkt.udp.UDP(data=b"q"))
    udp.len = 29
    assert FrameDecoder(RAW).decode(1.0, bytes(udp)) == "non_tcp"
    arp = b"\xff" * 6 + b"\x02" * 6 + b"\x08\x06" + b"\x00" * 28
    assert FrameDecoder(linktypes.DLT_EN10MB).decode(1.0, arp) == "non_ip"


def test_bogus_tcp_data_offset_is_a_bad_header():
    tcp = bytearray(_tcp())
    tcp[12] = 0x30  # data offset 3 words: less than the fixed header
    ip = dpkt.ip.IP(src=b"\x0a\x00\x00\x01", dst=b"\x0a\x00\x00\x02", p=6, data=bytes(tcp))
    ip.len = 20 + len(tcp)
    assert FrameDecoder(RAW).decode(1.0, bytes(ip)) == "bad_tcp_header"
