#!/usr/bin/env python3
"""Throughput and memory of the single-shard engine (decode + two-sided tracking), on real captures.

    python3 benchmarks/engine_throughput.py [--runs 5] [--conns 200000]

Prints, for each capture (medians over --runs): packets/s of decoding alone with dpkt only and with the struct fast
path (dpkt for the rest), and packets/s of full tracking (decode + both state machines + every metric) with each on
the pure-Python engine, then with the compiled core (midstat_tui/_core.c); the ratios are fast over dpkt and
compiled over fast, all measured in the same run so the shared machine's noise cancels in them. Then the memory
per tracked connection of each engine, with tracemalloc over --conns synthetic handshakes.
Speed targets live here, not in unit tests; results and commands are recorded in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import gzip
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from midstat_tui.capture.files import FileSource  # noqa: E402
from midstat_tui.decode.frame import FrameDecoder  # noqa: E402
from midstat_tui.decode.segment import ACK, SYN, Segment  # noqa: E402
from midstat_tui.engine.pipeline import Engine, run_file  # noqa: E402
from midstat_tui.tcp.tracker import Tracker, TrackerConfig  # noqa: E402

SHARED = Path(os.environ.get("MIDSTAT_SHARED", ROOT.parent / "shared")) / "pcaps"
CAPTURES = ["zeek/Traces/echo-connections.pcap.gz", "ndpi/tests/cfgs/default/pcap/1kxun.pcap",
            "ndpi/tests/cfgs/default/pcap/synscan.pcap"]


def _plain_copy(path: Path, tmp: str) -> str:
    if path.suffix != ".gz":
        return str(path)
    out = os.path.join(tmp, path.stem)
    with gzip.open(path, "rb") as src, open(out, "wb") as dst:
        dst.write(src.read())
    return out


def time_decode(path: str, fast_path: bool = True) -> tuple[float, int]:
    source = FileSource(path)
    decoder = FrameDecoder(source.datalink, fast_path=fast_path)
    start = time.perf_counter()
    n = 0
    for batch in source.batches():
        for ts, frame in batch:
            decoder.decode(ts, frame)
        n += len(batch)
    return time.perf_counter() - start, n


def time_track(path: str, fast_path: bool = True, compiled: bool = False) -> tuple[float, int]:
    source = FileSource(path)
    engine = Engine(source.datalink, TrackerConfig(), fast_path=fast_path, compiled=compiled)
    start = time.perf_counter()
    run_file(engine, source.batches())
    return time.perf_counter() - start, engine.decode_stats.packets


def bytes_per_connection(count: int, compiled: bool) -> float:
    tracker = Tracker(TrackerConfig(max_conns=count + 1), compiled=compiled)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    ts = 1000.0
    for i in range(count):
        c = bytes((10, (i >> 16) & 255, (i >> 8) & 255, i & 255))
        s = b"\xc0\x00\x02\x01"
        port = 1024 + i % 60000
        tracker.segment(Segment(ts, (), c, s, port, 443, 1000, 0, SYN, 65535, 0, 60, 64, True))
        tracker.segment(Segment(ts, (), s, c, 443, port, 5000, 1001, SYN | ACK, 65535, 0, 60, 64, True))
        tracker.segment(Segment(ts, (), c, s, port, 443, 1001, 5001, ACK, 65535, 0, 52, 64, True))
        ts += 0.0001
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / count


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--conns", type=int, default=200_000)
    args = parser.parse_args()
    print(f"{'capture':42} {'packets':>7} {'dpkt decode':>11} {'fast decode':>11} {'ratio':>5} "
          f"{'track, dpkt':>11} {'track, fast':>11} {'ratio':>5} {'compiled':>11} {'ratio':>5}")
    with tempfile.TemporaryDirectory() as tmp:
        for rel in CAPTURES:
            path = _plain_copy(SHARED / rel, tmp)
            times: dict[str, list[float]] = {"dd": [], "fd": [], "dt": [], "ft": [], "ct": []}
            for _ in range(args.runs):
                t, n = time_decode(path, fast_path=False)
                times["dd"].append(t)
                t, n = time_decode(path)
                times["fd"].append(t)
                t, n = time_track(path, fast_path=False)
                times["dt"].append(t)
                t, n = time_track(path)
                times["ft"].append(t)
                t, n = time_track(path, compiled=True)
                times["ct"].append(t)
            m = {k: statistics.median(v) for k, v in times.items()}
            print(f"{rel:42} {n:>7} {n / m['dd']:>11,.0f} {n / m['fd']:>11,.0f} {m['dd'] / m['fd']:>5.2f} "
                  f"{n / m['dt']:>11,.0f} {n / m['ft']:>11,.0f} {m['dt'] / m['ft']:>5.2f} "
                  f"{n / m['ct']:>11,.0f} {m['ft'] / m['ct']:>5.2f}")
    for compiled in (False, True):
        per_conn = bytes_per_connection(args.conns, compiled)
        print(f"memory, {'compiled core' if compiled else 'pure Python'}: {per_conn:,.0f} bytes per tracked "
              f"connection ({args.conns:,} synthetic handshakes, tracemalloc)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
