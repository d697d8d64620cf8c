"""Every public capture, whole and damaged, goes through the real engine without an exception escaping."""

from __future__ import annotations

import random
import struct
import sys

import pytest

from midstat_tui.capture.files import FileSource
from midstat_tui.decode.frame import LinkTypeError
from midstat_tui.engine.pipeline import Engine, run_file
from tests.helpers import FIXTURES, ROOT, SHARED, supported_link_type

sys.path.insert(0, str(ROOT / "scripts"))
from corrupt_sweep import captures, damage  # noqa: E402

# (an unsupported link type's error is tested in test_cli)
DAMAGEABLE = [p for p in captures() if supported_link_type(p)]
CAPTURES = sorted(p for p in SHARED.rglob("*") if p.suffix in (".pcap", ".pcapng", ".gz")) + sorted(
    FIXTURES.glob("*.pcap"))


def _run(path) -> tuple[int, str | None]:
    source = FileSource(str(path))
    try:
        engine = Engine(source.datalink)
    except LinkTypeError:
        source.close()
        return -1, None
    run_file(engine, source.batches())
    stats = engine.stats()
    assert stats["tcp_packets"] + stats["non_tcp"] + stats["fragments"] + sum(stats["malformed"].values()) \
        == stats["packets"]
    return stats["packets"], source.warning


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_whole_captures(path):
    whole, warning = _run(path)
    if whole < 0:
        pytest.skip("unsupported link type (the error is tested in test_cli)")
    assert warning is None


@pytest.mark.parametrize("path", DAMAGEABLE, ids=lambda p: p.name)
def test_cut_and_flipped_captures_through_the_command(path, tmp_path):
    """A few of scripts/corrupt_sweep.py's damaged copies of each capture (the long sweep: docs/robustness.md)."""
    tally = damage(path, cuts=3, flips=6, rng=random.Random(path.name), folder=tmp_path)
    assert sum(tally.values()) == 9


def test_a_corrupt_record_header_is_reported_as_damage(tmp_path):
    data = bytearray((FIXTURES / "half_close.pcap").read_bytes())
    # the 10th record's caplen becomes absurd
    offset = 24
    for _ in range(9):
        offset += 16 + struct.unpack_from("<I", data, offset + 8)[0]
    struct.pack_into("<I", data, offset + 8, 0x7FFFFFFF)
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(bytes(data))
    packets, warning = _run(bad)
    assert packets == 9
    assert warning is not None and "after packet 9" in warning
