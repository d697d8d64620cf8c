#!/usr/bin/env python3
"""Coverage-guided fuzzing of the decoder and the tracker (atheris), seeded with every packet of the real captures.

    python3 scripts/fuzz.py seed [--max N]            write the seed corpus (benchmarks/data/fuzz/seeds)
    python3 scripts/fuzz.py run [--runs N] [--time S] fuzz with atheris from the seeds (corpus grows in .../corpus)
    python3 scripts/fuzz.py replay                    replay seeds + corpus: every input keeps the property
    python3 scripts/fuzz.py cover                     the same replay under coverage.py: lines reached

One input is a short packet sequence on one link type: byte 0 picks the link type, then records of a 2-byte length and
a frame. Seeds are runs of up to 8 consecutive packets of every capture in fixtures/pcaps/ and ../shared/pcaps/, so
handshakes and closes are in the corpus for the tracker to chew on, and the frames of scripts/hostile_frames.py
(encapsulations nested up to hundreds of levels, long chains of IPv6 extension headers and GRE routes; just within
and just past the decoder's bounds) on Ethernet and raw IP. `check_input` is the property, shared with
tests/unit/test_fuzz.py: decoding never raises, every frame is a segment, an ICMP error or a known reject reason, and
the tracker takes every segment without an exception, keeps its books and its table bound; and the compiled core's
packet loop leaves the same table and counters as the pure-Python engine.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import hostile_frames  # noqa: E402

from midstat_tui.capture.files import FileSource  # noqa: E402
from midstat_tui.decode import FrameDecoder, IcmpError, LinkTypeError, Segment, linktypes  # noqa: E402
from midstat_tui.decode.frame import REJECT_REASONS  # noqa: E402
from midstat_tui.decode.layers import MAX_HEADERS, MAX_LAYERS  # noqa: E402
from midstat_tui.engine.pipeline import Engine  # noqa: E402
from midstat_tui.engine.placement import Placer  # noqa: E402
from midstat_tui.errors import MidstatError  # noqa: E402
from midstat_tui.tcp.connection import COMPILED_AVAILABLE  # noqa: E402
from midstat_tui.tcp.states import CLOSED, TIME_WAIT  # noqa: E402
from midstat_tui.tcp.tracker import END_REASONS, Tracker, TrackerConfig  # noqa: E402

LINKTYPES = sorted(linktypes.SUPPORTED)
DATA = ROOT / "benchmarks" / "data" / "fuzz"
SHARED = Path(os.environ.get("MIDSTAT_SHARED", ROOT.parent / "shared")) / "pcaps"
RUN_LENGTH = 8
TABLE_BOUND = 16


def encode(dlt: int, frames: list[bytes]) -> bytes:
    out = bytearray([LINKTYPES.index(dlt)])
    for frame in frames:
        frame = frame[:0xFFFF]
        out += struct.pack("!H", len(frame)) + frame
    return bytes(out)


def decode_input(data: bytes) -> tuple[int, list[bytes]]:
    """The link type and frames of one input; a short last record takes what is there."""
    if not data:
        return LINKTYPES[0], []
    dlt = LINKTYPES[data[0] % len(LINKTYPES)]
    frames, off = [], 1
    while off + 2 <= len(data):
        size = struct.unpack_from("!H", data, off)[0]
        frames.append(data[off + 2:off + 2 + size])
        off += 2 + size
    return dlt, frames


def check_input(data: bytes) -> None:
    """The property: raises AssertionError (a finding) or anything else (a crash) when midstat misbehaves."""
    dlt, frames = decode_input(data)
    decoder = FrameDecoder(dlt)
    tracker = Tracker(TrackerConfig(max_conns=TABLE_BOUND))
    tracked = 0
    for i, frame in enumerate(frames):
        ts = 1000.0 + i * 0.25
        result = decoder.decode(ts, frame)
        if isinstance(result, Segment):
            tracked += 1
            tracker.segment(result)
        elif isinstance(result, IcmpError):
            tracker.icmp(result)
        else:
            assert result in REJECT_REASONS, result
        assert len(tracker.table) <= TABLE_BOUND
    stats = tracker.stats
    assert stats.segments == tracked
    assert stats.started - stats.ended == tracker.active >= 0
    for conn in tracker.table.values():
        assert 0 <= conn.c.state <= TIME_WAIT and 0 <= conn.s.state <= TIME_WAIT
        assert conn.ended is None or conn.ended in END_REASONS
        if conn.ended is None and conn.c.state == CLOSED and conn.s.state == CLOSED:
            assert conn.c.packets + conn.s.packets > 0
    tracker.advance(1e12)  # every timer fires: the table empties
    assert not tracker.table
    if COMPILED_AVAILABLE:
        check_compiled_loop(dlt, frames)
    check_shards_agree(dlt, frames)


def check_compiled_loop(dlt: int, frames: list[bytes]) -> None:
    """The compiled core's packet loop and the pure-Python engine leave the same table and counters."""
    batch = [(1000.0 + i * 0.25, frame) for i, frame in enumerate(frames)]
    seen = []
    for compiled in (True, False):
        engine = Engine(dlt, TrackerConfig(max_conns=TABLE_BOUND), compiled=compiled)
        engine.feed_batch(batch)
        engine.tracker.advance(1000.0 + len(frames) * 0.25 + 30.0)
        seen.append((engine.stats(), sorted(
            (key, c.id, c.client_state, c.server_state, c.c.packets, c.s.packets, c.c.ip_bytes, c.s.ip_bytes,
             c.history, c.transitions, c.ended) for key, c in engine.tracker.table.items())))
    assert seen[0] == seen[1], "the compiled core and the pure-Python engine disagree"


def check_shards_agree(dlt: int, frames: list[bytes], count: int = 2) -> None:
    """One engine and `count` shards (each packet placed by its decoded key, engine.placement) end with the same
    connections and the same counts (ids and shard numbers aside; a table large enough that none is evicted)."""
    batch = [(1000.0 + i * 0.25, frame) for i, frame in enumerate(frames)]
    end = 1000.0 + len(frames) * 0.25 + 30.0
    one = Engine(dlt, TrackerConfig())
    one.feed_batch(batch)
    shards = [Engine(dlt, TrackerConfig(), shard=i, shard_count=count) for i in range(count)]
    for engine, part in zip(shards, Placer(dlt, count).split(batch), strict=True):
        engine.feed_batch(part)

    def facts(engines: list[Engine]) -> tuple[list, dict]:
        conns, totals = [], {}
        for engine in engines:
            engine.tracker.advance(end)
            conns += [(key, c.client_state, c.server_state, c.c.packets, c.s.packets, c.c.ip_bytes, c.s.ip_bytes,
                       c.history, c.ended, c.midstream) for key, c in engine.tracker.table.items()]
            for name in ("packets", "tcp_packets", "non_tcp", "bad_checksum", "started", "ended", "active",
                         "suspicious_rst", "bad_flags", "icmp_errors"):
                totals[name] = totals.get(name, 0) + engine.stats().get(name, 0)
        return sorted(conns), totals

    assert facts([one]) == facts(shards), "one core and several shards disagree"


def captures() -> list[Path]:
    return sorted(p for p in SHARED.rglob("*") if p.suffix in (".pcap", ".pcapng", ".gz")) + sorted(
        (ROOT / "fixtures" / "pcaps").glob("*.pcap"))


def hostile_inputs() -> Iterator[bytes]:
    """Every kind of hostile frame at the size the issue reports, a size within the bounds, and just within and
    just past them; the IP-only kinds on raw IP too. One frame an input, then the kinds together in one input."""
    for _name, (build, worst, fine) in sorted(hostile_frames.KINDS.items()):
        for size in sorted({fine, MAX_LAYERS - 2, MAX_LAYERS, MAX_HEADERS + 1, MAX_LAYERS + 1, worst}):
            yield encode(linktypes.DLT_EN10MB, [build(size)])
    for build in (hostile_frames.ipip, hostile_frames.ip6ip6, hostile_frames.gre_ip, hostile_frames.gre_ethernet,
                  hostile_frames.ext_chain, hostile_frames.gre_routes):
        for size in (3, MAX_LAYERS, MAX_LAYERS + 1, 250):
            yield encode(linktypes.DLT_RAW, [build(size)])
    yield encode(linktypes.DLT_EN10MB, [hostile_frames.hostile(name) for name in sorted(hostile_frames.KINDS)])


def seed_inputs(max_per_capture: int = 400) -> Iterator[bytes]:
    """The hostile frames, then runs of consecutive packets of every capture, as fuzz inputs (deduplicated by the
    caller)."""
    yield from hostile_inputs()
    for path in captures():
        try:
            source = FileSource(str(path))
            FrameDecoder(source.datalink)
        except (MidstatError, LinkTypeError):
            continue
        dlt = source.datalink
        run: list[bytes] = []
        made = 0
        try:
            for batch in source.batches():
                for _, frame in batch:
                    run.append(frame)
                    if len(run) == RUN_LENGTH:
                        yield encode(dlt, run)
                        run = []
                        made += 1
                        if made >= max_per_capture:
                            break
                if made >= max_per_capture:
                    break
        finally:
            source.close()
        if run:
            yield encode(dlt, run)


def write_seeds(max_per_capture: int) -> int:
    seeds = DATA / "seeds"
    seeds.mkdir(parents=True, exist_ok=True)
    count = 0
    for data in seed_inputs(max_per_capture):
        name = hashlib.sha1(data).hexdigest()
        path = seeds / name
        if not path.exists():
            path.write_bytes(data)
            count += 1
    return count


def replay_dirs(dirs: list[Path]) -> int:
    n = 0
    for folder in dirs:
        for path in sorted(folder.iterdir()) if folder.exists() else []:
            check_input(path.read_bytes())
            n += 1
    return n


def main() -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    seed = sub.add_parser("seed")
    seed.add_argument("--max", type=int, default=400, help="most inputs per capture")
    run = sub.add_parser("run")
    run.add_argument("--runs", type=int, default=100_000)
    run.add_argument("--time", type=int, default=0, help="stop after this many seconds (0: no limit)")
    sub.add_parser("replay")
    sub.add_parser("cover")
    args = parser.parse_args()
    if args.cmd == "seed":
        print(f"{write_seeds(args.max)} new seed inputs in {DATA / 'seeds'}")
        return 0
    if args.cmd == "replay":
        started = time.perf_counter()
        n = replay_dirs([DATA / "seeds", DATA / "corpus"])
        print(f"{n} inputs replayed in {time.perf_counter() - started:.1f} s, the property held for every one")
        return 0
    if args.cmd == "cover":  # a fresh interpreter, so that the modules are measured from their first line
        data_file = str(DATA / ".coverage")
        subprocess.run([sys.executable, "-m", "coverage", "run", f"--data-file={data_file}",
                        "--source=midstat_tui.decode,midstat_tui.tcp", __file__, "replay"], check=True, cwd=ROOT)
        subprocess.run([sys.executable, "-m", "coverage", "report", f"--data-file={data_file}"], check=True,
                       cwd=ROOT)
        return 0
    import atheris

    corpus = DATA / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    if not (DATA / "seeds").exists():
        write_seeds(400)
    atheris.instrument_all()  # every function loaded so far: midstat's decoder and tracker, dpkt, struct users
    libfuzzer_args = [sys.argv[0], f"-runs={args.runs}", "-max_len=12288", "-rss_limit_mb=4096",
                      "-print_final_stats=1", str(corpus), str(DATA / "seeds")]
    if args.time:
        libfuzzer_args.insert(2, f"-max_total_time={args.time}")
    atheris.Setup(libfuzzer_args, check_input)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main())
