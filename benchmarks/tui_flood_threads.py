#!/usr/bin/env python3
"""benchmarks/tui_flood.py's TUI run once, with the CPU time of each thread: the engine's (Session._run), the side
scan's (Session._scan_span) and the app's (the main thread).

    python3 benchmarks/tui_flood_threads.py [--pcap benchmarks/data/synflood-1000000.pcap]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import tui_flood  # noqa: E402

from midstat_tui.engine.session import Session  # noqa: E402

CPU: dict[str, float] = {}


def _timed(name: str, method):
    def run(self) -> None:
        started = time.thread_time()
        try:
            method(self)
        finally:
            CPU[name] = CPU.get(name, 0.0) + time.thread_time() - started
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pcap", default=str(HERE / "data" / "synflood-1000000.pcap"))
    args = parser.parse_args()
    Session._run = _timed("engine", Session._run)  # type: ignore[method-assign]
    Session._scan_span = _timed("span", Session._scan_span)  # type: ignore[method-assign]
    started = time.thread_time()
    elapsed, worst, rows, used = asyncio.run(tui_flood.tui(args.pcap, 300.0))
    CPU["app"] = time.thread_time() - started
    print(f"TUI to the end {elapsed:.2f} s, longest UI block {worst * 1000:.0f} ms, {rows} rows; CPU {used:.2f} s: "
          + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in CPU.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
