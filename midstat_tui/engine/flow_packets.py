"""One connection's packets: re-read from the capture file on demand (nothing is kept while tracking), or, live,
from the packet ring and a watch.

A connection is named by what the tracker knows of it (`FlowRef`: its tuple, VLAN ids and first/last packet time).
The file is read again by the compiled scanner over its records (an uncompressed pcap or pcapng file), else through
a BPF filter on the tuple (libpcap drops the rest before Python sees it); every packet of the tuple is decoded and
run through a private tracker with the same settings, and
the packets that tracker counts on the incarnation starting at `first` are the flow's: a reused port's other
incarnations, and the same tuple on another VLAN, stay apart exactly as the tracker kept them apart.

Each packet comes back with the two endpoint states right after it (the real state machine ran over it) and marks
for what the tracker counted on it (retransmission, out of order, zero window, ignored or odd RST, ...).
"""

from __future__ import annotations

import gc
import math
import mmap
import os
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from midstat_tui.capture.files import FileSource
from midstat_tui.decode.checksum import ChecksumPolicy
from midstat_tui.decode.frame import FrameDecoder
from midstat_tui.decode.linktypes import DLT_EN10MB
from midstat_tui.decode.segment import ACK, FIN, RST, SYN, IcmpError, Segment
from midstat_tui.engine.records import ConnRow, format_addr
from midstat_tui.engine.shard_protocol import UNTIMED, UNWATCH, WATCH, WATCHED, WATCHING
from midstat_tui.errors import MidstatError
from midstat_tui.tcp.connection import Connection, _core
from midstat_tui.tcp.states import CLOSED, ESTABLISHED, SYN_SENT
from midstat_tui.tcp.tracker import Tracker, TrackerConfig

# the compiled scanner of a file's records (None without the compiled core: libpcap and a filter then)
_core_scan = getattr(_core, "scan_flow", None)
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)
_FAST_LINKS = (1, 113, 276)  # Ethernet, Linux cooked SLL and SLL2: the compiled decoder's

# the marks a packet can carry (FlowPacket.marks)
RETRANS = "retrans"        # carries payload (or a SYN/FIN) its sender had sent before
OOO = "ooo"                # fills a hole soon after a later segment: reordered, not resent
ZERO_WIN = "zero_win"      # advertises a zero window
DUP_ACK = "dup_ack"        # a pure ACK repeating its sender's last ACK and window while data is outstanding
RST_IGNORED = "rst_ignored"  # an RST the receiver's stack would ignore (out of window)
RST_ODD = "rst_odd"        # an RST with another TTL or MAC than its sender's other packets (possible injection)
BAD_CSUM = "bad_csum"      # a bad checksum: counted, never tracked
BAD_FLAGS = "bad_flags"    # a flag combination no stack sends
LATE = "late"              # after the connection ended: counted, changes nothing
MARKS = (RETRANS, OOO, ZERO_WIN, DUP_ACK, RST_IGNORED, RST_ODD, BAD_CSUM, BAD_FLAGS, LATE)


@dataclass(frozen=True)
class FlowRef:
    """One incarnation of a connection, as the tracker knew it."""

    c_addr: bytes
    c_port: int
    s_addr: bytes
    s_port: int
    vlan: tuple[int, ...]
    first: float
    last: float
    bad_checksum: int = -1  # bad-checksum packets the tracker counted on it (-1: not known)

    @classmethod
    def of(cls, conn: ConnRow | Connection) -> FlowRef:
        return cls(conn.c_addr, conn.c_port, conn.s_addr, conn.s_port, tuple(conn.vlan), conn.first, conn.last,
                   conn.bad_checksum)

    @property
    def key(self) -> bytes:
        return Tracker.key_of(self.vlan, self.c_addr, self.c_port, self.s_addr, self.s_port)


@dataclass(slots=True)
class FlowPacket:
    """One packet of the flow, with what the state machines made of it."""

    index: int                  # its number in the flow, from 0
    ts: float
    frame: bytes | None         # the captured bytes (None unless asked for: keep_frames)
    seg: Segment | IcmpError
    from_client: bool
    states: tuple[int, int]     # (client, server) state right after it
    changed: bool               # did it move either state
    marks: tuple[str, ...]


@dataclass
class Flow:
    ref: FlowRef
    packets: list[FlowPacket]
    midstream: bool = False
    initial: tuple[int, int] = (CLOSED, CLOSED)  # the states before the first packet (inferred mid-stream)
    conn: Connection | None = None      # the private tracker's record of it, at the end of the flow


def segment_decoder(datalink: int):
    """The compiled core's decoder of a link type's TCP frames, `(ts, frame, dlt, verify) -> tuple | None` with the
    Python decoder's fields (tests/unit/test_fastpath_differential.py); None where there is none (the Python one
    then decodes every frame)."""
    return _core.decode_frame if _core is not None and datalink in _FAST_LINKS else None


def flow_bpf(refs: FlowRef | Iterable[FlowRef], datalink: int) -> str:
    """A filter that lets through the tuples' TCP packets and the ICMP errors sent to their ends (under up to two
    VLAN tags on Ethernet). A pre-filter only: the decoded tuple decides."""
    terms = []
    for ref in [refs] if isinstance(refs, FlowRef) else refs:
        a, b = format_addr(ref.c_addr), format_addr(ref.s_addr)
        icmp = "icmp6" if len(ref.c_addr) == 16 else "icmp"
        terms.append(f"(tcp and host {a} and host {b} and port {ref.c_port} and port {ref.s_port}) or "
                     f"({icmp} and (dst host {a} or dst host {b}))")
    return ethernet_forms("(" + " or ".join(terms) + ")", datalink)


# MPLS-labelled frames (unicast, multicast): the filter cannot see past the labels, so all of them pass and the
# decoder decides. Tested by ethertype, which moves no offset (the 'mpls' keyword would move those after it).
MPLS_FRAMES = "ether proto 0x8847 or ether proto 0x8848"


def ethernet_forms(base: str, datalink: int) -> str:
    """A pre-filter `base` on the shapes an Ethernet frame carries it in: plain, under MPLS labels, under one VLAN
    tag or two (MPLS labels under them too). ('vlan' moves the offsets of everything after it in the expression:
    the untagged forms first, then one tag, then two.)"""
    if datalink != DLT_EN10MB:
        return base
    return f"{MPLS_FRAMES} or {base} or (vlan and ({MPLS_FRAMES} or {base} or (vlan and ({MPLS_FRAMES} or {base}))))"


class FlowReader:
    """One capture file, read again for each question (the first pass that picks the connections, then one pass
    per flow through its filter). Opened once: as root, before root is given up (FileSource.hand_over), a file
    only root may read stays readable."""

    def __init__(self, path: str, config: TrackerConfig | None = None, checksums: ChecksumPolicy | None = None,
                 user=None, bpf: str | None = None) -> None:
        self.path = path
        self.config = config
        self.checksums = checksums
        self.bpf = bpf  # the user's own capture filter (-f): every pass keeps to it
        self.source = FileSource(path, bpf, user=user)
        if self.source.stream:
            self.source.close()
            raise MidstatError(f"{path}: the flows' packets are read from the file again, and standard input or a "
                               "pipe can be read only once: give a capture file")
        self.datalink = self.source.datalink
        self.warning: str | None = None
        self.first_ts: float | None = None  # the capture's first packet time (select's pass): flows start from it
        self.hints: list[str] = []  # select's pass: what was not tracked (bad checksums), said when nothing matched
        # an uncompressed file's own descriptor (opened now, while root may still read it): a flow is found by the
        # compiled scanner over its bytes (scan_flow), libpcap and the filter being the way for everything else
        self._fd: int | None = None
        if _core_scan is not None and self.source._fd is None:
            try:
                self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                self._fd = None

    def hand_over(self, target) -> None:
        self.source.hand_over(target)

    def close(self) -> None:
        self.source.close()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def scanned(self, ref: FlowRef) -> list[tuple[float, bytes]] | None:
        """The records of the file that may be the flow's (from its first packet on), by the compiled scanner;
        None when it cannot say (a compressed file, the user's own filter, another link type or file shape)."""
        if self._fd is None or self.bpf or _core_scan is None:
            return None
        try:
            size = os.fstat(self._fd).st_size
            if size == 0:
                return None
            # mapped in one go (MAP_POPULATE, where there is one): the scanner reads the whole file, and a page
            # fault for each part of it costs a fifth of the scan (benchmarks/RESULTS.md, 2026-11-30)
            with mmap.mmap(self._fd, size, flags=mmap.MAP_SHARED | _POPULATE, prot=mmap.PROT_READ) as view:
                # the file's clock never goes back: past `last` nothing more is the flow's (but a bad checksum,
                # which moves no time: when the tracker counted none, the scan ends there)
                last = ref.last if ref.bad_checksum == 0 else math.inf
                return _core_scan(view, self.datalink, ref.c_addr, ref.c_port, ref.s_addr, ref.s_port, ref.first,
                                  last)
        except (OSError, ValueError):
            return None

    def packets(self, bpf: str | None = None) -> Iterator[tuple[float, bytes]]:
        """Every packet of the file (through `bpf` and the user's filter, when given), in capture order."""
        source = self.source
        both = bpf if not self.bpf else f"({self.bpf}) and ({bpf})" if bpf else self.bpf
        source.bpf = both
        try:
            batches = source.batches_from(0)
        except MidstatError as exc:
            if bpf is None or "invalid capture filter" not in str(exc):
                raise
            source.bpf = self.bpf  # a link type the pre-filter cannot say: every packet, the decoder decides
            batches = source.batches_from(0)
        for batch in batches:
            yield from batch
        if source.warning and self.warning is None:
            self.warning = source.warning

    def select(self, match: str | None, thresholds: dict[str, float] | None = None) -> list[ConnRow]:
        """The first pass: every connection the filter expression `match` picks (all for None), as the tracker
        knew it at its end (or when it left the table), in the order they started. `problem KIND` terms judge a
        connection at that moment (the end of the file for those still open), with `thresholds`."""
        from midstat_tui.engine.hints import stats_hints
        from midstat_tui.engine.pipeline import Engine, run_file
        from midstat_tui.engine.records import row_of
        from midstat_tui.problems import Lens
        from midstat_tui.query import compile_query

        predicate = compile_query(match, Lens(thresholds=thresholds)) if match else None
        chosen: list[ConnRow] = []

        def keep(conn: Connection) -> None:
            row = row_of(conn)
            if predicate is None or predicate(row, engine.tracker.now):
                chosen.append(row)

        engine = Engine(self.datalink, self.config, checksums=self.checksums)
        engine.clock = getattr(self.source, "clock", None)  # the file's late packets, dated where it is read
        engine.tracker.on_remove = keep
        source = self.source
        source.bpf = self.bpf
        # the first pass of a fresh, unfiltered file goes through the compiled reader (no Python object per packet),
        # as a headless run's does; a later pass, or a filter, reads with libpcap again
        fresh = not source.delivered and not self.bpf
        last = run_file(engine, source.batches(close_at_end=False, frames=True) if fresh else source.batches_from(0))
        self.warning = self.source.warning
        self.first_ts = engine.first_ts
        self.hints = stats_hints(engine.stats())  # (none chosen because their checksums were bad: said)
        engine.tracker.advance(last.ts)
        for conn in engine.tracker.table.values():
            keep(conn)
        chosen.sort(key=lambda row: (row.first, row.id))
        return chosen

    def flow(self, ref: FlowRef, keep_frames: bool = False) -> Flow:
        """The packets of one incarnation: the compiled scanner's records of the tuple (or, where it cannot read
        the file, libpcap's through a filter on the tuple), through a private tracker."""
        found = self.scanned(ref)
        stream = found if found is not None else self.packets(flow_bpf(ref, self.datalink))
        return attribute(stream, ref, self.datalink, self.config,
                         self.checksums, keep_frames)


def attribute(stream: Iterable[tuple[float, bytes | Segment]], ref: FlowRef, datalink: int,
              config: TrackerConfig | None, checksums: ChecksumPolicy | None, keep_frames: bool,
              tail: bool = False, compiled: bool = True) -> Flow:
    """Run the tuple's packets through a private tracker; keep those it counts on the incarnation `ref`.

    The tracker made the incarnation at its first packet, whatever came before on the tuple: the packets before
    `ref.first` are skipped, and the first one at `ref.first` makes it again. Between its first and last packet
    the connection is on its tuple's table entry, so every bad-checksum packet of the tuple then was counted on it:
    when the tracker counted none, checksums need no checking.

    The common packet (the plain frame of the live connection, neither a SYN nor late, no timer due before it) is
    replayed by the compiled core (`_core.flow_run`: the same state machine and marks), the rest here, one by one;
    `compiled` False replays every packet here (the tests compare the two)."""
    replay = _Replay(ref, datalink, config, checksums, keep_frames, tail)
    run = _core_flow_run if compiled and replay.fast is not None and replay.tracker.compiled else None
    step = replay.step
    # two objects a packet, and no cycle among them: the cyclic collector, which a hundred thousand new objects
    # would wake again and again (over a live table of a million connections too), waits until the replay is over
    paused = gc.isenabled()
    gc.disable()
    try:
        for chunk in _chunks(stream):
            i = 0
            size = len(chunk)
            while i < size:
                if run is not None and replay.target is not None and not replay.done:
                    i = replay.run(run, chunk, i)
                    if i >= size:
                        break
                if step(*chunk[i]):
                    return replay.flow
                i += 1
        return replay.flow
    finally:
        if paused:
            gc.enable()


_core_flow_run = getattr(_core, "flow_run", None)
_CHUNK = 8192


def _chunks(stream: Iterable) -> Iterator[list]:
    """The stream as lists (itself when it is one): the compiled replay takes a list."""
    if isinstance(stream, list):
        yield stream
        return
    chunk: list = []
    for item in stream:
        chunk.append(item)
        if len(chunk) == _CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class _Replay:
    """attribute()'s private tracker and what it has made so far: `step` takes one packet in Python, `run` as many
    as the compiled core can take."""

    def __init__(self, ref: FlowRef, datalink: int, config: TrackerConfig | None,
                 checksums: ChecksumPolicy | None, keep_frames: bool, tail: bool) -> None:
        policy = checksums or ChecksumPolicy("verify")
        self.verify = policy.verify and ref.bad_checksum != 0
        self.decode = FrameDecoder(datalink, self.verify).decode
        self.datalink = datalink
        # the compiled core's decoder for the plain frame (the same fields: tests/unit/test_fastpath_differential.py),
        # the Python one for every other shape
        self.fast = segment_decoder(datalink)
        self.first = -math.inf if tail else ref.first
        self.last = math.inf if tail else ref.last
        self.tail = tail
        self.ref = ref
        self.keep_frames = keep_frames
        self.tracker = Tracker(config)
        self.tracker.offload_sources = policy.offload_sources
        self.key = ref.key
        self.flow = Flow(ref, [])
        self.target: Connection | None = None
        self.last_ack = [-1, -1, -1, -1]  # the client's last ACK number and window, then the server's (-1: none)
        self.bad_seen = 0
        self.done = False

    def step(self, ts: float, frame: bytes | Segment) -> bool:
        """One packet; True when the flow is over (what follows is another incarnation's)."""
        if ts < self.first:
            return False
        target = self.target
        ref = self.ref
        late = ts > self.last and target is not None
        if late and self.bad_seen >= ref.bad_checksum:
            return True  # the tracker counted nothing more on this incarnation after `last`: what follows is another's
        if type(frame) is bytes:
            fields = self.fast(ts, frame, self.datalink, self.verify) if self.fast is not None else None
            result = Segment(*fields) if fields is not None else self.decode(ts, frame)
        else:  # a packet ring's header (live, before the watch started), already a Segment
            result = frame
            frame = None
        key = self.key
        tracker = self.tracker
        out = self.flow.packets
        keep = frame if self.keep_frames else None
        if ts > tracker.now:
            # the timers due by now first (the tracker runs them first too): on the main tracker the file's other
            # packets ran them already, so a packet after its connection's timeout finds it ended ([late])
            tracker.advance(ts)
        if type(result) is Segment:
            if Tracker.key_of(result.vlan, result.src, result.sport, result.dst, result.dport) != key:
                return False
            if late and result.csum_ok is not False:
                return False  # after `last` only a bad checksum (which moves no time) can still be the connection's
            if result.csum_ok is False:
                self.bad_seen += 1
            before = tracker.table.get(key)
            snap = _NONE
            was_ended = False
            if before is not None:
                sent_by_client = result.sport == before.c_port and result.src == before.c_addr
                snap = _counters(before, sent_by_client)
                was_ended = before.ended is not None
            conn = tracker.segment(result)
            if conn is None:
                return False
            if conn is not before:
                snap = _NONE  # a new incarnation started with this packet
                was_ended = False
            if target is None:
                if not self.tail and abs(conn.first - ref.first) > 1e-6:
                    return False
                self.target = target = conn
                self.flow.midstream = conn.midstream
                self.flow.conn = conn
            elif conn is not target:
                self.done = True
                return True  # the next incarnation on the tuple: ours is over
            from_client = result.sport == conn.c_port and result.src == conn.c_addr
            marks = _marks(conn, snap, result, from_client, was_ended, self.last_ack)
            states = (conn.c.state, conn.s.state)
            prev = out[-1].states if out else None
            if prev is None:
                if conn.midstream:  # both taken as ESTABLISHED, or a SYN/ACK first: the client's SYN implied
                    self.flow.initial = (SYN_SENT, CLOSED) if result.flags & SYN else (ESTABLISHED, ESTABLISHED)
                prev = self.flow.initial
            out.append(FlowPacket(len(out), result.ts, keep, result, from_client, states, states != prev, marks))
        elif type(result) is IcmpError:
            if late or Tracker.key_of(result.vlan, result.src, result.sport, result.dst, result.dport) != key or \
                    target is None:
                return False
            before_states = (target.c.state, target.s.state)
            tracker.icmp(result)
            if tracker.table.get(key) is not target:
                return False
            from_client = result.sport == target.c_port and result.src == target.c_addr
            states = (target.c.state, target.s.state)
            out.append(FlowPacket(len(out), result.ts, keep, result, from_client, states, states != before_states, ()))
        return False

    def run(self, run, chunk: list, i: int) -> int:
        """chunk[i:] through the compiled replay while it takes the packets; the index of the first it left."""
        tracker = self.tracker
        target = self.target
        table = tracker.table
        core = tracker.core
        stats = tracker.stats
        out = self.flow.packets
        while True:
            if table.get(self.key) is not target or target.ended is not None:
                return i
            prev = out[-1].states if out else self.flow.initial
            reason, index, packets, suspicious, odd, last_ts, changes, before = run(
                chunk, i, tracker.next_timer(), core, target, self.verify, self.datalink, self.first, self.last,
                out, _KINDS, self.last_ack, prev, self.keep_frames)
            if packets:
                stats.segments += packets
                stats.suspicious_rst += suspicious
                stats.odd_rst += odd
                if last_ts > tracker.now:
                    tracker.now = last_ts
                if last_ts > tracker.latest:
                    tracker.latest = last_ts
            if reason != _CHANGED:
                return index
            tracker.changed(target, changes, before, last_ts)
            i = index + 1


_NONE: tuple[int, ...] = (0,) * 7
_NO_MARKS: tuple[str, ...] = ()


def _counters(conn: Connection, from_client: bool) -> tuple[int, ...]:
    """The counters a packet can move: its sender's retransmissions, out-of-order segments and zero windows, and
    the connection's odd resets, bad checksums and bad flags."""
    side = conn.c if from_client else conn.s
    return (side.retrans, side.ooo, side.zero_win, conn.suspicious_rst, conn.odd_rst, conn.bad_checksum,
            conn.bad_flags)


_MARK_ORDER = (RETRANS, OOO, ZERO_WIN, RST_IGNORED, RST_ODD, BAD_CSUM, BAD_FLAGS)
# what the compiled replay makes its packets of: the classes, and the marks in the order it numbers them
_KINDS = (Segment, FlowPacket, _MARK_ORDER + (DUP_ACK,))
_CHANGED = getattr(_core, "STOP_CHANGED", -1)


def _marks(conn: Connection, before: tuple[int, ...], seg: Segment, from_client: bool, was_ended: bool,
           last_ack: list[int]) -> tuple[str, ...]:
    after = _counters(conn, from_client)
    marks: list[str] | None = None
    if after != before:
        marks = [mark for mark, a, b in zip(_MARK_ORDER, after, before, strict=True) if a != b]
    flags = seg.flags
    if flags & ACK and not flags & RST:
        at = 0 if from_client else 2
        if not flags & (SYN | FIN) and seg.payload == 0 and seg.win and last_ack[at] == seg.ack and \
                last_ack[at + 1] == seg.win:
            peer = conn.s if from_client else conn.c
            if peer.snd_nxt is not None and peer.snd_nxt != seg.ack:  # data outstanding
                marks = marks or []
                marks.append(DUP_ACK)
        last_ack[at] = seg.ack
        last_ack[at + 1] = seg.win
    if was_ended:
        marks = marks or []
        marks.append(LATE)
    return tuple(marks) if marks else _NO_MARKS


# Live: every packet of a watched flow from the moment its screen opens, up to these bounds (the oldest go first)
WATCH_PACKETS = 200_000
WATCH_BYTES = 256 << 20

# Live: the packet ring (the compiled core keeps the headers of each connection's last RING_PACKETS packets, 24
# bytes each, all rings within RING_BUDGET bytes: past it a ring stops growing and a new connection gets none).
# A ring starts at 2 entries and doubles while full, so a connection of a few packets costs a few dozen bytes.
RING_PACKETS = 64
RING_BUDGET = 64 << 20


def ring_on(packets: int = RING_PACKETS, budget: int = RING_BUDGET) -> bool:
    """Turn the packet ring on (a live session; packets 0: off). False when there is no compiled core (the
    pure-Python engine keeps no ring)."""
    from midstat_tui.tcp.connection import _core

    if _core is None:
        return False
    _core.ring_setup(packets, budget)
    return True


def ring_stats() -> dict[str, int]:
    """The ring's setting and what it holds: packets per connection, budget and bytes used, rings."""
    from midstat_tui.tcp.connection import _core

    if _core is None:
        return {"packets": 0, "budget": 0, "used": 0, "rings": 0}
    packets, budget, used, rings = _core.ring_stats()
    return {"packets": packets, "budget": budget, "used": used, "rings": rings}


def ring_packets(conn: Connection) -> tuple[int, list[tuple[float, Segment]]]:
    """A tracked connection's ring, oldest first, as segments (headers only: no frame, no MAC, IP length taken
    as 40 bytes of headers plus the payload), and how many packets it saw (the ring holds the last of them)."""
    from midstat_tui.tcp.connection import _core

    if _core is None or not isinstance(conn, _core.Connection):
        return 0, []
    seen, entries = _core.ring_of(conn)
    c, s, cp, sp, vlan = conn.c_addr, conn.s_addr, conn.c_port, conn.s_port, tuple(conn.vlan or ())
    extra = 40 if len(c) == 4 else 60
    out = []
    for ts, flags, seq, ack, win, payload, ttl, from_client in entries:
        if from_client:
            seg = Segment(ts, vlan, c, s, cp, sp, seq, ack, flags, win, payload, extra + payload, ttl)
        else:
            seg = Segment(ts, vlan, s, c, sp, cp, seq, ack, flags, win, payload, extra + payload, ttl)
        out.append((ts, seg))
    return seen, out


class FlowWatch:
    """The packets of one tuple as a live capture sees them, from the moment the watch starts, bounded in count
    and bytes. Filled by the capture thread (`add`), read by the face (`flow`)."""

    def __init__(self, ref: FlowRef, datalink: int, config: TrackerConfig | None = None,
                 checksums: ChecksumPolicy | None = None, max_packets: int = WATCH_PACKETS,
                 max_bytes: int = WATCH_BYTES) -> None:
        self.ref = ref
        self.key = ref.key
        self.datalink = datalink
        self.config = config
        self.checksums = checksums
        self.max_bytes = max_bytes
        self.packets: deque[tuple[float, bytes]] = deque(maxlen=max_packets)
        self.bytes = 0
        self.seen = 0      # packets added since the start
        self.dropped = 0   # the oldest, let go past the bounds
        self.ring: list[tuple[float, Segment]] = []  # the ring's headers, before the watch started
        self.ring_seen = 0  # packets the connection had had then (the ring holds the last of them)
        self.version = 0    # moves with every change (a packet added, the ring seeded): the face redraws then
        self._lock = threading.Lock()

    def seed(self, seen: int, ring: list[tuple[float, Segment]]) -> None:
        """The packets before the watch started, from the connection's packet ring (headers only)."""
        with self._lock:
            self.ring_seen = seen
            self.ring = ring
            self.version += 1

    def add(self, ts: float, frame: bytes) -> None:
        with self._lock:
            packets = self.packets
            if len(packets) == packets.maxlen:
                self.bytes -= len(packets[0][1])
                self.dropped += 1
            packets.append((ts, frame))
            self.bytes += len(frame)
            self.seen += 1
            self.version += 1
            while self.bytes > self.max_bytes and len(packets) > 1:
                self.bytes -= len(packets.popleft()[1])
                self.dropped += 1

    def flow(self) -> Flow:
        """What the watch holds, through a private tracker (picked up as mid-stream: the states before the first
        packet it holds are inferred)."""
        with self._lock:
            held = self.ring + list(self.packets) if self.ring else list(self.packets)
        return attribute(held, self.ref, self.datalink, self.config, self.checksums, keep_frames=True, tail=True)


def seeded_watch(engine, ref: FlowRef) -> FlowWatch:
    """A watch on `ref` in a live engine, holding the connection's packet ring (call it between two batches, with
    the packets that come after going to the watch)."""
    watch = FlowWatch(ref, engine.decoder.dlt, engine.tracker.config, engine.checksums)
    conn = engine.tracker.table.get(ref.key)
    if conn is not None and abs(conn.first - ref.first) <= 1e-6:
        watch.seed(*ring_packets(conn))
    return watch


class Forward:
    """A shard's side of a watch on several cores: the frames of one tuple since the last tick, handed to core 0
    (which keeps them in its FlowWatch, bounded there)."""

    def __init__(self, key: bytes, limit: int = WATCH_PACKETS) -> None:
        self.key = key
        self.limit = limit
        self.frames: list[tuple[float, bytes]] = []

    def add(self, ts: float, frame: bytes) -> None:
        if len(self.frames) < self.limit:  # more than core 0's watch holds would only be let go there
            self.frames.append((ts, frame))

    def take(self) -> list[tuple[float, bytes]]:
        frames, self.frames = self.frames, []
        return frames


class Tap:
    """Hands the frames of watched tuples to their watches. `tap(batch)` costs nothing while no watch is on;
    then a look at each plain Ethernet frame's bytes (output.pcap_write.quick_key), a decode for the others."""

    def __init__(self, datalink: int) -> None:
        self.datalink = datalink
        self.watches: dict[bytes, FlowWatch | Forward] = {}
        self._decoder = FrameDecoder(datalink, False)

    def watch(self, watch):
        """Start handing the tuple's frames to `watch` (anything with `key` and `add(ts, frame)`)."""
        self.watches = {**self.watches, watch.key: watch}  # a new dict: the capture thread reads it unlocked
        return watch

    def unwatch(self, watch: FlowWatch) -> None:
        self.watches = {k: w for k, w in self.watches.items() if w is not watch}

    def tap(self, batch: list[tuple[float, bytes]]) -> None:
        watches = self.watches
        if not watches:
            return
        from midstat_tui.output.pcap_write import quick_key

        quick = quick_key if self.datalink == DLT_EN10MB else None
        decode = self._decoder.decode
        key_of = Tracker.key_of
        for ts, frame in batch:
            key = quick(frame) if quick is not None else None
            if key is None:
                result = decode(ts, frame)
                if type(result) is not Segment and type(result) is not IcmpError:
                    continue
                key = key_of(result.vlan, result.src, result.sport, result.dst, result.dport)
            watch = watches.get(key)
            if watch is not None:
                watch.add(ts, frame)


class ShardWatches:
    """A live shard's side of the flow screen on several cores: core 0 orders a watch on a tuple (every shard gets
    the order: the one holding the connection answers with its packet ring), and from then on the shard hands it
    the tuple's frames once a tick. Messages to core 0 (engine.shard_protocol): WATCHING (key, datalink, seen,
    ring) once, then WATCHED (key, frames)."""

    def __init__(self, engine, link) -> None:
        self.engine = engine
        self.link = link
        self.tap = Tap(engine.decoder.dlt)
        ring_on()

    def order(self, kind: str, payload) -> None:
        """Take a watch order (WATCH, UNWATCH)."""
        if kind == WATCH:
            ref: FlowRef = payload
            conn = self.engine.tracker.table.get(ref.key)
            seen, ring = ring_packets(conn) if conn is not None and abs(conn.first - ref.first) <= 1e-6 else (0, [])
            self.tap.watch(Forward(ref.key))
            self.link.send(WATCHING, UNTIMED, (ref.key, self.engine.decoder.dlt, seen, ring))
        elif kind == UNWATCH:
            forward = self.tap.watches.get(payload)
            if forward is not None:
                self.tap.unwatch(forward)

    def send(self) -> None:
        """Once a tick: each watched tuple's frames since the last one."""
        for key, forward in self.tap.watches.items():
            frames = forward.take()  # type: ignore[union-attr]
            if frames:
                self.link.send(WATCHED, UNTIMED, (key, frames))
