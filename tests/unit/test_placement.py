"""engine.placement: a packet's shard is the hash of the key the Python decoder (the tracker's reference) finds;
the compiled placement must agree packet by packet, on every capture we have and on generated asymmetric ones, in
each of its forms (a list of packets, a next_batch result, one shard's share of it)."""

from __future__ import annotations

import pcapy
import pytest

from midstat_tui.capture.batches import split_batch
from midstat_tui.capture.files import FileSource
from midstat_tui.decode.frame import FrameDecoder, LinkTypeError
from midstat_tui.decode.segment import IcmpError, Segment
from midstat_tui.engine.placement import Placer, Share
from midstat_tui.engine.share_filter import shard_of
from midstat_tui.tcp.connection import _core
from tests.asymmetric import KINDS, write
from tests.helpers import FIXTURES, SHARED

CAPTURES = sorted(FIXTURES.glob("*.pcap")) + sorted(p for p in SHARED.rglob("*") if p.suffix in (".pcap", ".pcapng"))


def _reference(dlt: int, ts: float, frame: bytes, count: int) -> int:
    """The shard by definition: the Python decoder's key (no compiled fast path), hashed; shard 0 without one."""
    result = FrameDecoder(dlt, verify_checksums=False, fast_path=False).decode(ts, frame)
    if isinstance(result, Segment | IcmpError):
        return shard_of(result.src, result.sport, result.dst, result.dport, count)
    return 0


def _raw_batches(path):
    reader = pcapy.open_offline(str(path))
    while True:
        data, meta = reader.next_batch(256)
        if not meta:
            return
        yield reader.datalink(), data, meta


def _check(path, count: int) -> int:
    checked = 0
    for dlt, data, meta in _raw_batches(path):
        try:
            placer = Placer(dlt, count)
        except LinkTypeError:
            return checked
        batch = split_batch(data, meta)
        marks = placer.marks(batch)
        assert list(marks) == [_reference(dlt, ts, frame, count) for ts, frame in batch], path
        parts = placer.split(batch)
        for shard in range(count):
            assert parts[shard] == [p for p, m in zip(batch, marks, strict=True) if m == shard]
            assert Share(placer, shard).split(data, meta) == parts[shard]
            assert Share(placer, shard).select(batch) == parts[shard]
        checked += len(batch)
    return checked


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_compiled_placement_is_the_decoders_key_on_every_capture(path):
    _check(path, 3)


@pytest.mark.parametrize("kind", KINDS)
def test_compiled_placement_on_asymmetric_captures(tmp_path, kind):
    assert _check(write(tmp_path / f"{kind}.pcap", kind), 2) > 0


def test_the_compiled_core_places_the_plain_frames_itself():
    """Plain Ethernet TCP needs no Python decoding: the compiled placement marks it (255 is 'ask Python')."""
    if _core is None:
        pytest.skip("no compiled core")
    source = FileSource(str(FIXTURES / "mixed_traffic.pcap"))
    batch = [p for b in source.batches() for p in b]
    marks = _core.place(batch, source.datalink, 2)
    assert marks.count(255) < len(marks) // 10  # the ICMP errors and non-TCP packets only
    assert set(marks) - {255} == {0, 1}


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        Placer(1, 0)
    with pytest.raises(ValueError):
        Placer(1, 255)
    with pytest.raises(ValueError):
        Share(Placer(1, 2), 2)
    if _core is not None:
        with pytest.raises(ValueError):  # a packet outside the data
            _core.split_share(b"", bytes(8) + (100).to_bytes(4, "little") + (10).to_bytes(4, "little"), 1, 2, 0)
        with pytest.raises(ValueError):
            _core.split_share(b"", b"", 1, 2, 2)
        with pytest.raises(TypeError):
            _core.place([(0.0, "not bytes")], 1, 2)


def test_the_compiled_core_places_raw_ip_too(tmp_path):
    """Raw IP (link types 12, 14, 101): each worker would otherwise decode every packet with dpkt just to place it."""
    if _core is None:
        pytest.skip("no compiled core")
    source = FileSource(str(write(tmp_path / "raw14.pcap", "raw14")))
    batch = [p for b in source.batches() for p in b]
    assert source.datalink == 14
    assert 255 not in _core.place(batch, source.datalink, 2)
