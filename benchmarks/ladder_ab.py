#!/usr/bin/env python3
"""Opening the ladder (re-reading the flow + drawing it), timed in one process of one tree: for before/after runs,
alternate two trees' processes (benchmarks/RESULTS.md, 2026-11-30).

    python3 benchmarks/ladder_ab.py ROOT CAPTURE RUNS

ROOT: the tree whose midstat_tui is imported; CAPTURE: benchmarks/ladder.py's capture (the long flow 10.250.0.1:50000
-> 192.168.250.1:5001). Prints per run: wall seconds, CPU seconds (user+sys), the flow's packets."""

from __future__ import annotations

import resource
import sys
import time


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    root, path, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
    sys.path.insert(0, root)
    from midstat_tui.engine.flow_packets import FlowReader, FlowRef
    from midstat_tui.output.ladder import ladder

    reader = FlowReader(path)
    (row,) = reader.select("host 10.250.0.1")
    ref = FlowRef.of(row)
    for _ in range(runs):
        t, c = time.perf_counter(), cpu()
        flow = reader.flow(ref)
        ladder(flow)
        print(f"{time.perf_counter() - t:.4f} {cpu() - c:.4f} {len(flow.packets)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
