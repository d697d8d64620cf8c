#!/usr/bin/env python3
"""The same `--summary --json` runs as benchmarks/run.py, from two source trees in alternation (before and after a
change), with `tcptrace -n` in every round: medians of wall and CPU time, and tcptrace's time over each run's in
the same round (wall and CPU: on a loaded machine the CPU ratio is the steadier one).

    python3 benchmarks/before_after.py BEFORE_TREE AFTER_TREE [--runs 5] [--packets 1000000] [--conns 50000]

Each tree is a checkout with its compiled core built in place (`git archive main | tar -x -C /tmp/before`, then
`python3 setup.py build_ext --inplace` there). The capture is benchmarks/run.py's (made first by run.py or synth.py).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNS = {
    "1 core": ["--cores", "1"],
    "1 core, no output": ["--cores", "1", "--match", "state LISTEN"],
    "2 cores": ["--cores", "2"],
}


def timed(cmd: list[str], cwd: str) -> tuple[float, float]:
    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%U %S", *cmd], cwd=cwd, capture_output=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} failed: {proc.stderr.decode()[-400:]}")
    user, system = proc.stderr.decode().split()[-2:]
    return wall, float(user) + float(system)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--conns", type=int, default=50_000)
    args = parser.parse_args()
    path = HERE / "data" / f"synth-{args.packets}-{args.conns}.pcap"
    if not path.exists():
        print(f"{path} is missing: run benchmarks/run.py once", file=sys.stderr)
        return 2
    trees = {"before": args.before, "after": args.after}
    tcptrace: list[tuple[float, float]] = []
    results: dict[tuple[str, str], list[tuple[float, float, float, float]]] = {}
    for _ in range(args.runs):
        tcptrace.append(timed(["tcptrace", "-n", str(path)], str(HERE)))
        for label, extra in RUNS.items():
            for tree, cwd in trees.items():
                wall, cpu = timed([sys.executable, "-m", "midstat_tui", "-r", str(path), "--summary", "--json",
                                   "--user", "root", *extra], cwd)
                results.setdefault((label, tree), []).append(
                    (wall, cpu, tcptrace[-1][0] / wall, tcptrace[-1][1] / cpu))
    print(f"{'run':28} {'wall s':>7} {'CPU s':>6} {'tcptrace/this, wall':>20} {'in CPU':>7}")
    print(f"{'tcptrace -n':28} {statistics.median(w for w, _ in tcptrace):7.2f} "
          f"{statistics.median(c for _, c in tcptrace):6.2f}")
    for (label, tree), rows in results.items():
        wall, cpu, ratio, cpu_ratio = (statistics.median(row[i] for row in rows) for i in range(4))
        print(f"{label + ', ' + tree:28} {wall:7.2f} {cpu:6.2f} {ratio:20.2f} {cpu_ratio:7.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
