#!/usr/bin/env python3
"""Frames built to make a decoder work too hard: encapsulations nested hundreds of levels deep, and long chains of
IPv6 extension headers or GRE source route entries, each around a real TCP segment (a SYN, with a right checksum),
so that a decoder that unwraps them all would track a connection.

    python3 scripts/hostile_frames.py OUT.pcap [--depth 250] [--headers 180]   every kind, as an Ethernet capture

Used by scripts/fuzz.py (as seeds), the tests (tests/unit/test_hostile_frames.py, tests/functional) and
benchmarks/hostile.py.
"""

from __future__ import annotations

import argparse
import struct
import sys
from collections.abc import Callable

MAC_A = b"\x02\x00\x00\x00\x00\x01"
MAC_B = b"\x02\x00\x00\x00\x00\x02"


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def tcp_syn(src: bytes, dst: bytes, sport: int = 40000, dport: int = 80, seq: int = 1000) -> bytes:
    """A SYN from src to dst (4 or 16 address bytes), its checksum right for those addresses."""
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, 0x02, 64240, 0, 0)
    if len(src) == 4:
        pseudo = src + dst + struct.pack("!BBH", 0, 6, len(hdr))
    else:
        pseudo = src + dst + struct.pack("!IxxxB", len(hdr), 6)
    return hdr[:16] + struct.pack("!H", _csum(pseudo + hdr)) + hdr[18:]


def ipv4(proto: int, payload: bytes, src: bytes = b"\x0a\x00\x00\x01", dst: bytes = b"\x0a\x00\x00\x02") -> bytes:
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0, 64, proto, 0, src, dst)
    return hdr[:10] + struct.pack("!H", _csum(hdr)) + hdr[12:] + payload


def ipv6(nxt: int, payload: bytes, src: bytes = b"\xfd" + b"\0" * 14 + b"\x01",
         dst: bytes = b"\xfd" + b"\0" * 14 + b"\x02") -> bytes:
    return struct.pack("!IHBB16s16s", 0x60000000, len(payload), nxt, 64, src, dst) + payload


def ethernet(etype: int, payload: bytes) -> bytes:
    return MAC_B + MAC_A + struct.pack("!H", etype) + payload


def gre(etype: int, payload: bytes, routes: int = 0) -> bytes:
    if not routes:
        return struct.pack("!HH", 0, etype) + payload
    # routing present: the checksum/offset word, then `routes` entries of 4 address bytes, then the empty one
    sres = b"".join(struct.pack("!HBB", 0x0800, 0, 4) + b"\0\0\0\0" for _ in range(routes))
    return struct.pack("!HHHH", 0x4000, etype, 0, 0) + sres + struct.pack("!HBB", 0x0800, 0, 0) + payload


V4_SRC, V4_DST = b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02"
V6_SRC, V6_DST = b"\xfd" + b"\0" * 14 + b"\x01", b"\xfd" + b"\0" * 14 + b"\x02"


def ipip(depth: int) -> bytes:
    """IPv4 in IPv4, `depth` IP headers in all, around a TCP SYN (an IP packet, no link header)."""
    pkt = ipv4(6, tcp_syn(V4_SRC, V4_DST))
    for _ in range(depth - 1):
        pkt = ipv4(4, pkt)
    return pkt


def ip6ip6(depth: int) -> bytes:
    pkt = ipv6(6, tcp_syn(V6_SRC, V6_DST))
    for _ in range(depth - 1):
        pkt = ipv6(41, pkt)
    return pkt


def gre_ip(depth: int) -> bytes:
    """IPv4 / GRE / IPv4 / GRE ... (`depth` IP headers)."""
    pkt = ipv4(6, tcp_syn(V4_SRC, V4_DST))
    for _ in range(depth - 1):
        pkt = ipv4(47, gre(0x0800, pkt))
    return pkt


def gre_ethernet(depth: int) -> bytes:
    """IPv4 / GRE / Ethernet / IPv4 / GRE / Ethernet ... (transparent Ethernet bridging)."""
    pkt = ipv4(6, tcp_syn(V4_SRC, V4_DST))
    for _ in range(depth - 1):
        pkt = ipv4(47, gre(0x6558, ethernet(0x0800, pkt)))
    return pkt


def ext_chain(headers: int) -> bytes:
    """One IPv6 header, then `headers` destination options headers (8 bytes each), then the SYN."""
    seg = tcp_syn(V6_SRC, V6_DST)
    chain = b"".join(struct.pack("!BB6s", 60 if i < headers - 1 else 6, 0, b"\x01\x04\0\0\0\0") for i in range(headers))
    return ipv6(60 if headers else 6, chain + seg)


def gre_routes(routes: int) -> bytes:
    return ipv4(47, gre(0x0800, ipv4(6, tcp_syn(V4_SRC, V4_DST)), routes=routes))


def mpls_pseudowire(depth: int) -> bytes:
    """Ethernet over an MPLS pseudowire over Ethernet ... (an Ethernet frame; `depth` Ethernet headers)."""
    frame = ethernet(0x0800, ipv4(6, tcp_syn(V4_SRC, V4_DST)))
    for _ in range(depth - 1):
        frame = ethernet(0x8847, struct.pack("!I", (16 << 12) | 0x100 | 64) + b"\0\0\0\0" + frame)
    return frame


def isl(depth: int) -> bytes:
    """Cisco ISL headers around Ethernet frames around ISL headers ... (an Ethernet frame)."""
    frame = ethernet(0x0800, ipv4(6, tcp_syn(V4_SRC, V4_DST)))
    for _ in range(depth - 1):
        frame = (b"\x01\x00\x0c\x00\x00" + b"\x00" + MAC_A + b"\0\0" + b"\xaa\xaa\x03"
                 + b"\x00\x00\x0c" + b"\x00\x02" + b"\0\0\0\0" + frame)
    return frame


# name -> (builder of an Ethernet frame from a size, the size the issue reports, a size still within the limits)
KINDS: dict[str, tuple[Callable[[int], bytes], int, int]] = {
    "ipip": (lambda n: ethernet(0x0800, ipip(n)), 250, 3),
    "ip6ip6": (lambda n: ethernet(0x86DD, ip6ip6(n)), 250, 3),
    "gre": (lambda n: ethernet(0x0800, gre_ip(n)), 250, 3),
    "gre-ethernet": (lambda n: ethernet(0x0800, gre_ethernet(n)), 120, 3),
    "ext-headers": (lambda n: ethernet(0x86DD, ext_chain(n)), 180, 6),
    "gre-routes": (lambda n: ethernet(0x0800, gre_routes(n)), 300, 2),
    "mpls-pseudowire": (mpls_pseudowire, 250, 3),
    "isl": (isl, 200, 2),
}


def hostile(name: str, size: int | None = None) -> bytes:
    build, worst, _ = KINDS[name]
    return build(worst if size is None else size)


def tame(name: str) -> bytes:
    build, _, fine = KINDS[name]
    return build(fine)


def write_pcap(path: str, frames: list[tuple[float, bytes]], dlt: int = 1) -> None:
    with open(path, "wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, dlt))
        for ts, frame in frames:
            sec = int(ts)
            fh.write(struct.pack("<IIII", sec, int(round((ts - sec) * 1e6)), len(frame), len(frame)) + frame)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--depth", type=int, default=None, help="nesting depth / header count (default: each kind's)")
    args = parser.parse_args()
    frames = [(1000.0 + i, hostile(name, args.depth)) for i, name in enumerate(sorted(KINDS))]
    write_pcap(args.out, frames)
    print(f"{len(frames)} frames in {args.out}: {', '.join(sorted(KINDS))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
