#!/usr/bin/env python3
"""The TUI replaying a SYN flood at --speed 0 on one core: how long the UI thread is ever blocked, and how long the
replay takes to reach the end, against the headless tracking of the same file.

    python3 benchmarks/tui_flood.py [--pcap benchmarks/data/synflood-1000000.pcap] [--runs 1]

The real app (headless, App.run_test, 160x50) over the real session, with its one-second refresh; a 20 ms timer in
the app's loop records how late it fires (the longest lateness is the longest the UI could not answer a key).
The capture is made by `benchmarks/flood.py --write` style tools (1,000,000 SYNs from distinct sources, checksums
zero: checksums are ignored, as `--no-checksum`). Targets (issue #11): no block over 250 ms; the end within 1.5x the
headless tracking time.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from midstat_tui.capture.files import FileSource  # noqa: E402
from midstat_tui.engine.pipeline import Engine, run_file  # noqa: E402
from midstat_tui.engine.session import Session  # noqa: E402
from midstat_tui.ui.app import MidstatApp  # noqa: E402

PROBE = 0.02


def headless(path: str, frames: bool = True) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process) of the tracking alone, read as a headless run reads a file (the
    compiled reader: `FileSource.batches(frames=True)`, engine/headless.py); `frames=False`: libpcap's batches (this
    benchmark's baseline before 2026-11-30's flood3)."""
    source = FileSource(path)
    engine = Engine(source.datalink, verify_checksums=False)
    started, cpu = time.perf_counter(), time.process_time()
    run_file(engine, source.batches(frames=frames))
    return time.perf_counter() - started, time.process_time() - cpu


async def tui(path: str, timeout: float) -> tuple[float, float, int, float]:
    source = FileSource(path)
    session = Session(Engine(source.datalink, verify_checksums=False), source, live=False, speed=0.0)
    app = MidstatApp(session, interval=1.0, show_load=False)
    session.start()
    worst = 0.0
    cpu = time.process_time()  # the process's CPU (every thread: the engine's, the app's, the side scan's)
    async with app.run_test(size=(160, 50)) as pilot:
        started = time.perf_counter()
        last = time.perf_counter()
        while time.perf_counter() - started < timeout:
            await asyncio.sleep(PROBE)
            now = time.perf_counter()
            worst = max(worst, now - last - PROBE)
            last = now
            if session.at_end and len(app.view.rows) == session.engine.stats()["in_table"]:
                break
        elapsed = time.perf_counter() - started
        used = time.process_time() - cpu
        rows = len(app.view.rows)
        await pilot.press("q")
    return elapsed, worst, rows, used


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pcap", default=str(HERE / "data" / "synflood-1000000.pcap"))
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    ends, worsts, heads, olds = [], [], [], []
    for _ in range(args.runs):
        head, head_cpu = headless(args.pcap)
        old, old_cpu = headless(args.pcap, frames=False)
        heads.append(head)
        olds.append(old)
        elapsed, worst, rows, used = asyncio.run(tui(args.pcap, args.timeout))
        ends.append(elapsed)
        worsts.append(worst)
        print(f"headless {head:.2f} s (CPU {head_cpu:.2f} s; read by libpcap {old:.2f} s, CPU {old_cpu:.2f} s); TUI "
              f"to the end {elapsed:.2f} s (CPU {used:.2f} s, {rows} rows); longest UI block {worst * 1000:.0f} ms",
              flush=True)
    head, old = statistics.median(heads), statistics.median(olds)
    end, worst = statistics.median(ends), statistics.median(worsts)
    print(f"median: headless {head:.2f} s (libpcap-read {old:.2f} s), TUI {end:.2f} s, ratio {end / head:.2f} "
          f"(target <= 1.5; to the libpcap-read baseline {end / old:.2f}); longest block {worst * 1000:.0f} ms "
          "(target <= 250)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
