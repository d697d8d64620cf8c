"""The live pre-filter (engine.share_filter.share_filter) never loses a frame: a BPF load past a frame's end rejects the
frame whatever follows, so a frame cut short inside its IP or TCP header used to be dropped by every shard's handle
(issue #10), where one core counts it as malformed. Every prefix of every frame shape must reach at least one
handle; a whole plain frame reaches exactly the shard its key hashes to (the frames are compiled and run through
libpcap's own BPF, as the kernel runs them)."""

from __future__ import annotations

import struct

import dpkt
import pcapy
import pytest

from midstat_tui.engine.share_filter import LINK_HEADERS, shard_of, share_filter

V4 = (b"\x0a\x00\x01\x07", b"\x0a\x00\x02\x09")
V6 = (b"\x20\x01" + b"\x00" * 13 + b"\x07", b"\x20\x01" + b"\x00" * 13 + b"\x09")
COUNT = 3


def _tcp() -> dpkt.tcp.TCP:
    return dpkt.tcp.TCP(sport=40000, dport=443, flags=dpkt.tcp.TH_SYN, seq=1)


def _v4(options: bytes = b"") -> bytes:
    ip = dpkt.ip.IP(src=V4[0], dst=V4[1], p=6, data=_tcp(), opts=options)
    return bytes(ip)


def _v6() -> bytes:
    tcp = bytes(_tcp())
    return bytes(dpkt.ip6.IP6(src=V6[0], dst=V6[1], nxt=6, hlim=64, plen=len(tcp))) + tcp


def _icmp4() -> bytes:
    quoted = _v4()[:28]
    icmp = dpkt.icmp.ICMP(type=3, code=3, data=dpkt.icmp.ICMP.Unreach(data=quoted))
    return bytes(dpkt.ip.IP(src=V4[1], dst=V4[0], p=1, data=icmp))


def _icmp6() -> bytes:
    body = struct.pack("!BBHI", 1, 4, 0, 0) + _v6()[:48]
    return bytes(dpkt.ip6.IP6(src=V6[1], dst=V6[0], nxt=58, hlim=64, plen=len(body))) + body


SHAPES = {"ipv4": (_v4(), 0x0800, True), "ipv4 options": (_v4(b"\x01" * 8), 0x0800, True),
          "ipv6": (_v6(), 0x86DD, True), "icmp": (_icmp4(), 0x0800, True), "icmp6": (_icmp6(), 0x86DD, True)}


def _ethernet(ip: bytes, ethertype: int, tags: int) -> bytes:
    header = b"\x02" * 6 + b"\x04" * 6
    for _ in range(tags):
        header += struct.pack("!HH", 0x8100, 7)
    return header + struct.pack("!H", ethertype) + ip


def _cooked(ip: bytes, ethertype: int) -> bytes:
    return struct.pack("!HHH8sH", 0, 1, 6, b"\x02" * 8, ethertype) + ip


def _programs(dlt: int) -> list:
    vlan = dlt == 1
    return [pcapy.compile(dlt, 262144, share_filter(s, COUNT, vlan=vlan, unplaced=True,
                                                    header=LINK_HEADERS.get(dlt)), 1, 0) for s in range(COUNT)]


def _frames(dlt: int):
    for name, (ip, ethertype, _) in SHAPES.items():
        if dlt == 1:
            for tags in (0, 1, 2):
                yield f"{name}, {tags} tags", _ethernet(ip, ethertype, tags)
        elif dlt == 113:
            yield name, _cooked(ip, ethertype)
        else:
            yield name, ip


@pytest.mark.parametrize("dlt", [1, 113, 12])
def test_no_prefix_of_any_frame_is_dropped_by_every_handle(dlt):
    programs = _programs(dlt)
    for name, frame in _frames(dlt):
        for length in range(1, len(frame) + 1):
            cut = frame[:length]
            assert any(p.filter(cut) for p in programs), f"{name}: the first {length} bytes reach no shard"


@pytest.mark.parametrize("dlt", [1, 113, 12])
def test_a_whole_plain_frame_reaches_only_its_shard(dlt):
    programs = _programs(dlt)
    expected = {"ipv4": shard_of(V4[0], 40000, V4[1], 443, COUNT), "ipv6": shard_of(V6[0], 40000, V6[1], 443, COUNT),
                "icmp": shard_of(V4[0], 40000, V4[1], 443, COUNT)}
    for name, frame in _frames(dlt):
        shape = name.split(",")[0]
        if shape not in expected:
            continue
        reached = [s for s, p in enumerate(programs) if p.filter(frame)]
        assert reached == [expected[shape]], name
