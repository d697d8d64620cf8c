"""What a pcapy-ng `next_batch` returns, as the engine takes it: a list of (timestamp, frame bytes)."""

from __future__ import annotations

import struct
from typing import Protocol

try:
    from midstat_tui._core import split as _compiled_split
except ImportError:  # no compiled core: the same list, made in Python
    _compiled_split = None

META = struct.Struct("=IIII")  # sec, usec, offset, caplen: what next_batch packs per packet
Packet = tuple[float, bytes]


def split_batch(data: bytes, meta: bytes) -> list[Packet]:
    if _compiled_split is not None:
        return _compiled_split(data, meta)
    return [(sec + usec * 1e-6, data[off:off + caplen]) for sec, usec, off, caplen in META.iter_unpack(meta)]


class Share(Protocol):
    """What keeps one shard's packets of each batch a source reads (engine.placement.Share)."""

    def split(self, data: bytes, meta: bytes) -> list[Packet]: ...

    def select(self, batch: list[Packet]) -> list[Packet]: ...

    def keep(self, batch: list[Packet], late: list[int]) -> tuple[list[Packet], int]: ...
