#!/usr/bin/env python3
"""Encoding connection records as JSON: stdlib json vs orjson vs msgspec vs the compiled core's record_json.

    python3 benchmarks/encode.py [--conns 50000] [--runs 5]

Tracks the first packets of the synthetic capture of benchmarks/synth.py (benchmarks/data/, made by run.py) until
--conns connections started, then times, per record, medians over --runs: building the dicts (row_of +
row_record: what every Python encoder needs first), each encoder over those dicts, and record_json straight from
the C records. Says whether each one's bytes are the stdlib's (what midstat wrote before: the output must not
change).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from midstat_tui.capture.files import FileSource  # noqa: E402
from midstat_tui.engine.pipeline import Engine  # noqa: E402
from midstat_tui.engine.records import encode_json, record_text, row_of, row_record  # noqa: E402


def connections(path: Path, want: int) -> list:
    source = FileSource(str(path))
    started: list = []

    def on_event(kind, conn, change, states):
        if kind == "start":
            started.append(conn)

    engine = Engine(source.datalink, None, on_event=on_event)
    for batch in source.batches():
        engine.feed_batch(batch)
        if len(started) >= want:
            break
    source.close()
    return started[:want]


def timed(fn, runs: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(runs):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--conns", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--capture", default=str(HERE / "data" / "synth-1000000-50000.pcap"))
    args = parser.parse_args()
    conns = connections(Path(args.capture), args.conns)
    n = len(conns)
    t_dicts, dicts = timed(lambda: [row_record(row_of(c)) for c in conns], args.runs)
    reference = [encode_json(d) for d in dicts]
    results: list[tuple[str, float, bool]] = [("build the dicts (row_of + row_record)", t_dicts, True)]
    t, out = timed(lambda: [encode_json(d) for d in dicts], args.runs)
    results.append(("stdlib json, per record (over the dicts)", t, out == reference))
    t, out = timed(lambda: json.dumps(dicts, separators=(",", ":")), args.runs)
    results.append(("stdlib json, one list (over the dicts)", t, out == "[" + ",".join(reference) + "]"))
    try:
        import orjson

        t, out = timed(lambda: [orjson.dumps(d) for d in dicts], args.runs)
        results.append(("orjson, per record (over the dicts)", t, [o.decode() for o in out] == reference))
    except ImportError:
        pass
    try:
        import msgspec

        encode = msgspec.json.Encoder().encode
        t, out = timed(lambda: [encode(d) for d in dicts], args.runs)
        results.append(("msgspec, per record (over the dicts)", t, [o.decode() for o in out] == reference))
    except ImportError:
        pass
    t, out = timed(lambda: [record_text(c) for c in conns], args.runs)
    results.append(("record_text: _core.record_json from the C record", t, out == reference))
    # values the synthetic capture lacks but real ones have: a duration of 18 µs, a 17-digit count of seconds
    odd = {"duration": 1.8e-05, "a": 1e16, "b": 1e-7, "c": 0.1}
    odd_ok = {"orjson": None, "msgspec": None}
    try:
        import orjson

        odd_ok["orjson"] = orjson.dumps(odd).decode() == encode_json(odd)
    except ImportError:
        pass
    try:
        import msgspec

        odd_ok["msgspec"] = msgspec.json.Encoder().encode(odd).decode() == encode_json(odd)
    except ImportError:
        pass
    print(f"{n:,} records ({sum(map(len, reference)) / n:.0f} bytes each); medians of {args.runs} runs")
    print(f"{'':52} {'seconds':>8} {'µs/record':>10}  same bytes as before")
    for name, seconds, same in results:
        print(f"{name:52} {seconds:>8.3f} {seconds / n * 1e6:>10.2f}  {'yes' if same else 'NO'}")
    for name, same in odd_ok.items():
        if same is not None:
            print(f"{name} on {encode_json(odd)}: {'the same bytes' if same else 'other bytes'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
