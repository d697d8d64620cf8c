"""Captures whose headers differ by direction, written frame by frame with correct checksums: the traffic on which a
shard choice that looks at the packet differently from the decoder splits one connection over two shards.

Each capture holds `count` whole TCP conversations (handshake, data both ways, FIN both ways), except `icmp_options`,
where every SYN carries IPv4 options and a router answers it with an ICMP unreachable quoting it.
"""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path

import dpkt

ETH_IP4, ETH_IP6, ETH_MPLS = 0x0800, 0x86DD, 0x8847
MACS = (b"\x02\x00\x00\x00\x00\x01", b"\x02\x00\x00\x00\x00\x02")
SYN, FIN, RST, PSH, ACK = 0x02, 0x01, 0x04, 0x08, 0x10


def _sum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def _csum(data: bytes) -> int:
    return ~_sum(data) & 0xFFFF


def tcp(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int, payload: bytes = b"") -> bytes:
    head = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0)
    seg = head + payload
    if len(src) == 4:
        pseudo = src + dst + struct.pack("!BBH", 0, 6, len(seg))
    else:
        pseudo = src + dst + struct.pack("!IxxxB", len(seg), 6)
    return seg[:16] + struct.pack("!H", _csum(pseudo + seg)) + seg[18:]


def ipv4(src: bytes, dst: bytes, proto: int, body: bytes, options: bytes = b"", ident: int = 1) -> bytes:
    ihl = 5 + len(options) // 4
    head = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, ihl * 4 + len(body), ident, 0x4000, 64, proto, 0, src, dst)
    head += options
    return head[:10] + struct.pack("!H", _csum(head)) + head[12:] + body


def ipv6(src: bytes, dst: bytes, body: bytes, dest_options: bool = False) -> bytes:
    if dest_options:  # one destination options header: PadN to 8 bytes
        body = bytes([6, 0, 1, 4, 0, 0, 0, 0]) + body
    return struct.pack("!IHBB16s16s", 6 << 28, len(body), 60 if dest_options else 6, 64, src, dst) + body


def ether(direction: int, etype: int, body: bytes) -> bytes:
    return MACS[1 - direction] + MACS[direction] + struct.pack("!H", etype) + body


def _conversation(send, sport: int, dport: int) -> None:
    """The segments of one whole conversation; send(direction, seq, ack, flags, payload)."""
    c, s = 1000 + sport, 50000 + sport
    send(0, c, 0, SYN, b"")
    send(1, s, c + 1, SYN | ACK, b"")
    send(0, c + 1, s + 1, ACK, b"")
    send(0, c + 1, s + 1, PSH | ACK, b"q" * 100)
    send(1, s + 1, c + 101, PSH | ACK, b"r" * 200)
    send(0, c + 101, s + 201, FIN | ACK, b"")
    send(1, s + 201, c + 102, FIN | ACK, b"")
    send(0, c + 102, s + 202, ACK, b"")


def write(path: Path, kind: str, count: int = 40) -> Path:
    """Write capture `kind` (one of KINDS) to `path`."""
    linktype = 14 if kind == "raw14" else 1
    frames: list[bytes] = []
    for i in range(count):
        v6 = kind == "ipv6_ext"
        if v6:
            a = ipaddress.ip_address(f"2001:db8::{i + 1:x}").packed
            b = ipaddress.ip_address(f"2001:db8:1::{(i * 7) % 250 + 1:x}").packed
        else:
            a = bytes([10, 1, i // 200, i % 200 + 1])
            b = bytes([10, 2, 0, (i * 7) % 250 + 1])
        sport, dport = 40000 + 2 * i, 80 + (i % 3)
        if kind == "icmp_options":
            _unreachable(frames, a, b, sport, dport, i)
            continue

        def send(direction: int, seq: int, ack: int, flags: int, payload: bytes,
                 a=a, b=b, sport=sport, dport=dport, v6=v6, i=i) -> None:
            src, dst = (a, b) if direction == 0 else (b, a)
            ports = (sport, dport) if direction == 0 else (dport, sport)
            seg = tcp(src, dst, *ports, seq, ack, flags, payload)
            if v6:  # only the client's packets, and only its data and FIN, carry an extension header
                ext = direction == 0 and flags & (PSH | FIN) != 0
                frames.append(ether(direction, ETH_IP6, ipv6(src, dst, seg, dest_options=ext)))
                return
            packet = ipv4(src, dst, 6, seg)
            if kind == "raw14":
                frames.append(packet)
            elif kind == "mpls" and direction == 0:  # one label on the way there, none on the way back
                label = struct.pack("!I", (1000 + i) << 12 | 1 << 8 | 64)
                frames.append(ether(direction, ETH_MPLS, label + packet))
            else:
                frames.append(ether(direction, ETH_IP4, packet))

        _conversation(send, sport, dport)
    with open(path, "wb") as fh:
        writer = dpkt.pcap.Writer(fh, linktype=linktype, snaplen=65535)
        for n, frame in enumerate(frames):
            writer.writepkt(frame, ts=1_700_000_000 + n * 0.05)
    return path


def _unreachable(frames: list[bytes], a: bytes, b: bytes, sport: int, dport: int, i: int) -> None:
    """A SYN with IPv4 options (a router alert), and an ICMP port unreachable from the router quoting it."""
    options = bytes([0x94, 4, 0, 0])
    syn = ipv4(a, b, 6, tcp(a, b, sport, dport, 1000 + i, 0, SYN), options=options, ident=i + 1)
    frames.append(ether(0, ETH_IP4, syn))
    quoted = syn[:24 + 8]  # the header with its options, and the first 8 bytes of TCP
    icmp = struct.pack("!BBHI", 3, 3, 0, 0) + quoted
    icmp = icmp[:2] + struct.pack("!H", _csum(icmp)) + icmp[4:]
    router = bytes([10, 9, 9, 9])
    frames.append(ether(1, ETH_IP4, ipv4(router, a, 1, icmp, ident=i + 1000)))


KINDS = ("ipv6_ext", "mpls", "icmp_options", "raw14")
