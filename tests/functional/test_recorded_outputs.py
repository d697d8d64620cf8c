"""Every capture of the project and of the shared set gives, through `--summary --json` and `--events` (1 core),
the bytes recorded from main before issue #11's output work (tests/recorded.py), apart from the field fixes
listed in the README's "Changes" (engine.views.RENAMED)."""

from __future__ import annotations

import gzip

import pytest

from midstat_tui.engine.views import RENAMED
from tests.recorded import FACES, captures, recording, run_face

CASES = [(name, path, face) for name, path in captures() for face in FACES]


def with_field_fixes(text: bytes) -> bytes:
    """A recorded output with the fields renamed since, in place (same order, same values)."""
    for old, new in RENAMED.items():
        text = text.replace(f'"{old}":'.encode(), f'"{new}":'.encode())
    return text


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
    assert out == with_field_fixes(expected_out)
