"""A small capture, written with dpkt, for the table's layout cases: a connection between two long IPv6 addresses,
a reused port (a new SYN on a tuple in TIME_WAIT), a blind RST (out of window: the stack ignores it), and two
connections that differ only by their VLAN tag. Valid checksums, real sequence numbers."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import dpkt

MACS = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01"
V6_CLIENT, V6_SERVER = "2001:db8:aaaa:bbbb:cccc:dddd:eeee:1", "2001:db8:aaaa:bbbb:cccc:dddd:eeee:2"
V6_CLIENT_TEXT = f"[{V6_CLIENT}]:50000"
REUSED = ("10.9.0.1", 40000, "10.9.0.2", 80)
BLIND = ("10.9.0.3", 40001, "10.9.0.4", 80)
TAGGED = ("10.9.0.5", 40002, "10.9.0.6", 80)
S, A, F, R, P = dpkt.tcp.TH_SYN, dpkt.tcp.TH_ACK, dpkt.tcp.TH_FIN, dpkt.tcp.TH_RST, dpkt.tcp.TH_PUSH


def _frame(src: str, sport: int, dst: str, dport: int, flags: int, seq: int, ack: int, vlan: int | None = None,
           payload: bytes = b"") -> bytes:
    tcp = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, win=65535, data=payload)
    if ":" in src:
        ip = dpkt.ip6.IP6(src=socket.inet_pton(socket.AF_INET6, src), dst=socket.inet_pton(socket.AF_INET6, dst),
                          nxt=dpkt.ip.IP_PROTO_TCP, hlim=64, data=tcp, plen=len(bytes(tcp)))
        kind = 0x86DD
    else:
        ip = dpkt.ip.IP(src=socket.inet_aton(src), dst=socket.inet_aton(dst), p=dpkt.ip.IP_PROTO_TCP, ttl=64,
                        data=tcp)
        ip.len = len(bytes(ip))
        kind = 0x0800
    tag = b"" if vlan is None else struct.pack("!HH", 0x8100, vlan)
    return MACS + tag + struct.pack("!H", kind) + bytes(ip)


def _conversation(out: list, t: float, client: str, cport: int, server: str, sport: int, isn: int = 1000,
                  vlan: int | None = None, close: bool = False) -> float:
    c, s = isn, 90000
    steps = [(0, S, c, 0), (1, S | A, s, c + 1), (0, A, c + 1, s + 1), (0, P | A, c + 1, s + 1)]
    for side, flags, seq, ack in steps:
        src = (client, cport, server, sport) if side == 0 else (server, sport, client, cport)
        out.append((t, _frame(*src, flags, seq, ack, vlan, b"hello" if flags & P else b"")))
        t += 0.01
    if close:
        c += 6
        for side, flags, seq, ack in [(0, F | A, c, s + 1), (1, F | A, s + 1, c + 1), (0, A, c + 1, s + 2)]:
            src = (client, cport, server, sport) if side == 0 else (server, sport, client, cport)
            out.append((t, _frame(*src, flags, seq, ack, vlan)))
            t += 0.01
    return t


def write(path: Path) -> Path:
    frames: list = []
    t = 1_800_000_000.0
    t = _conversation(frames, t, V6_CLIENT, 50000, V6_SERVER, 443)
    t = _conversation(frames, t, *REUSED, close=True)            # the client ends in TIME_WAIT
    t = _conversation(frames, t + 1.0, *REUSED, isn=500000)       # a new SYN with a new ISN on that tuple
    t = _conversation(frames, t, *BLIND)
    # a reset from the "server" far outside the client's window: a blind guess, not obeyed
    frames.append((t, _frame(BLIND[2], BLIND[3], BLIND[0], BLIND[1], R, 90001 + 50_000_000, 0)))
    t += 0.01
    t = _conversation(frames, t, *TAGGED, vlan=10)
    t = _conversation(frames, t, *TAGGED, vlan=20)
    with path.open("wb") as fh:
        writer = dpkt.pcap.Writer(fh, linktype=dpkt.pcap.DLT_EN10MB)
        for ts, frame in frames:
            writer.writepkt(frame, ts=ts)
    return path
