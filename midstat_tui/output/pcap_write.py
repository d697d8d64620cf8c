"""Writing packets to a pcap file (the classic format: microsecond timestamps, which every tool opens), and the
`--write` pass that picks the packets of chosen connections out of a capture.

The writer takes a descriptor opened by the caller (as root, before root is given up, the file is opened there and
written by the user midstat becomes).
"""

from __future__ import annotations

import bisect
import math
import os
import struct
import time
from collections import deque
from collections.abc import Iterable

from midstat_tui.decode.frame import FrameDecoder
from midstat_tui.decode.linktypes import DLT_EN10MB
from midstat_tui.decode.segment import IcmpError, Segment
from midstat_tui.engine.flow_packets import (
    FlowPacket,
    FlowReader,
    FlowRef,
    ethernet_forms,
    flow_bpf,
    segment_decoder,
)
from midstat_tui.engine.records import ConnRow, format_addr
from midstat_tui.errors import MidstatError
from midstat_tui.tcp.tracker import Tracker

PCAP_MAGIC = 0xA1B2C3D4
SNAPLEN = 262144
_HEADER = struct.Struct("<IHHiIII")
_RECORD = struct.Struct("<IIII")
BUFFER = 1 << 20
# at most this many connections get a pre-filter of their own tuples (libpcap compiles one program for them all);
# past it every packet is decoded and its tuple looked up
UNION_MAX = 64


def open_output(path: str) -> int:
    """The output file, created or truncated, as a descriptor (MidstatError with the reason when it cannot be)."""
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    except OSError as err:
        raise MidstatError(f"--write {path}: {err.strerror}") from None


class PcapWriter:
    def __init__(self, fd: int, datalink: int, path: str = "") -> None:
        self.fd = fd
        self.path = path
        self.packets = 0
        self._buf = bytearray(_HEADER.pack(PCAP_MAGIC, 2, 4, 0, 0, SNAPLEN, datalink))

    def write(self, ts: float, frame: bytes) -> None:
        sec = int(ts)
        usec = round((ts - sec) * 1e6)
        if usec >= 1_000_000:
            sec += 1
            usec -= 1_000_000
        buf = self._buf
        buf += _RECORD.pack(sec, usec, len(frame), len(frame))
        buf += frame
        self.packets += 1
        if len(buf) >= BUFFER:
            self.flush()

    def flush(self) -> None:
        view = memoryview(self._buf)
        try:
            while view:
                written = os.write(self.fd, view)
                view = view[written:]
        except OSError as err:
            raise MidstatError(f"--write {self.path}: {err.strerror}") from None
        finally:
            view.release()
        self._buf.clear()

    def close(self) -> None:
        self.flush()
        os.close(self.fd)


class LiveOutput:
    """Core 0's side of `--write` live: the chosen connections' frames, as the shards pick them
    (engine.live_write), written to one file. From one shard they are written as they come (capture order); from
    several, each shard's in its capture order, merged in time order: a frame waits until every shard has said it
    is past the frame's time by HOLD seconds (their clocks, once a batch), at most MAX_HELD bytes waiting (past it
    the oldest go out at once). What is written is flushed once a second: tcpdump and tshark read the file while it
    grows."""

    HOLD = 1.0
    MAX_HELD = 64 << 20
    FLUSH_EVERY = 1.0

    def __init__(self, writer: PcapWriter, shards: int = 1) -> None:
        self.writer = writer
        self.shards = shards
        self.connections = 0
        self.held: list[deque[tuple[float, bytes]]] = [deque() for _ in range(shards)]
        self.held_bytes = 0
        self._flushed = time.monotonic()

    @property
    def packets(self) -> int:
        return self.writer.packets

    def add(self, shard: int, chosen: int, frames: list[tuple[float, bytes]]) -> None:
        self.connections += chosen
        if self.shards == 1:
            write = self.writer.write
            for ts, frame in frames:
                write(ts, frame)
            return
        self.held[shard].extend(frames)
        self.held_bytes += sum(len(frame) for _, frame in frames)
        if self.held_bytes > self.MAX_HELD:
            self._release(math.inf, self.MAX_HELD // 2)

    def clock(self, now: float) -> None:
        """Every shard is at `now` (core 0's merge is: no shard sends anything dated before it any more)."""
        if self.shards > 1 and self.held_bytes:
            self._release(now - self.HOLD)
        if time.monotonic() - self._flushed >= self.FLUSH_EVERY:
            self.flush()

    def _release(self, until: float, down_to: int = -1) -> None:
        """The held frames dated up to `until`, oldest first (or, `down_to`, the oldest until that many bytes are
        left)."""
        held = [q for q in self.held if q]
        write = self.writer.write
        while held:
            queue = min(held, key=lambda q: q[0][0])
            ts, frame = queue[0]
            if ts > until and (down_to < 0 or self.held_bytes <= down_to):
                break
            queue.popleft()
            self.held_bytes -= len(frame)
            write(ts, frame)
            if not queue:
                held.remove(queue)

    def flush(self) -> None:
        self.writer.flush()
        self._flushed = time.monotonic()

    def close(self) -> None:
        """Everything still held, then the file is closed (on every way out)."""
        try:
            self._release(math.inf)
            self.writer.flush()
        finally:
            os.close(self.writer.fd)


def wrote_line(packets: int, connections: int, path: str) -> str:
    """What a --write run says at its end (on standard error)."""
    return (f"wrote {packets} packet{'' if packets == 1 else 's'} of {connections} "
            f"connection{'' if connections == 1 else 's'} to {path}")


def write_flow(writer: PcapWriter, packets: Iterable[FlowPacket]) -> None:
    """One flow's packets (read with keep_frames)."""
    for packet in packets:
        if packet.frame is not None:
            writer.write(packet.ts, packet.frame)


def prefilter(rows: list[ConnRow], datalink: int) -> str | None:
    """A BPF filter that keeps at least every packet of `rows` (and drops most others in libpcap, before Python sees
    them): their tuples when they are few, else their server ports, else their server addresses; None when there
    are too many of each."""
    if len(rows) <= UNION_MAX:
        return flow_bpf([FlowRef.of(row) for row in rows], datalink)
    ports = sorted({row.s_port for row in rows})
    if len(ports) <= UNION_MAX:
        terms = " or ".join(f"port {port}" for port in ports)
    else:
        hosts = sorted({format_addr(row.s_addr) for row in rows})
        if len(hosts) > UNION_MAX:
            return None
        terms = " or ".join(f"host {host}" for host in hosts)
    return ethernet_forms(f"((tcp and ({terms})) or icmp or icmp6)", datalink)


def write_connections(reader: FlowReader, rows: list[ConnRow], writer: PcapWriter) -> int:
    """One more pass over the capture: every packet (TCP segments and the ICMP errors quoting them) the tracker
    counted on one of `rows`: its tuple and VLANs, between its first and last packet (a tuple's incarnations follow
    one another: each owns the packets from its first to its last). A segment of a bad checksum, which the tracker
    never tracks (so a connection's first and last may leave it out), is its tuple's incarnation's of that moment:
    the tracker counted it on the connection it had on the tuple then, which holds the tuple from its first packet
    until it leaves the table (a later incarnation, chosen or not, takes it over), so those after its last packet
    are the first `bad_checksum` - (those between its first and last) of the tuple's after its last; before the
    first one began, the first one's, as tshark counts it on the tuple. Returns the packets written."""
    spans: dict[bytes, tuple[list[float], list[float], list[int]]] = {}
    for row in sorted(rows, key=lambda r: r.first):
        ref = FlowRef.of(row)
        firsts, lasts, damaged_left = spans.setdefault(ref.key, ([], [], []))
        firsts.append(ref.first)
        lasts.append(ref.last)
        # the bad-checksum segments it owns (-1: not known, every one after its last is taken); those between its
        # first and last are taken off as they come, the rest are after its last
        damaged_left.append(ref.bad_checksum if ref.bad_checksum >= 0 else 1 << 62)
    if not spans:
        return 0
    bpf = prefilter(rows, reader.datalink)
    decoder = FrameDecoder(reader.datalink, True)
    decode = decoder.decode
    key_of = Tracker.key_of
    get = spans.get
    quick = quick_key if reader.datalink == DLT_EN10MB else None
    datalink = reader.datalink
    # the compiled decoder for the segments (the same fields as the Python one's: test_fastpath_differential.py)
    fast = segment_decoder(datalink)
    written = 0
    for ts, frame in reader.packets(bpf):
        key = quick(frame) if quick is not None else None
        if key is not None and key not in spans:
            continue  # a plain TCP frame of another tuple: no need to decode it
        got = fast(ts, frame, datalink, True) if fast is not None else None
        if got is not None:  # a TCP segment, read by the compiled decoder: (ts, vlan, src, dst, sport, dport, ...)
            # (an untagged frame's quick key is the tracker's key)
            span = get(key if key is not None else key_of(got[1], got[2], got[4], got[3], got[5]))
            damaged = got[13] is False
        else:  # every other shape (ICMP errors quoting a segment among them): the Python decoder's word
            result = decode(ts, frame)
            kind = type(result)
            if kind is not Segment and kind is not IcmpError:
                continue
            span = get(key_of(result.vlan, result.src, result.sport, result.dst, result.dport))
            damaged = kind is Segment and result.csum_ok is False
        if span is None:
            continue
        firsts, lasts, damaged_left = span
        i = bisect.bisect_right(firsts, ts) - 1
        if i >= 0 and ts <= lasts[i]:
            if damaged:
                damaged_left[i] -= 1
        elif not damaged:
            continue
        elif i >= 0:  # after its last: still its own while it held the tuple (the tracker counted it there)
            if damaged_left[i] <= 0:
                continue
            damaged_left[i] -= 1
        writer.write(ts, frame)
        written += 1
    return written


_PORT = tuple(port.to_bytes(2, "big") for port in range(65536))


def quick_key(frame: bytes) -> bytes | None:
    """The tracker's key of a plain Ethernet frame (untagged, IPv4 without options or IPv6, TCP), read straight
    from the bytes; None for any other frame (the decoder then decides). Only a pre-filter: a frame whose key is
    wanted is decoded in full before it is written."""
    if len(frame) < 54:
        return None
    etype = frame[12:14]
    if etype == b"\x08\x00":
        if frame[14] != 0x45 or frame[23] != 6:
            return None
        a = frame[26:30] + frame[34:36]
        b = frame[30:34] + frame[36:38]
    elif etype == b"\x86\xdd":
        if len(frame) < 74 or frame[20] != 6:
            return None
        a = frame[22:38] + frame[54:56]
        b = frame[38:54] + frame[56:58]
    else:
        return None
    return a + b if a <= b else b + a
