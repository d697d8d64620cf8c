#!/usr/bin/env python3
"""`--write` before/after: the same command run from two trees in turn, CPU time (user + system) and wall medians.

    python3 benchmarks/write_ab.py BEFORE_ROOT AFTER_ROOT CAPTURE [--runs 5] [--match 'dport 22']

Each tree is a checkout with its compiled core built in place (e.g. `git archive REV midstat_tui | tar -x -C DIR`
and the `.so` copied); the written files are compared byte for byte at the end.
"""

from __future__ import annotations

import argparse
import filecmp
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("capture")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--match", default="dport 22")
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="write-ab-"))
    trees = {"before": args.before, "after": args.after}
    cpu: dict[str, list[float]] = {name: [] for name in trees}
    wall: dict[str, list[float]] = {name: [] for name in trees}
    for _ in range(args.runs):
        for name, root in trees.items():
            cmd = ["/usr/bin/time", "-f", "%U %S", sys.executable, "-m", "midstat_tui", "-r", args.capture,
                   "--write", str(out / f"{name}.pcap"), "--match", args.match, "--user", "root"]
            started = time.perf_counter()
            proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, check=True)
            wall[name].append(time.perf_counter() - started)
            user, system = proc.stderr.strip().splitlines()[-1].split()
            cpu[name].append(float(user) + float(system))
    for name in trees:
        print(f"{name:6}  CPU median {statistics.median(cpu[name]):.2f} s  wall median "
              f"{statistics.median(wall[name]):.2f} s  CPU {[round(x, 2) for x in cpu[name]]}")
    same = filecmp.cmp(out / "before.pcap", out / "after.pcap", shallow=False)
    print("written files", "identical" if same else "DIFFER")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
