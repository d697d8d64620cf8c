#!/usr/bin/env python3
"""Damaged captures through the real `midstat` command: every capture cut at many offsets and with bytes flipped in
its file header, its record headers and its packet bodies.

    python3 scripts/corrupt_sweep.py [--cuts 40] [--flips 40] [--seed 1]

For each damaged file it runs `midstat -r FILE --summary --json --cores 1` in this process (an exception escaping
`main` is a traceback a user would have seen) and checks what the README promises:
- exit 0 (nothing wrong found), 1 (damage: a one-line `midstat: warning:` saying after which packet, and the summary
  of everything before it) or 2 (unusable: a one-line `midstat:` error); never anything else, never a traceback;
- everything before the damage is processed: for classic pcap files, at least every record wholly before the damaged
  byte is counted, and a flipped byte inside a packet's body loses no packet at all.
Prints how many damaged files were tried and how each ended. tests/unit/test_corrupt_files.py runs a few per capture.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import struct
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from midstat_tui.cli import main as midstat_main  # noqa: E402

SHARED = Path(os.environ.get("MIDSTAT_SHARED", ROOT.parent / "shared")) / "pcaps"
CLASSIC = {b"\xd4\xc3\xb2\xa1": "<", b"\x4d\x3c\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">", b"\xa1\xb2\x3c\x4d": ">"}


@dataclass
class Outcome:
    status: int
    packets: int | None     # what the summary counted (None: no summary printed)
    stderr: str


def captures() -> list[Path]:
    """Every uncompressed capture of ../shared/pcaps and fixtures/pcaps."""
    return sorted(p for p in SHARED.rglob("*") if p.suffix in (".pcap", ".pcapng")) + sorted(
        (ROOT / "fixtures" / "pcaps").glob("*.pcap"))


def run_midstat(path: Path) -> Outcome:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        # --user root: this is the test process itself, which must not give up root half-way through a sweep
        status = midstat_main(["-r", str(path), "--summary", "--json", "--cores", "1", "--user", "root"])
    packets = None
    if out.getvalue().strip():
        packets = json.loads(out.getvalue())["stats"]["packets"]
    return Outcome(status, packets, err.getvalue())


def record_offsets(data: bytes) -> list[tuple[int, int]] | None:
    """(start, end) of every record of a classic pcap file, None for pcapng."""
    order = CLASSIC.get(data[:4])
    if order is None:
        return None
    rec = struct.Struct(order + "IIII")
    spans, off = [], 24
    while off + 16 <= len(data):
        caplen = rec.unpack_from(data, off)[2]
        if off + 16 + caplen > len(data):
            break
        spans.append((off, off + 16 + caplen))
        off += 16 + caplen
    return spans


def records_before(spans: list[tuple[int, int]], at: int) -> int:
    """How many records end at or before byte `at`."""
    return sum(1 for _, end in spans if end <= at)


def check(outcome: Outcome, whole: int, must_have: int | None, what: str) -> None:
    """Raise AssertionError with `what` when the promise is broken."""
    lines = [line for line in outcome.stderr.splitlines() if line]
    assert outcome.status in (0, 1, 2), f"{what}: exit {outcome.status}"
    assert "Traceback" not in outcome.stderr, f"{what}: {outcome.stderr}"
    assert all(line.startswith("midstat: ") for line in lines), f"{what}: {outcome.stderr}"
    if outcome.status == 0:
        assert not lines and outcome.packets is not None, f"{what}: {outcome.stderr}"
    else:
        assert len(lines) == 1, f"{what}: {outcome.stderr}"
    if outcome.status == 1:
        assert "after packet" in lines[0] and outcome.packets is not None, f"{what}: {lines[0]}"
    if must_have is not None and outcome.status != 2:
        assert outcome.packets is not None and outcome.packets >= must_have, \
            f"{what}: {outcome.packets} packets counted, {must_have} lay before the damage"


def damage(path: Path, cuts: int, flips: int, rng: random.Random, folder: Path) -> Counter:
    """Try `cuts` truncations and `flips` byte flips of one capture; returns how they ended."""
    data = path.read_bytes()
    whole = run_midstat(path)
    assert whole.status == 0 and whole.packets is not None, f"{path}: the whole file fails: {whole.stderr}"
    spans = record_offsets(data)
    tally: Counter = Counter()
    target = folder / f"damaged{path.suffix}"
    for _ in range(cuts):
        at = rng.randrange(1, len(data))
        target.write_bytes(data[:at])
        outcome = run_midstat(target)
        must = records_before(spans, at) if spans is not None else None
        check(outcome, whole.packets, must, f"{path.name} cut at {at}")
        tally[f"cut: exit {outcome.status}"] += 1
    for i in range(flips):
        # a third in the file or first record header, the rest anywhere
        at = rng.randrange(0, min(len(data), 40)) if i % 3 == 0 else rng.randrange(0, len(data))
        damaged = bytearray(data)
        damaged[at] ^= rng.randrange(1, 256)
        target.write_bytes(bytes(damaged))
        outcome = run_midstat(target)
        where = "pcapng block" if spans is None else "file header" if at < 24 else "record"
        must = None
        if spans is not None and at >= 24:
            inside = next(((start, end) for start, end in spans if start <= at < end), None)
            if inside is not None and at >= inside[0] + 16:
                where, must = "body", whole.packets  # a packet's bytes changed: every packet still counts
            else:
                must = records_before(spans, at)
        check(outcome, whole.packets, must, f"{path.name} byte {at} flipped ({where})")
        tally[f"flip in {where}: exit {outcome.status}"] += 1
    return tally


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cuts", type=int, default=40)
    parser.add_argument("--flips", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    total: Counter = Counter()
    files = 0
    with tempfile.TemporaryDirectory() as tmp:
        for path in captures():
            probe = run_midstat(path)
            if probe.status != 0:
                continue  # unsupported link type: its error is tested in tests/functional/test_cli.py
            total += damage(path, args.cuts, args.flips, rng, Path(tmp))
            files += 1
    print(f"{files} captures, {sum(total.values())} damaged files, every promise kept:")
    for key, count in sorted(total.items()):
        print(f"  {key}: {count}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
