#!/usr/bin/env python3
"""Peak memory of `--summary` under a SYN flood with a small table: every connection that left the table must still
be printed at the end, so how it is kept between its departure and the end is what this measures.

    python3 benchmarks/summary_memory.py [--syns 1000000] [--max-conns 1000] [--cores 1 2] [--json-only]
                                         [--runs 1] [--no-checksum]

Makes (once, in benchmarks/data/) a capture of --syns SYNs from random sources, never answered (flood.py's
generator, no established connections, no scan), then runs `midstat -r FILE --summary [--json] --max-conns N
--cores C` under /usr/bin/time for each --cores, writing the output to a file, and reports the peak RSS (the largest
process: GNU time's %M, KiB / 1024), the seconds, the output's size and the connections it lists. With --runs N,
the JSON and table runs alternate N times, and the medians (wall; CPU = user + system of every process) and the
table / JSON wall ratio are printed too (issue #11's targets: `--max-conns 1000000 --cores 1 --no-checksum`,
within 1 GiB, the table at most 1.5x the JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from flood import generate  # noqa: E402


def run(path: Path, max_conns: int, cores: int, as_json: bool, no_checksum: bool = False) -> dict:
    with tempfile.NamedTemporaryFile(prefix="midstat-summary-", suffix=".out") as out:
        cmd = ["/usr/bin/time", "-f", "%U %S %M", sys.executable, "-m", "midstat_tui", "-r", str(path), "--summary",
               *(["--json"] if as_json else []), "--cores", str(cores), "--max-conns", str(max_conns),
               "--user", "root", *(["--no-checksum"] if no_checksum else [])]
        started = time.perf_counter()
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.PIPE, cwd=ROOT)
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr.decode()[-500:])
        size = os.path.getsize(out.name)
        if as_json:
            with open(out.name, "rb") as fh:
                listed = len(json.load(fh)["connections"])
        else:
            with open(out.name, "rb") as fh:
                listed = sum(1 for _ in fh) - 1
    user, system, rss = proc.stderr.split()[-3:]
    return {"cores": cores, "json": as_json, "max_conns": max_conns, "seconds": round(wall, 2),
            "cpu_seconds": round(float(user) + float(system), 2), "peak_rss_mb": round(int(rss) / 1024),
            "output_mb": round(size / 2**20, 1), "connections_listed": listed}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--syns", type=int, default=1_000_000)
    parser.add_argument("--max-conns", type=int, default=1000)
    parser.add_argument("--cores", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--json-only", action="store_true")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--no-checksum", action="store_true")
    args = parser.parse_args()
    data = HERE / "data"
    data.mkdir(exist_ok=True)
    path = data / f"synflood-{args.syns}.pcap"
    if not path.exists():
        started = time.perf_counter()
        count = generate(path, args.syns, 0, scan_ports=0)
        print(f"{path.name}: {count} packets, made in {time.perf_counter() - started:.0f} s", flush=True)
    for cores in args.cores:
        results: dict[bool, list[dict]] = {True: [], False: []}
        for _ in range(args.runs):  # alternating: a noisy moment hits both alike
            for as_json in (True,) if args.json_only else (True, False):
                result = run(path, args.max_conns, cores, as_json, args.no_checksum)
                results[as_json].append(result)
                print(json.dumps(result), flush=True)
        if args.runs > 1:
            medians = {kind: {key: statistics.median(r[key] for r in runs) for key in ("seconds", "cpu_seconds")}
                       | {"peak_rss_mb": max(r["peak_rss_mb"] for r in runs)} for kind, runs in results.items() if runs}
            ratios = [t["seconds"] / j["seconds"] for j, t in zip(results[True], results[False], strict=False)]
            print(json.dumps({"cores": cores, "medians_json": medians.get(True), "medians_table": medians.get(False),
                              "table_over_json_wall": round(statistics.median(ratios), 2) if ratios else None}),
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
