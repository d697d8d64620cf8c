#!/usr/bin/env python3
"""What IPFIX export and Prometheus metrics cost the tracking: the same run with and without them.

    python3 benchmarks/export_overhead.py [--packets 1000000] [--conns 50000] [--cores 1] [--runs 5]

On the deterministic synthetic capture of benchmarks/synth.py (made once in benchmarks/data/), times
`midstat -r FILE --summary --json --match 'state LISTEN'` (full tracking, next to no output: benchmarks/run.py's
"no output" row) plain, and with `--ipfix` to a real nfcapd listening on loopback plus `--metrics` on a loopback
port. Runs taken round-robin; prints the medians of wall time and of CPU time (user + system of the midstat
process and its children: the tracking, the IPFIX sender thread, the metrics server; steadier than wall time on a
machine other work shares), packets/s, the slowdown, and how many records nfcapd stored.
"""

from __future__ import annotations

import argparse
import json
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NOTHING = ["--match", "state LISTEN"]


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(cmd: list[str]) -> tuple[float, float, bytes]:
    """(wall seconds, CPU seconds, standard output) of one run."""
    cpu = _cpu()
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, cwd=ROOT)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.decode()[-500:])
    return wall, _cpu() - cpu, proc.stdout


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--conns", type=int, default=50_000)
    parser.add_argument("--cores", type=int, default=1)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    data = HERE / "data"
    data.mkdir(exist_ok=True)
    path = data / f"synth-{args.packets}-{args.conns}.pcap"
    if not path.exists():
        subprocess.run([sys.executable, str(HERE / "synth.py"), str(path), "--packets", str(args.packets),
                        "--conns", str(args.conns)], check=True)
    with tempfile.TemporaryDirectory() as flows:
        udp = free_port(socket.SOCK_DGRAM)
        collector = subprocess.Popen(["nfcapd", "-b", "127.0.0.1", "-p", str(udp), "-w", flows, "-B", "8388608"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        base = [sys.executable, "-m", "midstat_tui", "-r", str(path), "--summary", "--json", "--cores",
                str(args.cores), *NOTHING]
        runs: dict[str, list[float]] = {"off": [], "ipfix + metrics": []}
        cpus: dict[str, list[float]] = {"off": [], "ipfix + metrics": []}
        records = []
        try:
            for _ in range(args.runs):
                wall, cpu, _ = timed(base)
                runs["off"].append(wall)
                cpus["off"].append(cpu)
                wall, cpu, out = timed(base + ["--ipfix", f"127.0.0.1:{udp}",
                                               "--metrics", f"127.0.0.1:{free_port(socket.SOCK_STREAM)}"])
                runs["ipfix + metrics"].append(wall)
                cpus["ipfix + metrics"].append(cpu)
                records.append(json.loads(out)["stats"]["ipfix"])
        finally:
            time.sleep(1.0)
            collector.send_signal(signal.SIGTERM)
            collector.wait(30)
        stored = subprocess.run(["nfdump", "-R", flows, "-q", "-o", "csv", "-N"], capture_output=True,
                                text=True).stdout
        stored_count = sum(1 for line in stored.splitlines() if line and line[0].isdigit())
    off = statistics.median(runs["off"])
    on = statistics.median(runs["ipfix + metrics"])
    print(f"capture: {path.name}, {args.cores} core(s), medians of {args.runs} runs (round-robin)")
    for name, walls in runs.items():
        median = statistics.median(walls)
        print(f"  {name:18} wall {median:7.2f} s  {args.packets / median:>11,.0f} packets/s   runs: "
              + " ".join(f"{w:.2f}" for w in walls))
        median = statistics.median(cpus[name])
        print(f"  {name:18} CPU  {median:7.2f} s  {args.packets / median:>11,.0f} packets/CPU-s   runs: "
              + " ".join(f"{c:.2f}" for c in cpus[name]))
    print(f"  throughput with export on (wall): {off / on * 100:.1f}% of off ({(1 - off / on) * 100:.1f}% lower)")
    cpu_off, cpu_on = statistics.median(cpus["off"]), statistics.median(cpus["ipfix + metrics"])
    print(f"  throughput with export on (CPU):  {cpu_off / cpu_on * 100:.1f}% of off "
          f"({(1 - cpu_off / cpu_on) * 100:.1f}% lower)")
    print(f"  records per run (sent/dropped): {records[0]['sent']}/{records[0]['dropped']}; "
          f"nfcapd stored {stored_count} over {args.runs} runs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
