#!/usr/bin/env python3
"""How a file's packets reach its shards, measured: each worker filtering its share in libpcap (what midstat does)
against a Python dispatcher that reads the file once and hands each shard its packets.

    python3 benchmarks/shard_read.py [--cores 2] [--runs 5]

On the 1M-packet synthetic capture (benchmarks/synth.py), medians of --runs, one process:
- read all: `next_batch` and the split into (timestamp, frame) pairs, every packet (the floor of any reader);
- BPF share: the same through the share filter of engine/share_filter.py (shard 0 of --cores): one worker's reading
  before issue #10;
- placed share: every packet read, its shard found from its decoded key in C (engine/placement.py), only shard 0's
  made into Python objects: one worker's reading now;
- compiled dispatcher: read all, place in C, pickle each shard's list: what core 0 does for a pipe or FIFO;
- dispatcher: read all, find each packet's shard in Python (the compiled decoder for the addresses and ports, the
  hash of engine/share_filter.py) and pickle each shard's list as a pipe would carry it: the work one process would do
  for all shards, before any of them tracks a packet.
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from midstat_tui import _core  # noqa: E402
from midstat_tui.capture.files import FileSource  # noqa: E402
from midstat_tui.engine.placement import Placer, Share  # noqa: E402
from midstat_tui.engine.share_filter import shard_of, share_filter  # noqa: E402


def read(path: str, bpf: str | None) -> int:
    return sum(len(batch) for batch in FileSource(path, bpf).batches())


def placed(path: str, shard: int, count: int) -> int:
    """One worker's share as the shards take it now: every packet read, placed by its decoded key in C."""
    source = FileSource(path)
    source.share = Share(Placer(source.datalink, count), shard)
    return sum(len(batch) for batch in source.batches())


def compiled_dispatch(path: str, count: int) -> int:
    """What core 0 does for a pipe or FIFO: read all, place in C, pickle each shard's list for its pipe."""
    source = FileSource(path)
    placer = Placer(source.datalink, count)
    sent = 0
    for batch in source.batches():
        for share in placer.split(batch):
            sent += len(pickle.dumps(share, protocol=pickle.HIGHEST_PROTOCOL))
    return sent


def dispatch(path: str, count: int) -> int:
    source = FileSource(path)
    decode = _core.decode_frame
    dlt = source.datalink
    sent = 0
    for batch in source.batches():
        shares: list[list] = [[] for _ in range(count)]
        for ts, frame in batch:
            fields = decode(ts, frame, dlt, False)
            shard = 0 if fields is None else shard_of(fields[2], fields[4], fields[3], fields[5], count)
            shares[shard].append((ts, frame))
        for share in shares:
            sent += len(pickle.dumps(share, protocol=pickle.HIGHEST_PROTOCOL))
    return sent


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    path = str(HERE / "data" / "synth-1000000-50000.pcap")
    ways = {
        "read all": lambda: read(path, None),
        f"BPF share (shard 0 of {args.cores})": lambda: read(path, share_filter(0, args.cores, vlan=True)),
        f"placed share (shard 0 of {args.cores})": lambda: placed(path, 0, args.cores),
        f"compiled dispatcher ({args.cores} shards)": lambda: compiled_dispatch(path, args.cores),
        f"Python dispatcher ({args.cores} shards)": lambda: dispatch(path, args.cores),
    }
    times: dict[str, list[float]] = {name: [] for name in ways}
    cpu: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(args.runs):  # round-robin, so that a noisy moment hits every way alike
        for name, way in ways.items():
            started, started_cpu = time.perf_counter(), time.process_time()
            way()
            times[name].append(time.perf_counter() - started)
            cpu[name].append(time.process_time() - started_cpu)
    for name, runs in times.items():  # CPU time: what the way costs even when other processes share the cores
        print(f"{name:38} {statistics.median(runs):6.2f} s  ({statistics.median(cpu[name]):.2f} s CPU)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
