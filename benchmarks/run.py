#!/usr/bin/env python3
"""Throughput and memory of midstat on 1 and N cores against the tools users would pick instead, on the same file
in the same run.

    python3 benchmarks/run.py [--packets 1000000] [--conns 50000] [--cores 2] [--runs 3]

Makes (once, in benchmarks/data/) the deterministic synthetic capture of benchmarks/synth.py, then times
`midstat --summary --json` (full tracking: checksums, both state machines, every metric) on 1 and N cores,
`tcptrace -n` and `tshark -q -z conv,tcp` when installed. Prints packets/s, connections/s, peak RSS (of the whole
process tree) and each tool's time as a ratio of midstat's on 1 core. Medians over --runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def peak_rss_kb(cmd: list[str]) -> tuple[float, int, bytes]:
    """Wall time, peak RSS of the process and its children (GNU time), and stdout."""
    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], capture_output=True, cwd=ROOT)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {proc.stderr.decode()[-500:]}")
    rss = int(proc.stderr.decode().strip().splitlines()[-1])
    return wall, rss, proc.stdout


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--conns", type=int, default=50_000)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    data = HERE / "data"
    data.mkdir(exist_ok=True)
    path = data / f"synth-{args.packets}-{args.conns}.pcap"
    if not path.exists():
        subprocess.run([sys.executable, str(HERE / "synth.py"), str(path), "--packets", str(args.packets),
                        "--conns", str(args.conns)], check=True)
    midstat = [sys.executable, "-m", "midstat_tui", "-r", str(path), "--summary", "--json"]
    tools = {"midstat, 1 core": midstat + ["--cores", "1"],
             f"midstat, {args.cores} cores": midstat + ["--cores", str(args.cores)]}
    if shutil.which("tcptrace"):
        tools["tcptrace -n"] = ["tcptrace", "-n", str(path)]
    if shutil.which("tshark"):
        tools["tshark -z conv,tcp"] = ["tshark", "-q", "-n", "-z", "conv,tcp", "-r", str(path)]
    results = {}
    for name, cmd in tools.items():
        walls, rsss = [], []
        for _ in range(args.runs):
            wall, rss, out = peak_rss_kb(cmd)
            walls.append(wall)
            rsss.append(rss)
            if name.startswith("midstat"):
                conns = len(json.loads(out)["connections"])
        results[name] = (statistics.median(walls), max(rsss))
    base = results["midstat, 1 core"][0]
    print(f"capture: {path.name} ({args.packets:,} packets, {conns:,} connections); medians of {args.runs} runs")
    print(f"{'tool':24} {'seconds':>8} {'packets/s':>11} {'conns/s':>9} {'peak RSS MB*':>12} "
          f"{'time / midstat 1 core':>22}")
    for name, (wall, rss) in results.items():
        print(f"{name:24} {wall:>8.2f} {args.packets / wall:>11,.0f} {conns / wall:>9,.0f} {rss / 1024:>12.0f} "
              f"{wall / base:>22.2f}")
    print("* peak RSS: the largest single process (GNU time's maximum resident set size)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
