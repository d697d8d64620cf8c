#!/usr/bin/env python3
"""What the bound on one frame's work (midstat_tui/decode/layers.py) costs ordinary traffic, and what it saves on
hostile frames.

    python3 benchmarks/decode_bound.py [--runs 5]

For the real captures (every one of ../shared/pcaps and fixtures/pcaps midstat decodes, all their frames): the
microseconds per frame of `FrameDecoder.decode` with the bound's check and with the check replaced by a no-op, on the
frames the Ethernet fast path does not take (the only ones the check sees) and on all frames. Then each hostile frame
of scripts/hostile_frames.py at the size the issue reports: the decode time with and without the check (without it,
what dpkt does: up to a RecursionError). Medians over --runs, both measured in the same run; and the check alone
(less exposed to a shared machine's noise than the difference of two decode times).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import hostile_frames  # noqa: E402

from midstat_tui.capture.files import FileSource  # noqa: E402
from midstat_tui.decode import frame as frame_module  # noqa: E402
from midstat_tui.decode import layers  # noqa: E402
from midstat_tui.decode.fastpath import decode_ethernet  # noqa: E402
from midstat_tui.decode.frame import FrameDecoder, LinkTypeError  # noqa: E402
from midstat_tui.errors import MidstatError  # noqa: E402

SHARED = Path(os.environ.get("MIDSTAT_SHARED", ROOT.parent / "shared")) / "pcaps"


def _frames() -> dict[int, list[tuple[float, bytes]]]:
    by_dlt: dict[int, list[tuple[float, bytes]]] = {}
    paths = sorted(p for p in SHARED.rglob("*") if p.suffix in (".pcap", ".pcapng")) + sorted(
        (ROOT / "fixtures" / "pcaps").glob("*.pcap"))
    for path in paths:
        try:
            source = FileSource(str(path))
            FrameDecoder(source.datalink)
        except (MidstatError, LinkTypeError):
            continue
        try:
            for batch in source.batches():
                by_dlt.setdefault(source.datalink, []).extend(batch)
        except MidstatError:
            pass
        finally:
            source.close()
    return by_dlt


def _time(by_dlt: dict[int, list[tuple[float, bytes]]]) -> float:
    started = time.perf_counter()
    for dlt, frames in by_dlt.items():
        decode = FrameDecoder(dlt).decode
        for ts, data in frames:
            decode(ts, data)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    everything = _frames()
    slow = {dlt: [(ts, f) for ts, f in frames if dlt != 1 or decode_ethernet(ts, f, True) is None]
            for dlt, frames in everything.items()}
    real_check = layers.check

    def no_check(dlt: int, data: bytes) -> None:
        return None

    for label, sample in (("frames the fast path leaves to dpkt", slow), ("all frames", everything)):
        count = sum(len(v) for v in sample.values())
        with_check, without = [], []
        for _ in range(args.runs):
            frame_module.layers.check = no_check
            without.append(_time(sample))
            frame_module.layers.check = real_check
            with_check.append(_time(sample))
        a, b = statistics.median(without) / count * 1e6, statistics.median(with_check) / count * 1e6
        print(f"{label}: {count:,} frames; {a:.2f} us/frame without the check, {b:.2f} with it "
              f"({(b - a) / a * 100:+.1f}%)")
    for label, sample in (("frames the fast path leaves to dpkt", slow), ("all frames", everything)):
        count = sum(len(v) for v in sample.values())
        runs = []
        for _ in range(args.runs):
            started = time.perf_counter()
            for dlt, frames in sample.items():
                for _, data in frames:
                    real_check(dlt, data)
            runs.append(time.perf_counter() - started)
        print(f"the check alone, {label}: {statistics.median(runs) / count * 1e6:.2f} us/frame")
    decoder = FrameDecoder(1)
    for name in sorted(hostile_frames.KINDS):
        data = hostile_frames.hostile(name)
        times = {}
        for label, check in (("without", no_check), ("with", real_check)):
            frame_module.layers.check = check
            runs = []
            for _ in range(args.runs):
                started = time.perf_counter()
                for _ in range(20):
                    result = decoder.decode(1.0, data)
                runs.append((time.perf_counter() - started) / 20)
            times[label] = (statistics.median(runs), result)
        frame_module.layers.check = real_check
        print(f"{name} ({len(data):,} bytes): without the check {times['without'][0] * 1e6:,.0f} us "
              f"({times['without'][1]}), with it {times['with'][0] * 1e6:,.1f} us ({times['with'][1]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
