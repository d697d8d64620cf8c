"""`--write FILE.pcap --match EXPR` on a live capture: one shard's side.

A connection is chosen the moment the filter expression becomes true for it, judged where what it says can change:
at each of its events (its start, each state change, its end: the tracker reports them as the packet that made them
is fed, so the compiled loop hands every state change to Python while this runs) and, when the expression uses a
term that moves without an event (`problem`, `suspicious`, `zeek`, `name`), once a second over every connection in
the table. Once chosen it stays chosen to its end: every packet of it from then on (its TCP segments, whatever their
checksum, and the ICMP errors quoting them, the frames as captured) goes out, until it leaves the table or a new
incarnation takes its tuple. The packets before that moment are not to be had (the packet ring keeps headers only).

A packet's place is its number in the shard's capture; an event is placed at the packet being fed (engine.at), a
tick's choice after the batch. After each batch (and its tick) the batch's frames of chosen tuples are picked by
their places and handed to `send(now, chosen, frames)` (core 0 writes them: output.pcap_write.LiveOutput).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from midstat_tui.decode.frame import FrameDecoder
from midstat_tui.decode.linktypes import DLT_EN10MB
from midstat_tui.decode.segment import IcmpError, Segment
from midstat_tui.tcp.connection import Connection, _core
from midstat_tui.tcp.tracker import Tracker

# the filter terms that can become true without an event of the connection: judged once a second over the table
TICK_TERMS = frozenset({"problem", "suspicious", "zeek", "name"})
SCAN_BUDGET = 0.05  # seconds of each one-second tick the judgement of the terms above may take (a big table: in turns)
SCAN_CHUNK = 256    # connections judged between two looks at the clock
_FAST_LINKS = (1, 113, 276)  # the compiled decoder's (Ethernet, Linux cooked SLL and SLL2)

Send = Callable[[float, int, list[tuple[float, bytes]]], None]


class _Choice:
    """One chosen incarnation: its packets are those of its tuple from place `start` on, up to `end` (None: on);
    `first` (found after its batch, by its first packet's time): in that batch, those from that time on."""

    __slots__ = ("conn", "start", "end", "first")

    def __init__(self, conn: Connection, start: int, first: float | None = None) -> None:
        self.conn = conn
        self.start = start
        self.end: int | None = None
        self.first = first

    def owns(self, place: int, ts: float) -> bool:
        return self.start <= place and (self.end is None or place < self.end) and \
            (self.first is None or ts >= self.first)


class LiveChooser:
    """Chooses a live shard's connections by `wanted(conn, now)` as they change, and picks their packets."""

    def __init__(self, engine, wanted: Callable[[Connection, float | None], bool], send: Send,
                 match: str | None = None) -> None:
        from midstat_tui.query import keywords_used, settled_at_start

        self.engine = engine
        self.wanted = wanted
        self.send = send
        terms = keywords_used(match) if match is not None else set()
        self.scan = bool(terms & TICK_TERMS)
        # an expression of what the first packet settles is judged at the start only
        self.at_start_only = match is None or settled_at_start(match)
        self.choices: dict[bytes, list[_Choice]] = {}
        self.base = 0          # the place of the batch's first packet
        self.fresh = 0         # connections chosen since the last send
        self.chosen = 0        # connections chosen in all
        self.packets = 0       # packets picked in all
        self._closed: list[bytes] = []  # tuples whose choice ended in this batch (let go after its pick)
        self._decoder = FrameDecoder(engine.decoder.dlt, False)
        self._quick = None
        if engine.decoder.dlt == DLT_EN10MB:
            from midstat_tui.output.pcap_write import quick_key

            self._quick = quick_key
        # the compiled core's pick of the chosen tuples' frames (None: the loop below, in Python)
        self._pick = getattr(_core, "pick_keys", None) if engine.decoder.dlt in _FAST_LINKS else None
        tracker = engine.tracker
        # judged at the start only, the new connections are found after each batch (the table's newest entries):
        # the compiled loop goes on taking the state changes itself; otherwise at every event
        self._started = tracker.stats.started
        self._newest = max((conn.id for conn in tracker.table.values()), default=-1)
        self._round: list[bytes] = []  # the tick's judgement: the tuples of this round, and how far it went
        self._round_at = 0
        self._found: list[_Choice] = []  # chosen after their batch: their first packet's time places them
        self._gone: list[tuple[Connection, int]] = []  # started and gone in the same batch: (conn, its end's place)
        if not self.at_start_only:
            tracker.on_event = _chain(tracker.on_event, self._event)
        tracker.on_remove = _chain(tracker.on_remove, self._removed)
        engine.on_tick = _chain(engine.on_tick, self._tick)

    def _place(self) -> int:
        return self.base + self.engine.at

    def _choose(self, conn: Connection, place: int) -> None:
        self.choices.setdefault(conn.key, []).append(_Choice(conn, place))
        self.fresh += 1
        self.chosen += 1

    def _event(self, kind: str, conn: Connection, change, states) -> None:
        if self.at_start_only and kind != "start":
            return  # (a new incarnation comes with its start: the chosen one's end is placed there)
        held = self.choices.get(conn.key)
        if held is not None:
            last = held[-1]
            if last.conn is conn:
                return  # chosen already: to its end
            if last.end is None:  # another incarnation holds the tuple from this packet on
                last.end = self._place()
                self._closed.append(conn.key)
        if self.wanted(conn, None):
            self._choose(conn, self._place())

    def _removed(self, conn: Connection) -> None:
        if self.at_start_only and conn.id > self._newest:  # not judged yet: it started in this batch
            self._gone.append((conn, self._place()))
            return
        held = self.choices.get(conn.key)
        if held is not None and held[-1].conn is conn and held[-1].end is None:
            held[-1].end = self._place()
            self._closed.append(conn.key)

    def _new_ones(self) -> None:
        """The connections started in the batch (the table keeps them in the order they started, their ids
        growing), judged now; each chosen from its first packet."""
        tracker = self.engine.tracker
        if tracker.stats.started == self._started:
            return
        self._started = tracker.stats.started
        newest = self._newest
        fresh: list[tuple[Connection, int | None]] = []
        for conn in reversed(tracker.table.values()):
            if conn.id <= newest:
                break
            fresh.append((conn, None))
        if self._gone:
            fresh += self._gone
            self._gone = []
            fresh.sort(key=lambda item: item[0].id, reverse=True)
        if not fresh:
            return
        self._newest = fresh[0][0].id
        wanted = self.wanted
        for conn, end in reversed(fresh):  # in the order they started
            if wanted(conn, None):
                choice = _Choice(conn, self.base, conn.first)
                choice.end = end
                self.choices.setdefault(conn.key, []).append(choice)
                self._found.append(choice)
                if end is not None:
                    self._closed.append(conn.key)
                self.fresh += 1
                self.chosen += 1

    def _tick(self, now: float) -> None:
        """The terms that move without an event, judged over the table: within SCAN_BUDGET of each tick, so a big
        table is gone through in turns (where the last tick stopped), each connection judged every few seconds."""
        if not self.scan:
            return
        table = self.engine.tracker.table
        if self._round_at >= len(self._round):  # a new round: the table's tuples as they are now
            self._round = list(table)
            self._round_at = 0
        choices = self.choices
        wanted = self.wanted
        place = self._place()
        keys = self._round
        at = self._round_at
        deadline = time.perf_counter() + SCAN_BUDGET
        while at < len(keys):
            for key in keys[at:at + SCAN_CHUNK]:
                conn = table.get(key)
                if conn is None:
                    continue  # gone since the round began
                held = choices.get(key)
                if (held is None or held[-1].conn is not conn) and wanted(conn, now):
                    self._choose(conn, place)
            at += SCAN_CHUNK
            if time.perf_counter() > deadline:
                break
        self._round_at = at

    def tap(self, batch: list[tuple[float, bytes]], now: float) -> None:
        """After a batch was fed (and its tick closed): its frames of the chosen connections go out, as of the
        clock's `now`."""
        if self.at_start_only:
            self._new_ones()
        choices = self.choices
        picked: list[tuple[float, bytes]] = []
        if choices and self._pick is not None and type(batch) is list:
            self._pick_compiled(batch, picked)
        elif choices:
            base = self.base
            quick = self._quick
            decode = self._decoder.decode
            key_of = Tracker.key_of
            for index, packet in enumerate(batch):
                frame = packet[1]
                key = quick(frame) if quick is not None else None
                if key is None:
                    result = decode(packet[0], frame)
                    if type(result) is not Segment and type(result) is not IcmpError:
                        continue
                    key = key_of(result.vlan, result.src, result.sport, result.dst, result.dport)
                held = choices.get(key)
                if held is None:
                    continue
                place = base + index
                for choice in held:
                    if choice.owns(place, packet[0]):
                        picked.append(packet)
                        break
        self.base += len(batch)
        if self._found:
            for choice in self._found:
                choice.first = None
            self._found = []
        self.engine.at = 0
        if self._closed:
            for key in self._closed:
                held = choices.get(key)
                if held is not None:
                    held[:] = [choice for choice in held if choice.end is None]
                    if not held:
                        del choices[key]
            self._closed = []
        if picked or self.fresh:
            self.packets += len(picked)
            self.send(now, self.fresh, picked)
            self.fresh = 0


    def _pick_compiled(self, batch: list[tuple[float, bytes]], picked: list[tuple[float, bytes]]) -> None:
        choices = self.choices
        base = self.base
        hits, others = self._pick(batch, choices, self.engine.decoder.dlt)
        if others:  # the frames the compiled decoder does not read (ICMP errors quoting a chosen tuple...)
            decode = self._decoder.decode
            key_of = Tracker.key_of
            for index in others:
                ts, frame = batch[index]
                result = decode(ts, frame)
                if type(result) is Segment or type(result) is IcmpError:
                    key = key_of(result.vlan, result.src, result.sport, result.dst, result.dport)
                    if key in choices:
                        hits.append((index, key))
            hits.sort()
        for index, key in hits:
            place = base + index
            packet = batch[index]
            for choice in choices[key]:
                if choice.owns(place, packet[0]):
                    picked.append(packet)
                    break


def _chain(first, second):
    """`second` after `first` (None: `second` alone), for the tracker's and the engine's hooks."""
    if first is None:
        return second

    def both(*args):
        first(*args)
        second(*args)

    return both
