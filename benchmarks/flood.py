#!/usr/bin/env python3
"""A SYN flood and a port scan against a table bound, and a million connections held.

    python3 benchmarks/flood.py [--syns 2000000] [--established 1000] [--max-conns 100000 1000000] [--cores 1]

Makes (once, in benchmarks/data/) a deterministic capture: --established long-lived connections (full handshakes to
port 443, talking now and then), then a flood of --syns SYNs from random sources to port 80 (never answered), with a
port scan of all 65,535 ports of another host (each answered by RST/ACK) in its middle. Runs
`midstat --summary --json` on it with each --max-conns, under /usr/bin/time, and reports packets/s, peak RSS of the
whole process tree, connections started, evicted, active and left in the table, and whether the first 100
established connections survived the flood (they should: half-open entries are evicted first).

With --established 1000000 --syns 0 it measures a million established connections held at once instead.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import dpkt

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from synth import ACK, PSH, RST, SYN, frame  # noqa: E402

SERVER = bytes([192, 168, 0, 1])
SCANNED = bytes([192, 168, 0, 2])
SCANNER = bytes([203, 0, 113, 9])
# the established connections whose survival is checked one by one: the first SAMPLED (client ports 10000 up);
# listing a million connections would measure the JSON output, not the table
SAMPLED = 100
SAMPLE = f"dport 443 and sport 10000-{10000 + SAMPLED - 1}"


def _client(i: int) -> bytes:
    return bytes([10, (i >> 16) & 255, (i >> 8) & 255, (i & 255) or 1])


def generate(path: Path, syns: int, established: int, seed: int = 1, scan_ports: int = 65535) -> int:
    rng = random.Random(seed)
    t = 1_700_000_000.0
    written = 0
    seqs = []
    with open(path, "wb") as fh:
        writer = dpkt.pcap.Writer(fh, snaplen=65535, linktype=dpkt.pcap.DLT_EN10MB)

        def put(data: bytes) -> None:
            nonlocal written
            writer.writepkt(data, ts=t)
            written += 1

        for i in range(established):  # the connections the flood must not push out
            c, port = _client(i + 1), 10000 + i % 50000
            cseq, sseq = rng.getrandbits(32), rng.getrandbits(32)
            put(frame(c, SERVER, port, 443, cseq, 0, SYN, 0, None))
            put(frame(SERVER, c, 443, port, sseq, cseq + 1, SYN | ACK, 0, None))
            put(frame(c, SERVER, port, 443, cseq + 1, sseq + 1, ACK, 0, None))
            seqs.append((c, port, cseq + 1, sseq + 1))
            t += 1e-5

        def keepalive() -> None:
            nonlocal t
            for k, (c, port, cseq, sseq) in enumerate(seqs):
                put(frame(c, SERVER, port, 443, cseq, sseq, PSH | ACK, 1, None))
                put(frame(SERVER, c, 443, port, sseq, cseq + 1, ACK, 0, None))
                seqs[k] = (c, port, cseq + 1, sseq)
                t += 1e-6

        scan_at = syns // 2
        for n in range(syns):
            src = bytes([rng.randrange(1, 224), rng.randrange(256), rng.randrange(256), rng.randrange(1, 255)])
            put(frame(src, SERVER, rng.randrange(1024, 65536), 80, rng.getrandbits(32), 0, SYN, 0, None))
            t += 2e-6
            if n % 200_000 == 199_999:
                keepalive()
            if n == scan_at:
                for port in range(1, scan_ports + 1):
                    seq = rng.getrandbits(32)
                    put(frame(SCANNER, SCANNED, 40000, port, seq, 0, SYN, 0, None))
                    put(frame(SCANNED, SCANNER, port, 40000, 0, seq + 1, RST | ACK, 0, None))
                    t += 2e-6
        keepalive()
    return written


def run(path: Path, max_conns: int, cores: int) -> dict:
    cmd = ["/usr/bin/time", "-f", "%M", sys.executable, "-m", "midstat_tui", "-r", str(path), "--summary", "--json",
           "--match", SAMPLE, "--cores", str(cores), "--max-conns", str(max_conns), "--user", "root"]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, cwd=ROOT)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.decode()[-500:])
    doc = json.loads(proc.stdout)
    stats = doc["stats"]
    alive = [c for c in doc["connections"] if c["ended"] is None and c["client_state"] == "ESTABLISHED"
             and c["server_state"] == "ESTABLISHED"]
    return {"max_conns": max_conns, "cores": cores, "seconds": round(wall, 2), "packets": stats["packets"],
            "packets_per_s": round(stats["packets"] / wall), "peak_rss_mb": round(int(proc.stderr.split()[-1]) / 1024),
            "started": stats["started"], "evicted": stats["evicted"], "in_table": stats["in_table"],
            "active": stats["active"], "sampled_established_alive": f"{len(alive)}/{len(doc['connections'])}",
            "bytes_per_conn_in_table": None}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--syns", type=int, default=2_000_000)
    parser.add_argument("--established", type=int, default=1000)
    parser.add_argument("--max-conns", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--cores", type=int, default=1)
    args = parser.parse_args()
    data = HERE / "data"
    data.mkdir(exist_ok=True)
    path = data / f"flood-{args.syns}-{args.established}.pcap"
    if not path.exists():
        started = time.perf_counter()
        count = generate(path, args.syns, args.established)
        print(f"{path.name}: {count} packets, made in {time.perf_counter() - started:.0f} s", flush=True)
    baseline = run_empty()
    for bound in args.max_conns:
        result = run(path, bound, args.cores)
        if result["in_table"]:
            result["bytes_per_conn_in_table"] = round((result["peak_rss_mb"] - baseline) * 1024 * 1024
                                                      / result["in_table"])
        print(json.dumps(result), flush=True)
    print(f"(peak RSS of midstat on an empty capture: {baseline} MB; bytes per connection subtract it)")
    return 0


def run_empty() -> int:
    """Peak RSS (MB) of the same command on a capture with a single packet: the interpreter and libraries."""
    path = HERE / "data" / "one-packet.pcap"
    if not path.exists():
        with open(path, "wb") as fh:
            dpkt.pcap.Writer(fh, linktype=dpkt.pcap.DLT_EN10MB).writepkt(
                frame(_client(1), SERVER, 1000, 443, 1, 0, SYN, 0, None), ts=1.0)
    return run(path, 1000, 1)["peak_rss_mb"]


if __name__ == "__main__":
    sys.exit(main())
