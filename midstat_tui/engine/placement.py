"""Which shard owns a packet: decided from the decoded connection key, the one the tracker keys by, for every link
type and encapsulation (MPLS, IPv6 extension headers, IP options, raw IP, ...) and for ICMP errors (the key of the
TCP segment they quote). Both directions of a connection, and every error about it, land on one shard.

The compiled core places the plain frames (the shape its packet loop decodes) in C; the others go through the
Python decoder, which finds the same key the tracker will (for the plain shape both decoders give the same key:
tests/unit/test_fastpath_differential.py). A packet with no TCP key (not TCP, a fragment, malformed) goes to shard 0,
which counts it, so every packet is counted once.
"""

from __future__ import annotations

from collections.abc import Iterable

from midstat_tui.capture.batches import Packet, split_batch
from midstat_tui.decode.frame import FrameDecoder
from midstat_tui.decode.segment import IcmpError, Segment
from midstat_tui.engine.share_filter import shard_of
from midstat_tui.tcp.connection import _core

UNPLACED = 255
MAX_SHARDS = UNPLACED - 1


class Placer:
    """The shard of each packet of a capture with link type `datalink`, split `count` ways."""

    def __init__(self, datalink: int, count: int) -> None:
        if not 1 <= count <= MAX_SHARDS:
            raise ValueError(f"{count} shards: between 1 and {MAX_SHARDS}")
        self.datalink = datalink
        self.count = count
        self.decoder = FrameDecoder(datalink, verify_checksums=False)  # raises LinkTypeError

    def shard_of_frame(self, ts: float, frame: bytes) -> int:
        """The Python decoder's answer: the shard of the key it finds (shard 0 when there is none)."""
        try:
            result = self.decoder.decode(ts, frame)
        except Exception:  # noqa: BLE001 - whatever the decoder cannot read, shard 0 counts
            return 0
        if type(result) is Segment or type(result) is IcmpError:
            return shard_of(result.src, result.sport, result.dst, result.dport, self.count)
        return 0

    def marks(self, batch: list[Packet]) -> bytes:
        """Each packet's shard."""
        if _core is None:
            return bytes(self.shard_of_frame(ts, frame) for ts, frame in batch)
        marks = _core.place(batch, self.datalink, self.count)
        if UNPLACED not in marks:
            return marks
        fixed = bytearray(marks)
        at = fixed.find(UNPLACED)
        while at >= 0:
            fixed[at] = self.shard_of_frame(*batch[at])
            at = fixed.find(UNPLACED, at + 1)
        return bytes(fixed)

    def split(self, batch: list[Packet]) -> list[list[Packet]]:
        """The batch cut into each shard's packets (each in the batch's order)."""
        parts: list[list[Packet]] = [[] for _ in range(self.count)]
        for packet, shard in zip(batch, self.marks(batch), strict=True):
            parts[shard].append(packet)
        return parts


class Share:
    """One shard's share of a capture, taken from each batch as it is read (capture.files.FileSource.share)."""

    def __init__(self, placer: Placer, shard: int) -> None:
        if not 0 <= shard < placer.count:
            raise ValueError(f"shard {shard} of {placer.count}")
        self.placer = placer
        self.shard = shard
        # engine.names.NameLearner of this shard's engine: the DNS answers of shard 0's share are learned here too,
        # not reported (shard 0 reports them), so the filter term `name` judges on every shard as on one core
        self.names = None

    def learn(self, packets, others: Iterable[int]) -> None:
        """The names the packets at `others` (another shard's, not TCP) carry, for this shard's learner."""
        names = self.names
        if names is not None:
            for i in others:
                names.udp(*packets[i], report=False)

    def split(self, data: bytes, meta: bytes) -> list[Packet]:
        """A next_batch result, as split_batch makes it, keeping only this shard's packets."""
        placer = self.placer
        if _core is None:
            return self.select(split_batch(data, meta))
        packets, unplaced = _core.split_share(data, meta, placer.datalink, placer.count, self.shard)
        if not unplaced:
            return packets
        shard = self.shard
        drop = {i for i in unplaced if placer.shard_of_frame(*packets[i]) != shard}
        self.learn(packets, sorted(drop))
        return [p for i, p in enumerate(packets) if i not in drop] if drop else packets

    def select(self, batch: list[Packet]) -> list[Packet]:
        """This shard's packets of a batch."""
        shard = self.shard
        marks = self.placer.marks(batch)
        if self.names is not None and shard != 0:
            self.learn(batch, [i for i, where in enumerate(marks) if where == 0])
        return [p for p, where in zip(batch, marks, strict=True) if where == shard]

    def keep(self, batch: list[Packet], late: list[int]) -> tuple[list[Packet], int]:
        """This shard's packets of a batch, and how many of the packets at the indices `late` it keeps."""
        shard = self.shard
        marks = self.placer.marks(batch)
        if self.names is not None and shard != 0:
            self.learn(batch, [i for i, where in enumerate(marks) if where == 0])
        return [p for p, where in zip(batch, marks, strict=True) if where == shard], \
            sum(1 for i in late if marks[i] == shard)


def share_names(source, engine) -> None:
    """A shard's `source` (its share of a file or of an interface) hands its engine's name learner the DNS answers
    of shard 0's share too (Share.names)."""
    share = getattr(source, "share", None)
    if share is not None:
        share.names = engine.names
