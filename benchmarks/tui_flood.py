#!/usr/bin/env python3
"""The TUI replaying a SYN flood at --speed 0 on one core: how long the UI thread is ever blocked, and how long the
replay takes to reach the end, against the headless tracking of the same file.

    python3 benchmarks/tui_flood.py [--pcap benchmarks/data/synflood-1000000.pcap] [--runs 1] [--cores N]

The real app (headless, App.run_test, 160x50) over the real session, with its one-second refresh; a 20 ms timer in
the app's loop records how late it fires (the longest lateness is the longest the UI could not answer a key).
The capture is made by `benchmarks/flood.py --write` style tools (1,000,000 SYNs from distinct sources, checksums
zero: checksums are ignored, as `--no-checksum`). Targets (issue #11): no block over 250 ms; the end within 1.5x the
headless tracking time. The session is made as the CLI makes it (engine.run.tui_session): `--cores N` as `midstat
--cores N` (several: shard workers and core 0's merge in the app's process). Each measure runs in a fresh process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from midstat_tui.capture.files import FileSource  # noqa: E402
from midstat_tui.engine.headless import Job  # noqa: E402
from midstat_tui.engine.pipeline import Engine, run_file  # noqa: E402
from midstat_tui.engine.run import tracker_config, tui_session  # noqa: E402
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


def rows_in_table(session) -> int:
    """The connections the engine(s) hold now: the one engine's, or the shards' added up."""
    engine = getattr(session, "engine", None)
    return engine.stats()["in_table"] if engine is not None else session._merger.stats()["in_table"]


async def tui(path: str, timeout: float, cores: int = 1) -> tuple[float, float, int, float]:
    job = Job(path, None, tracker_config(60.0, 60.0, 1_000_000), verify_checksums=False)
    session = tui_session(job, cores, FileSource(path), 0.0)
    app = MidstatApp(session, interval=1.0, show_load=False)
    # the process's CPU (every thread: the engine's, the app's, the side scan's) and its shard workers'
    cpu = time.process_time() + _children_cpu()
    started = time.perf_counter()  # from the engine's start (and its workers'), as a user waits from the command
    session.start()
    worst = 0.0
    async with app.run_test(size=(160, 50)) as pilot:
        last = time.perf_counter()
        while time.perf_counter() - started < timeout:
            await asyncio.sleep(PROBE)
            now = time.perf_counter()
            worst = max(worst, now - last - PROBE)
            last = now
            if session.at_end and len(app.view.rows) == rows_in_table(session):
                break
        elapsed = time.perf_counter() - started
        rows = len(app.view.rows)
        await pilot.press("q")
    session.stop()  # (the workers reaped: their CPU is counted)
    return elapsed, worst, rows, time.process_time() + _children_cpu() - cpu


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _in_fresh_process(args: argparse.Namespace, what: str) -> list:
    """One measure in a process of its own, as a user's command runs: the TUI's shard worker is forked from the
    app's process, and forked from one that has just tracked a million connections it would pay for that heap."""
    out = subprocess.run([sys.executable, __file__, "--pcap", args.pcap, "--timeout", str(args.timeout),
                          "--cores", str(args.cores), "--only", what], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pcap", default=str(HERE / "data" / "synflood-1000000.pcap"))
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--cores", type=int, default=1)
    parser.add_argument("--only", choices=["headless", "libpcap", "tui"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only == "tui":
        print(json.dumps(asyncio.run(tui(args.pcap, args.timeout, args.cores))))
        return 0
    if args.only is not None:
        print(json.dumps(headless(args.pcap, frames=args.only == "headless")))
        return 0
    ends, worsts, heads, olds = [], [], [], []
    for _ in range(args.runs):
        head, head_cpu = _in_fresh_process(args, "headless")
        old, old_cpu = _in_fresh_process(args, "libpcap")
        heads.append(head)
        olds.append(old)
        elapsed, worst, rows, used = _in_fresh_process(args, "tui")
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
