"""Every capture of the project and of the shared set gives, through `--summary --json`, `--events` and the
`--summary` table (1 core), the bytes recorded from main before issue #11's output work (tests/recorded.py), apart
from the field fixes listed in the README's "Changes" (engine.records.RENAMED; the table's renamed columns)."""

from __future__ import annotations

import gzip

import pytest

from midstat_tui.engine.records import RENAMED
from midstat_tui.output.plain import SUMMARY_COLUMNS
from tests.recorded import FACES, captures, recording, run_face

CASES = [(name, path, face) for name, path in captures() for face in FACES]


def with_field_fixes(text: bytes) -> bytes:
    """A recorded output with the fields renamed since, in place (same order, same values)."""
    for old, new in RENAMED.items():
        text = text.replace(f'"{old}":'.encode(), f'"{new}":'.encode())
    return text


TABLE_RENAMED = {"zeek": "zeek_state", "pkts_c2s": "packets_c2s", "pkts_s2c": "packets_s2c"}


def table_with_field_fixes(text: bytes) -> bytes:
    """A recorded --summary table with its columns renamed since, laid out again (a longer name widens its column;
    no cell holds a space)."""
    rows = [line.split() for line in text.decode().splitlines()]
    if not rows:
        return text
    rows[0] = [TABLE_RENAMED.get(name, name) for name in rows[0]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "".join("  ".join(cell.rjust(w) if align == ">" else cell.ljust(w)
                             for cell, w, (_, align) in zip(row, widths, SUMMARY_COLUMNS, strict=True)).rstrip() + "\n"
                   for row in rows).encode()


def test_every_capture_has_a_recording():
    names = {name for name, _, _ in CASES}
    assert any(n.startswith("fixtures/") for n in names)
    for name, _, face in CASES:
        assert recording(name, face).exists(), f"no recorded output for {name} ({face}): run python -m tests.recorded"


@pytest.mark.parametrize("name,path,face", CASES, ids=[f"{n}:{f}" for n, _, f in CASES])
def test_output_is_the_recorded_one(name, path, face):
    recorded = gzip.decompress(recording(name, face).read_bytes())
    status, out, err = run_face(path, face)
    expected_status, _, expected_out = recorded.partition(b"\n")
    assert status == int(expected_status), err.decode()
    if face == "table":
        assert out == table_with_field_fixes(expected_out)
    else:
        assert out == with_field_fixes(expected_out)
