"""Outputs recorded before a change, to hold a later run to them byte for byte (issue #11).

`python -m tests.recorded` (from the project root, MIDSTAT_SHARED set) runs every capture of fixtures/pcaps and of
the shared captures through `--summary --json`, `--events` and `--summary` on one core and writes the outputs,
gzipped, into tests/data/recorded/. (Those there were recorded from main at cdf253b, before issue #11's output
work; the tables from a `git archive` of it.) tests/functional/test_recorded_outputs.py runs the same commands
and compares.
"""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.helpers import FIXTURES, ROOT, SHARED

RECORDED = ROOT / "tests" / "data" / "recorded"
FACES = {"summary": ("--summary", "--json"), "events": ("--events",), "table": ("--summary",)}
_CAPTURE = re.compile(r"\.(pcap|pcapng|cap)(\.gz)?$")


def captures() -> list[tuple[str, Path]]:
    """(name of the recording, capture) for every capture of the project and of the shared set."""
    found = [(f"fixtures/{p.name}", p) for p in sorted(FIXTURES.iterdir()) if _CAPTURE.search(p.name)]
    if SHARED.is_dir():
        found += [(f"shared/{p.relative_to(SHARED)}", p) for p in sorted(SHARED.rglob("*"))
                  if p.is_file() and _CAPTURE.search(p.name)]
    return found


def recording(name: str, face: str) -> Path:
    return RECORDED / f"{name.replace('/', '__')}.{face}.gz"


def run_face(capture: Path, face: str) -> tuple[int, bytes, bytes]:
    proc = subprocess.run([sys.executable, "-m", "midstat_tui", "-r", str(capture), "--cores", "1", "--user",
                           "root", *FACES[face]], capture_output=True, timeout=300, cwd=ROOT)
    return proc.returncode, proc.stdout, proc.stderr


def record() -> None:
    RECORDED.mkdir(parents=True, exist_ok=True)
    jobs = [(name, path, face) for name, path in captures() for face in FACES]

    def one(job: tuple[str, Path, str]) -> None:
        name, path, face = job
        status, out, _ = run_face(path, face)
        data = f"{status}\n".encode() + out
        recording(name, face).write_bytes(gzip.compress(data, 9, mtime=0))

    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        list(pool.map(one, jobs))


if __name__ == "__main__":
    record()
