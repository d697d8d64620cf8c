#!/usr/bin/env python3
"""#13's packet ring: what it costs per packet, and in memory at a million connections.

    python3 benchmarks/ring.py [--runs 7] [--skip-speed] [--skip-memory]

1. Speed: the 1M-packet benchmark capture (benchmarks/synth.py), held in memory, through the engine as a live
   session drives it (Engine.feed_batch per batch, changes tracked), with the ring off and on (64 packets per
   connection), runs alternating; medians over --runs, in the same run so the machine's noise falls on both.
2. Memory: a million tracked connections (benchmarks/data/synflood-1000000.pcap: a million SYNs, each its own
   connection, all in the table at the end; benchmarks/summary_memory.py makes it), fed to the engine in a fresh process
   with the ring off, on, and on without the budget; peak RSS of that process.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))


def load(path: Path) -> tuple[int, list[list[tuple[float, bytes]]]]:
    from midstat_tui.capture.files import FileSource

    source = FileSource(str(path))
    try:
        return source.datalink, [batch for batch in source.batches()]
    finally:
        source.close()


def one_pass(datalink: int, batches, ring: int) -> float:
    from midstat_tui.engine.flow_packets import ring_on
    from midstat_tui.engine.pipeline import Engine

    ring_on(ring)
    engine = Engine(datalink)
    engine.tracker.track_changes()
    touched = engine.tracker.touched
    t = time.perf_counter()
    for batch in batches:
        engine.feed_batch(batch)
        touched.clear()
    elapsed = time.perf_counter() - t
    del engine
    return elapsed


def bench_speed(runs: int) -> None:
    synth = HERE / "data" / "synth-1000000.pcap"
    if not synth.exists():
        subprocess.run([sys.executable, str(HERE / "synth.py"), str(synth)], check=True)
    datalink, batches = load(synth)
    packets = sum(len(b) for b in batches)
    times: dict[int, list[float]] = {0: [], 64: []}
    for _ in range(runs):
        for ring in times:
            times[ring].append(one_pass(datalink, batches, ring))
    off, on = statistics.median(times[0]), statistics.median(times[64])
    print(f"live-path tracking of {packets:,} packets, medians over {runs} runs: ring off {off:.3f} s "
          f"({packets / off:,.0f} packets/s), ring on {on:.3f} s ({packets / on:,.0f} packets/s): "
          f"{(on / off - 1) * 100:+.1f}%")


def child(path: str, ring: int, budget: int) -> None:
    """In a fresh process: feed the capture, report peak RSS and the table."""
    from midstat_tui.capture.files import FileSource
    from midstat_tui.engine.flow_packets import ring_on, ring_stats
    from midstat_tui.engine.pipeline import Engine

    ring_on(ring, budget)
    source = FileSource(path)
    engine = Engine(source.datalink)
    engine.tracker.track_changes()
    for batch in source.batches():
        engine.feed_batch(batch)
        engine.tracker.touched.clear()
    stats = ring_stats()
    print(json.dumps({"table": len(engine.tracker.table), "rss_mib": resource.getrusage(resource.RUSAGE_SELF)
                      .ru_maxrss / 1024, "ring_mib": stats["used"] / 2**20, "rings": stats["rings"]}))


def bench_memory() -> None:
    cases = [("a million SYNs", HERE / "data" / "synflood-1000000.pcap")]
    for name, path in cases:
        for label, ring, budget in (("off", 0, 0), ("on (64 packets, 64 MiB)", 64, 64 << 20),
                                    ("on, no budget", 64, 1 << 40)):
            out = subprocess.run([sys.executable, __file__, "--child", str(path), str(ring), str(budget)],
                                 check=True, capture_output=True, text=True).stdout
            r = json.loads(out)
            print(f"{name}: ring {label}: {r['table']:,} in the table, peak RSS {r['rss_mib']:.0f} MiB, "
                  f"rings {r['rings']:,} in {r['ring_mib']:.1f} MiB")


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    if not args.skip_speed:
        bench_speed(args.runs)
    if not args.skip_memory:
        bench_memory()
    return 0


if __name__ == "__main__":
    sys.exit(main())
