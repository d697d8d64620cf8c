#!/usr/bin/env python3
"""The engine on a capture taken on a host with checksum offload: is the host's own traffic still fast?

    python3 benchmarks/offload.py CAPTURE.pcap [--runs 5]

Rewrites the capture (synth.py's, or any Ethernet IPv4 one) as if every server were one host, 192.168.0.1, that
captured its own traffic with transmit checksum offload: the packets it sends keep a checksum that does not verify,
the clients' are right. Then times, in CPU seconds (medians of --runs, in one run so the machine's noise is
shared): the original capture with `verify` (the reference), the rewritten one with `verify` (the host's packets
counted and dropped, the old behaviour), and with `auto` and the host's address (they are tracked: the compiled
loop takes them as it takes the right ones).
"""

from __future__ import annotations

import argparse
import socket
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

import dpkt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from midstat_tui.capture.files import FileSource  # noqa: E402
from midstat_tui.decode.checksum import ChecksumPolicy  # noqa: E402
from midstat_tui.engine.pipeline import Engine, run_file  # noqa: E402

HOST = socket.inet_aton("192.168.0.1")


def _checksum(pseudo: bytes, segment: bytes) -> int:
    return dpkt.in_cksum_done(dpkt.in_cksum_add(dpkt.in_cksum_add(0, pseudo), segment))


def host_copy(source: str, out: str) -> tuple[int, int]:
    """The capture as taken on HOST with offload; returns (packets, packets with an unfilled checksum)."""
    packets = unfilled = 0
    with open(source, "rb") as src, open(out, "wb") as dst:
        reader = dpkt.pcap.Reader(src)
        writer = dpkt.pcap.Writer(dst, snaplen=262144, linktype=reader.datalink())
        for ts, frame in reader:
            packets += 1
            at = 12
            etype = struct.unpack_from("!H", frame, at)[0]
            while etype == 0x8100:
                at += 4
                etype = struct.unpack_from("!H", frame, at)[0]
            ip = at + 2
            if etype == 0x0800 and frame[ip + 9] == 6:
                b = bytearray(frame)
                from_server = b[ip + 12] == 192  # synth.py's servers are 192.168.x.y
                b[ip + 12 if from_server else ip + 16:ip + 16 if from_server else ip + 20] = HOST
                tcp = ip + (b[ip] & 15) * 4
                end = ip + struct.unpack_from("!H", b, ip + 2)[0]
                b[tcp + 16:tcp + 18] = b"\0\0"
                value = _checksum(bytes(b[ip + 12:ip + 20]) + struct.pack("!BBH", 0, 6, end - tcp), bytes(b[tcp:end]))
                if from_server:
                    value ^= 0x5A5A
                    unfilled += 1
                struct.pack_into("!H", b, tcp + 16, value)
                frame = bytes(b)
            writer.writepkt(frame, ts)
    return packets, unfilled


def timed(path: str, policy: ChecksumPolicy, runs: int) -> tuple[float, dict]:
    batches = list(FileSource(path).batches())
    times = []
    stats: dict = {}
    for _ in range(runs):
        engine = Engine(1, checksums=policy)
        start = time.process_time()
        stats = run_file(engine, iter(batches)).stats
        times.append(time.process_time() - start)
    return statistics.median(times), stats


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("capture")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        copy = str(Path(tmp) / "host.pcap")
        packets, unfilled = host_copy(args.capture, copy)
        print(f"{packets} packets, {unfilled} sent by the host with an unfilled checksum")
        for label, path, policy in (
                ("original, verify", args.capture, ChecksumPolicy("verify")),
                ("host's capture, verify", copy, ChecksumPolicy("verify")),
                ("host's capture, auto", copy, ChecksumPolicy("auto", host=(HOST,)))):
            seconds, stats = timed(path, policy, args.runs)
            print(f"{label:24} {packets / seconds:>11,.0f} packets/s  started {stats['started']}, bad checksum "
                  f"{stats['bad_checksum']}, offloaded {stats['offloaded_checksum']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
