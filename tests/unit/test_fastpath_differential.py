"""The struct fast path yields exactly what the dpkt path yields, for every packet it accepts; the compiled core's
decoder (midstat_tui/_core.c) yields exactly what the struct fast path yields, checksum verdict included.

Checked on every packet of every capture in fixtures/pcaps and ../shared/pcaps, on hypothesis-generated frames, and
on damaged copies (bit flips, cuts) of real frames. Everything the fast path declines goes to dpkt anyway.
"""

from __future__ import annotations

import gzip
import random

import pcapy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from midstat_tui.decode import FrameDecoder, Segment, linktypes
from midstat_tui.decode.fastpath import decode_ethernet
from midstat_tui.tcp import connection
from tests.helpers import FIXTURES, SHARED
from tests.unit.test_decode_properties import _build, segments


def _ethernet_frames(tmp_dir):
    yield from _frames(tmp_dir, {linktypes.DLT_EN10MB})


def _frames(tmp_dir, dlts: set[int]):
    paths = sorted(FIXTURES.glob("*.pcap")) + sorted(p for p in SHARED.rglob("*") if p.suffix in (".pcap", ".pcapng"))
    paths.append(SHARED / "zeek/Traces/echo-connections.pcap.gz")
    for path in paths:
        name = str(path)
        if path.suffix == ".gz":
            plain = tmp_dir / path.stem
            plain.write_bytes(gzip.decompress(path.read_bytes()))
            name = str(plain)
        reader = pcapy.open_offline(name)
        if reader.datalink() not in dlts:
            continue
        while True:
            header, frame = reader.next()
            if header is None:
                break
            sec, usec = header.getts()
            yield (sec + usec * 1e-6, frame) if len(dlts) == 1 else (reader.datalink(), sec + usec * 1e-6, frame)


def _agree(ts: float, frame: bytes, checksums: bool = True) -> bool:
    fast = decode_ethernet(ts, frame, checksums)
    if connection.COMPILED_AVAILABLE:  # the compiled packet loop's decoder and checksum: the same, field by field
        compiled = connection._core.decode_frame(ts, frame, linktypes.DLT_EN10MB, checksums)
        assert compiled == (None if fast is None else fast.fields()), (frame.hex(), compiled, fast)
    if fast is None:
        return False
    slow = FrameDecoder(linktypes.DLT_EN10MB, checksums, fast_path=False).decode(ts, frame)
    assert fast == slow, (frame.hex(), fast, slow)
    return True


def _damaged(frame: bytes, rng: random.Random, headers: int) -> bytes:
    """A damaged copy: one bit flipped in the first `headers` bytes, or the frame cut short."""
    copy = bytearray(frame)
    if rng.random() < 0.5 and len(copy) > 1:
        bit = rng.randrange(min(len(copy), headers) * 8)
        copy[bit // 8] ^= 1 << (bit % 8)
    else:
        del copy[rng.randrange(len(copy)):]
    return bytes(copy)


def test_every_real_packet(tmp_path):
    total = taken = 0
    rng = random.Random(7)
    damaged = 0
    for ts, frame in _ethernet_frames(tmp_path):
        total += 1
        taken += _agree(ts, frame)
        if rng.random() < 0.3:
            _agree(ts, _damaged(frame, rng, 80))
            damaged += 1
    assert total > 90_000
    assert taken > 0.98 * total  # the plain case is nearly all of real traffic (99.4% measured)
    assert damaged > 20_000


@settings(max_examples=2000, suppress_health_check=[HealthCheck.too_slow])
@given(p=segments, checksums=st.booleans())
def test_generated_frames(p, checksums):
    p = dict(p, dlt=linktypes.DLT_EN10MB)
    frame, _, _, ip_len = _build(p)
    if p["snap"] is not None:
        frame = frame[: p["snap"] + (len(frame) - ip_len)]
    _agree(1.25, frame, checksums)


@settings(max_examples=2000)
@given(frame=st.binary(min_size=54, max_size=120), etype=st.sampled_from([b"\x08\x00", b"\x86\xdd", b"\x81\x00"]),
       ipv=st.sampled_from([b"\x45", b"\x60", b"\x46"]))
def test_arbitrary_frames_with_plausible_headers(frame, etype, ipv):
    frame = frame[:12] + etype + ipv + frame[15:]
    _agree(2.0, frame)


# -- Linux cooked captures (SLL, SLL2): the compiled decoder against the dpkt path --------------------------------

COOKED = (linktypes.DLT_LINUX_SLL, linktypes.DLT_LINUX_SLL2)


def _agree_cooked(dlt: int, ts: float, frame: bytes, checksums: bool = True) -> bool:
    compiled = connection._core.decode_frame(ts, frame, dlt, checksums)
    if compiled is None:
        return False
    slow = FrameDecoder(dlt, checksums).decode(ts, frame)
    assert isinstance(slow, Segment) and compiled == slow.fields(), (dlt, frame.hex(), compiled, slow)
    return True


def test_every_real_cooked_packet(tmp_path):
    total = taken = 0
    rng = random.Random(11)
    for dlt, ts, frame in _frames(tmp_path, set(COOKED)):
        total += 1
        taken += _agree_cooked(dlt, ts, frame)
        for _ in range(3):
            _agree_cooked(dlt, ts, _damaged(frame, rng, 90))
    assert total > 700 and taken > 0.5 * total


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(p=segments, dlt=st.sampled_from(COOKED), checksums=st.booleans())
def test_generated_cooked_frames(p, dlt, checksums):
    p = dict(p, dlt=dlt, vlan=[])
    frame, _, _, ip_len = _build(p)
    if p["snap"] is not None:
        frame = frame[: p["snap"] + (len(frame) - ip_len)]
    _agree_cooked(dlt, 1.25, frame, checksums)
