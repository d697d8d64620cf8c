#!/usr/bin/env python3
"""Live --write's parts, in one process (no capture): the synthetic capture's first packets fed to an engine in
batches as a live capture hands them over (64 packets), with the engine alone, with the tracker's events on (what a
state term needs), and with engine.live_write's chooser for three expressions. CPU time per packet (process_time),
each variant `--runs` times in turn.

    python3 benchmarks/live_write_parts.py [--packets 200000] [--batch 64] [--runs 3]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

import dpkt

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from midstat_tui.engine.live_write import LiveChooser  # noqa: E402
from midstat_tui.engine.pipeline import Engine  # noqa: E402
from midstat_tui.engine.records import row_of  # noqa: E402
from midstat_tui.problems import Lens  # noqa: E402
from midstat_tui.query import compile_query  # noqa: E402

VARIANTS = [("engine alone", None, None), ("events on", "events", None), ("--write dport 22", "write", "dport 22"),
            ("--write (all)", "write", None),
            ("--write state term", "write", "sstate CLOSE_WAIT or cstate FIN_WAIT_2")]


def one(batches: list, packets: int, mode: str | None, match: str | None) -> float:
    engine = Engine(1)
    chooser = None
    if mode == "events":
        engine.tracker.on_event = lambda *args: None
    elif mode == "write":
        predicate = compile_query(match, Lens()) if match else None

        def wanted(conn, now):
            return predicate is None or predicate(row_of(conn), now)

        chooser = LiveChooser(engine, wanted, lambda *args: None, match)
    start = time.process_time()
    for batch in batches:
        engine.feed_batch(batch)
        if chooser is not None:
            chooser.tap(batch, 0.0)
    return (time.process_time() - start) / packets * 1e6


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--packets", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with open(HERE / "data" / "synth-1000000-50000.pcap", "rb") as fh:
        packets = [(ts, bytes(frame)) for ts, frame in itertools.islice(dpkt.pcap.Reader(fh), args.packets)]
    batches = [packets[i:i + args.batch] for i in range(0, len(packets), args.batch)]
    results: dict[str, list[float]] = {name: [] for name, _, _ in VARIANTS}
    for _ in range(args.runs):
        for name, mode, match in VARIANTS:
            results[name].append(one(batches, len(packets), mode, match))
    for name, runs in results.items():
        print(f"{name}: median {statistics.median(runs):.3f} us/packet (runs: "
              f"{', '.join(f'{r:.3f}' for r in runs)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
