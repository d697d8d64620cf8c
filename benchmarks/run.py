#!/usr/bin/env python3
"""Throughput and memory of midstat on 1 and N cores against the tools users would pick instead, on the same file
in the same run.

    python3 benchmarks/run.py [--packets 1000000] [--conns 50000] [--cores 2] [--runs 3] [--no-python]

Makes (once, in benchmarks/data/) the deterministic synthetic capture of benchmarks/synth.py, then times
`midstat --summary --json` (full tracking: checksums, both state machines, every metric) on 1 and N cores, with
every connection written and with none (a --match no connection passes: the tracking without the JSON), the
pure-Python engine (MIDSTAT_PURE_PYTHON=1: what the compiled core replaced), `tcptrace -n` and
`tshark -q -z conv,tcp` when installed. Prints packets/s, connections/s, peak RSS (the largest process) and each
run's time as a ratio of midstat's on 1 core. Medians over --runs, taken round-robin.
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


def peak_rss_kb(cmd: list[str], env: dict | None = None) -> tuple[float, int, bytes, float]:
    """Wall time, peak RSS of the process and its children (GNU time), stdout, and CPU time (user + system of the
    process and its children: what a loaded machine's wall time hides)."""
    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%U %S %M", *cmd], capture_output=True, cwd=ROOT,
                          env=None if env is None else {**os.environ, **env})
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {proc.stderr.decode()[-500:]}")
    user, system, rss = proc.stderr.decode().strip().splitlines()[-1].split()
    return wall, int(rss), proc.stdout, float(user) + float(system)


# a filter no connection matches (nothing midstat tracks is in LISTEN): full tracking, next to no output
NOTHING = ["--match", "state LISTEN"]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--conns", type=int, default=50_000)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-python", action="store_true", help="skip the pure-Python engine (slow)")
    args = parser.parse_args()
    data = HERE / "data"
    data.mkdir(exist_ok=True)
    path = data / f"synth-{args.packets}-{args.conns}.pcap"
    if not path.exists():
        subprocess.run([sys.executable, str(HERE / "synth.py"), str(path), "--packets", str(args.packets),
                        "--conns", str(args.conns)], check=True)
    midstat = [sys.executable, "-m", "midstat_tui", "-r", str(path), "--summary", "--json", "--user", "root"]
    cores = ["--cores", str(args.cores)]
    tools: dict[str, tuple[list[str], dict | None]] = {
        "midstat, 1 core": (midstat + ["--cores", "1"], None),
        f"midstat, {args.cores} cores": (midstat + cores, None),
        "midstat, 1 core, no output": (midstat + ["--cores", "1"] + NOTHING, None),
        f"midstat, {args.cores} cores, no output": (midstat + cores + NOTHING, None),
    }
    if not args.no_python:
        tools["midstat, pure Python, 1 core"] = (midstat + ["--cores", "1"], {"MIDSTAT_PURE_PYTHON": "1"})
    if shutil.which("tcptrace"):
        tools["tcptrace -n"] = (["tcptrace", "-n", str(path)], None)
    if shutil.which("tshark"):
        tools["tshark -z conv,tcp"] = (["tshark", "-q", "-n", "-z", "conv,tcp", "-r", str(path)], None)
    walls: dict[str, list[float]] = {name: [] for name in tools}
    rsss: dict[str, list[int]] = {name: [] for name in tools}
    cpus: dict[str, list[float]] = {name: [] for name in tools}
    ratios: dict[str, list[float]] = {name: [] for name in tools}  # tcptrace's wall / this one's, same round
    cpu_ratios: dict[str, list[float]] = {name: [] for name in tools}  # the same in CPU time (a loaded machine)
    conns = packets = 0
    for _ in range(args.runs):  # round-robin, so that a noisy moment hits every tool alike
        for name, (cmd, env) in tools.items():
            wall, rss, out, cpu = peak_rss_kb(cmd, env)
            walls[name].append(wall)
            rsss[name].append(rss)
            cpus[name].append(cpu)
            if name == "midstat, 1 core":
                doc = json.loads(out)
                conns, packets = len(doc["connections"]), doc["stats"]["packets"]
        if "tcptrace -n" in tools:
            for name in tools:
                ratios[name].append(walls["tcptrace -n"][-1] / walls[name][-1])
                cpu_ratios[name].append(cpus["tcptrace -n"][-1] / cpus[name][-1])
    results = {name: (statistics.median(walls[name]), max(rsss[name])) for name in tools}
    base = results["midstat, 1 core"][0]
    print(f"capture: {path.name} ({packets:,} packets, {conns:,} connections); medians of {args.runs} runs")
    print(f"{'tool':38} {'seconds':>8} {'packets/s':>11} {'conns/s':>9} {'peak RSS MB*':>12} "
          f"{'time / midstat 1 core':>22} {'CPU s':>6} {'tcptrace / this**':>18} {'in CPU time':>12}")
    for name, (wall, rss) in results.items():
        ratio = f"{statistics.median(ratios[name]):.2f}" if ratios[name] else "-"
        cpu_ratio = f"{statistics.median(cpu_ratios[name]):.2f}" if cpu_ratios[name] else "-"
        print(f"{name:38} {wall:>8.2f} {packets / wall:>11,.0f} {conns / wall:>9,.0f} {rss / 1024:>12.0f} "
              f"{wall / base:>22.2f} {statistics.median(cpus[name]):>6.2f} {ratio:>18} {cpu_ratio:>12}")
    print("* peak RSS: the largest single process (GNU time's maximum resident set size)")
    print("'no output': --match selecting no connection, so the figure is the tracking, not the JSON of every one")
    print("** tcptrace's wall time over this one's in the same round (above 1: faster than tcptrace), median; "
          "then the same with CPU times (user + system of every process: on several cores, more than the wall)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
