#!/usr/bin/env python3
"""A deterministic synthetic capture with a realistic mix, for the benchmarks (not for correctness tests: those use
real stacks). Same seed, same bytes.

    python3 benchmarks/synth.py OUT.pcap [--packets 1000000] [--conns 50000] [--seconds 60] [--seed 1]

Mix: IPv4 and about 10% IPv6, about 15% of frames VLAN-tagged, full handshakes with data both ways and correct
sequence numbers, FIN closes from either side, RST closes, refused attempts, SYN-only scans, flows picked up
mid-stream; 54 to 1514 byte frames; valid TCP checksums; connections overlap (tens of thousands open at once).
"""

from __future__ import annotations

import argparse
import heapq
import random
import struct

import dpkt

ETH_IP4 = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00"
ETH_IP6 = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x86\xdd"
SYN, ACK, FIN, RST, PSH = 0x02, 0x10, 0x01, 0x04, 0x08


def _checksum(pseudo: bytes, segment: bytes) -> int:
    return dpkt.in_cksum_done(dpkt.in_cksum_add(dpkt.in_cksum_add(0, pseudo), segment))


def frame(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int, payload: int,
          vlan: int | None) -> bytes:
    tcp = bytearray(struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 0x50, flags,
                                65535, 0, 0)) + bytes(payload)
    if len(src) == 4:
        pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
        struct.pack_into("!H", tcp, 16, _checksum(pseudo, bytes(tcp)))
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0, src, dst)
        ip = ip[:10] + struct.pack("!H", dpkt.in_cksum(ip)) + ip[12:]
        eth = ETH_IP4
    else:
        pseudo = src + dst + struct.pack("!IxxxB", len(tcp), 6)
        struct.pack_into("!H", tcp, 16, _checksum(pseudo, bytes(tcp)))
        ip = struct.pack("!IHBB16s16s", 0x60000000, len(tcp), 6, 64, src, dst)
        eth = ETH_IP6
    if vlan is not None:
        eth = eth[:12] + struct.pack("!HH", 0x8100, vlan) + eth[12:]
    return eth + ip + bytes(tcp)


def connection(rng: random.Random, index: int, start: float):
    """Yield (time, frame) for one connection of a randomly chosen kind."""
    v6 = rng.random() < 0.10
    if v6:
        client = b"\xfd\x00" + bytes(10) + index.to_bytes(4, "big")
        server = b"\xfd\x01" + bytes(13) + bytes([rng.randrange(1, 200)])
    else:
        client = bytes([10, (index >> 16) & 255, (index >> 8) & 255, index & 255 or 1])
        server = bytes([192, 168, rng.randrange(256), rng.randrange(1, 255)])
    sport = 32768 + (index * 2) % 28000
    dport = rng.choice((80, 443, 443, 443, 22, 8080, 25))
    vlan = rng.choice((100, 200)) if rng.random() < 0.15 else None
    cseq, sseq = rng.randrange(2**32), rng.randrange(2**32)
    rtt = rng.uniform(0.0005, 0.08)
    t = start

    def c(flags, payload=0):
        return frame(client, server, sport, dport, cseq, sseq if flags & ACK else 0, flags, payload, vlan)

    def s(flags, payload=0):
        return frame(server, client, dport, sport, sseq, cseq, flags, payload, vlan)

    kind = rng.random()
    if kind < 0.08:  # a scan: a lone SYN, sometimes retransmitted
        yield t, c(SYN)
        if rng.random() < 0.3:
            yield t + 1.0, c(SYN)
        return
    if kind < 0.14:  # refused
        yield t, c(SYN)
        cseq += 1
        yield t + rtt, s(RST | ACK)
        return
    midstream = kind < 0.24
    if not midstream:
        yield t, c(SYN)
        cseq += 1
        t += rtt / 2
        yield t, s(SYN | ACK)
        sseq += 1
        t += rtt / 2
        yield t, c(ACK)
    for _ in range(rng.randrange(1, 12)):
        t += rng.expovariate(4.0)
        size = rng.choice((rng.randrange(1, 300), 1460))
        yield t, c(PSH | ACK, size)
        cseq += size
        t += rtt / 2
        yield t, s(ACK)
        reply = rng.choice((0, rng.randrange(1, 1460), 1460))
        if reply:
            yield t + 0.0001, s(PSH | ACK, reply)
            sseq += reply
            t += rtt / 2
            yield t, c(ACK)
    end = rng.random()
    t += rng.expovariate(2.0)
    if end < 0.12:
        yield t, c(RST)
    elif end < 0.20:
        yield t, s(RST)
    elif end < 0.60:
        yield t, c(FIN | ACK)
        cseq += 1
        yield t + rtt / 2, s(FIN | ACK)
        sseq += 1
        yield t + rtt, c(ACK)
    elif end < 0.95:
        yield t, s(FIN | ACK)
        sseq += 1
        yield t + rtt / 2, c(FIN | ACK)
        cseq += 1
        yield t + rtt, s(ACK)
    # else: left open at the end of the capture


def generate(path: str, packets: int, conns: int, seconds: float, seed: int) -> int:
    rng = random.Random(seed)
    starts = sorted(rng.uniform(0, seconds) for _ in range(conns))
    base = 1_700_000_000.0
    heap: list = []
    gens = []
    for i, start in enumerate(starts):
        gen = connection(random.Random(rng.getrandbits(64)), i + 1, base + start)
        gens.append(gen)
        first = next(gen, None)
        if first is not None:
            heapq.heappush(heap, (first[0], i, first[1]))
    written = 0
    with open(path, "wb") as fh:
        writer = dpkt.pcap.Writer(fh, snaplen=65535, linktype=dpkt.pcap.DLT_EN10MB)
        while heap and written < packets:
            ts, i, data = heapq.heappop(heap)
            writer.writepkt(data, ts=ts)
            written += 1
            nxt = next(gens[i], None)
            if nxt is not None:
                heapq.heappush(heap, (max(nxt[0], ts), i, nxt[1]))
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--conns", type=int, default=50_000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    written = generate(args.out, args.packets, args.conns, args.seconds, args.seed)
    print(f"{args.out}: {written} packets")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
