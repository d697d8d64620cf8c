#!/usr/bin/env python3
"""How long the TUI's engine takes to replay a capture to its end, at --speed 0 or a pace, on one shard and on N.

    python3 benchmarks/tui_replay.py [--cores 2] [--runs 3] [--speed 0]

Times the session the TUI reads (`engine.session.Session` on one shard, `engine.shard_sessions.ShardedFileSession`
on N) from start to the end of the 1M-packet synthetic capture of benchmarks/synth.py, pulling every 50 ms as the
face would; prints the medians, packets and connections at the end (they must be equal) and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from midstat_tui.capture.files import FileSource  # noqa: E402
from midstat_tui.engine.headless import Job  # noqa: E402
from midstat_tui.engine.pipeline import Engine  # noqa: E402
from midstat_tui.engine.session import Session  # noqa: E402
from midstat_tui.engine.shard_sessions import ShardedFileSession  # noqa: E402
from midstat_tui.tcp.tracker import TrackerConfig  # noqa: E402


def to_the_end(make) -> tuple[float, int, int]:
    session = make()
    started = time.perf_counter()
    session.start()
    try:
        while not session.at_end:
            time.sleep(0.05)
            session.pull()
        elapsed = time.perf_counter() - started
        stats = session.pull().stats
    finally:
        session.stop()
    return elapsed, stats["packets"], stats["in_table"]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--speed", type=float, default=0.0, help="0: as fast as possible; 10: ten times the pace")
    args = parser.parse_args()
    path = HERE / "data" / "synth-1000000-50000.pcap"
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        subprocess.run([sys.executable, str(HERE / "synth.py"), str(path)], check=True)

    def one() -> Session:
        source = FileSource(str(path))
        return Session(Engine(source.datalink), source, live=False, speed=args.speed)

    def many() -> ShardedFileSession:
        return ShardedFileSession(Job(str(path), None, TrackerConfig()), args.cores, speed=args.speed)

    results = {}
    for name, make in (("1 shard", one), (f"{args.cores} shards", many)):
        runs = [to_the_end(make) for _ in range(args.runs)]
        results[name] = statistics.median(r[0] for r in runs)
        print(f"{name:>9}: {results[name]:6.2f} s to the end (median of {args.runs}); packets {runs[0][1]:,}, "
              f"connections in the table {runs[0][2]:,}", flush=True)
    times = list(results.values())
    print(f"ratio: {times[0] / times[1]:.2f}x")
    if args.speed > 0:
        source = FileSource(str(path))
        stamps = [ts for batch in source.batches() for ts, _ in batch]
        print(f"the capture lasts {stamps[-1] - stamps[0]:.2f} s: {(stamps[-1] - stamps[0]) / args.speed:.2f} s "
              f"at --speed {args.speed:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
