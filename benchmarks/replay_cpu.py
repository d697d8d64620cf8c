#!/usr/bin/env python3
"""CPU and wall time of the TUI's session replaying the 1M-packet synthetic capture to its end at --speed 0, pulled
every 50 ms, from a given project tree (before/after comparisons: run it alternately on two trees).

    python3 benchmarks/replay_cpu.py ROOT CORES

ROOT: the project tree whose midstat_tui is imported; CORES: 1 (engine.session) or more (engine.shard_sessions).
CPU is user + system of this process and its (reaped) shard workers. Make the capture first: benchmarks/synth.py.
"""

from __future__ import annotations

import importlib
import resource
import sys
import time
from pathlib import Path

CAPTURE = Path(__file__).resolve().parent / "data" / "synth-1000000-50000.pcap"


def main() -> int:
    root, cores = sys.argv[1], int(sys.argv[2])
    sys.path.insert(0, root)
    files = importlib.import_module("midstat_tui.capture.files")
    if cores == 1:
        engine = importlib.import_module("midstat_tui.engine.pipeline").Engine
        source = files.FileSource(str(CAPTURE))
        session = importlib.import_module("midstat_tui.engine.session").Session(
            engine(source.datalink), source, live=False, speed=0.0)
    else:
        job = importlib.import_module("midstat_tui.engine.headless").Job
        config = importlib.import_module("midstat_tui.tcp.tracker").TrackerConfig
        session = importlib.import_module("midstat_tui.engine.shard_sessions").ShardedFileSession(
            job(str(CAPTURE), None, config()), cores, speed=0.0)
    started = time.perf_counter()
    session.start()
    while not session.at_end:
        time.sleep(0.05)
        session.pull()
    wall = time.perf_counter() - started
    stats = session.pull().stats
    session.stop()
    cpu = sum(getattr(resource.getrusage(who), field) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
              for field in ("ru_utime", "ru_stime"))
    print(f"{Path(root).name} cores={cores} wall={wall:.2f} cpu={cpu:.2f} packets={stats['packets']} "
          f"sparkline_points={len(session.spark_pps)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
