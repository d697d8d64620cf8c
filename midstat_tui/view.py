"""What the connection table shows: the rows the engine handed over, filtered and sorted. No UI import.

The sort and the filter live here, outside the widget, so the widget only draws the visible lines and a test can
check the order without a screen. Numbers are kept in numpy columns indexed by a slot per connection, so a refresh
at a million connections costs a gather and a stable argsort (which finds last second's order nearly sorted), not
a million Python comparisons; filter results are cached per row until the row changes. Columns that do not sort as
numbers (addresses, text) fall back to a Python sort.

When a port is reused, the engine replaces the earlier incarnation on its tuple by the new one and hands over its
last row (engine.views.departed_row); the view keeps every ended row until its end time plus the linger time, so
both incarnations stay visible side by side, as any ended connection does.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Iterable, Iterator
from itertools import islice
from operator import attrgetter

import numpy as np

from midstat_tui.columns import BY_KEY, COLUMNS
from midstat_tui.engine.session import Pulled
from midstat_tui.engine.views import ConnRow
from midstat_tui.problems import COUNT, KIND_NAMES, NONE, WIDTH, Lens, detect, signals, thresholds_vector
from midstat_tui.query import Predicate, compile_query, keywords_used

NUMERIC = ("shard", "cstate", "sstate", "first", "last", "packets_c2s", "packets_s2c", "bytes_c2s", "bytes_s2c",
           "rtt_s", "retrans_packets", "midstream", "rst_alerts")
IPV4_ENDPOINT = len("255.255.255.255:65535")


class ConnView:
    def __init__(self) -> None:
        self.rows: dict[int, ConnRow] = {}
        self.order: list[int] = []          # ids in display order
        self.sort_key = "age"
        self.sort_reverse = False
        self.show_ended = True
        self.query = ""
        self.now = 0.0
        self.version = 0
        self.linger = 60.0                  # how long a replaced incarnation stays (the tracker's --linger)
        self.addr_width = IPV4_ENDPOINT     # the widest endpoint text seen (IPv6 rows widen it)
        self.has_vlan = False               # some row carries VLAN tags
        self._leaving: list[tuple[float, int]] = []  # (end_ts + linger, id) of ended rows, a heap
        self._predicate: Predicate | None = None
        self._slot: dict[int, int] = {}
        self._free: list[int] = []
        self._size = 0
        self._ids = np.full(0, -1, dtype=np.int64)
        self._ended = np.zeros(0, dtype=bool)
        self._match = np.zeros(0, dtype=np.int8)          # -1 unknown, 0 no, 1 yes
        self._cols = {name: np.zeros(0, dtype=np.float64) for name in NUMERIC}
        self._order_slots = np.zeros(0, dtype=np.int64)
        self._order_ids = np.zeros(0, dtype=np.int64)
        self._new_slots: list[int] = []
        # pulls taken and not yet applied (take / catch_up), the first one's changes iterated as they are applied
        self._backlog: deque[tuple[Pulled, Iterator | None]] = deque()
        self._applied_of_first = 0
        # the problems lens: every slot's signals (problems.signals), float32 times relative to `_base`; the
        # detection at `now` is redone on the matrix at each recompute (a few vector operations at 1M rows)
        self.lens = Lens()
        self._base: float | None = None
        # column-major (WIDTH x slots): detect reads whole columns
        self._signals = np.full((WIDTH, 0), np.nan, dtype=np.float32)
        self._problems = np.zeros((0, COUNT), dtype=bool)  # per slot and kind, at the last recompute
        self.problem_counts: dict[str, int] = dict.fromkeys(KIND_NAMES, 0)
        self._uses_problem = False
        self._problems_matched: np.ndarray | None = None  # the detection the filter's cached matches were made at

    # -- rows in -------------------------------------------------------------------------------------------------
    def _grow(self, need: int) -> None:
        size = max(1024, len(self._ids))
        while size < need:
            size *= 2
        if size == len(self._ids):
            return
        extra = size - len(self._ids)
        self._ids = np.concatenate([self._ids, np.full(extra, -1, dtype=np.int64)])
        self._ended = np.concatenate([self._ended, np.zeros(extra, dtype=bool)])
        self._match = np.concatenate([self._match, np.full(extra, -1, dtype=np.int8)])
        for name, col in self._cols.items():
            self._cols[name] = np.concatenate([col, np.zeros(extra, dtype=np.float64)])
        self._signals = np.concatenate([self._signals, np.full((WIDTH, extra), np.nan, dtype=np.float32)], axis=1)

    def apply(self, pulled: Pulled) -> None:
        """Take a pull's changes, all of them now."""
        self.take(pulled)
        self.catch_up()

    def take(self, pulled: Pulled) -> None:
        """Queue a pull's changes; `catch_up` applies them, a slice at a time if asked (a flood's hundreds of
        thousands of new rows in one pull would otherwise hold the face for seconds)."""
        if pulled.reset:
            self._backlog.clear()  # a reset replaces everything queued before it
        self._backlog.append((pulled, None))

    @property
    def behind(self) -> int:
        """Changes taken and not applied yet (a pull's count is known once its application started)."""
        return sum(len(p.changes) for p, _ in self._backlog) - self._applied_of_first

    def catch_up(self, limit: int | None = None) -> bool:
        """Apply the queued changes, at most `limit` rows this call; True once none is left."""
        budget = math.inf if limit is None else limit
        backlog = self._backlog
        while backlog and budget > 0:
            pulled, items = backlog[0]
            if items is None:  # its first slice
                self._start(pulled)
                items = iter(pulled.changes.items())
                backlog[0] = (pulled, items)
                self._applied_of_first = 0
            count = len(pulled.changes) - self._applied_of_first
            take = count if budget >= count else int(budget)
            self._apply_rows(islice(items, take))
            self._applied_of_first += take
            budget -= take
            if self._applied_of_first >= len(pulled.changes):
                backlog.popleft()
                self._applied_of_first = 0
                self._leave()
        return not backlog

    def _start(self, pulled: Pulled) -> None:
        if pulled.reset:
            self.rows.clear()
            self._slot.clear()
            self._free.clear()
            self._size = 0
            self._ids[:] = -1
            self._order_slots = np.zeros(0, dtype=np.int64)
            self._order_ids = np.zeros(0, dtype=np.int64)
            self._new_slots = []
            self._leaving = []
            self.addr_width = IPV4_ENDPOINT
            self.has_vlan = False
        self.now = pulled.position

    def _apply_rows(self, changes: Iterable[tuple[int, ConnRow | None]]) -> None:
        rows, slots = self.rows, self._slot
        updated_slots: list[int] = []
        updated_rows: list[ConnRow] = []
        for conn_id, row in changes:
            slot = slots.get(conn_id)
            if row is None:
                if slot is not None:
                    self._drop(conn_id)
                continue
            if slot is None:
                if self._free:
                    slot = self._free.pop()
                else:
                    slot = self._size
                    self._size += 1
                    if slot >= len(self._ids):
                        self._grow(slot + 1)
                slots[conn_id] = slot
                self._ids[slot] = conn_id
                self._new_slots.append(slot)
            rows[conn_id] = row
            updated_slots.append(slot)
            updated_rows.append(row)
            if len(row.c_addr) == 16 or len(row.s_addr) == 16:
                self.addr_width = max(self.addr_width, len(row.client), len(row.server))
            if row.vlan:
                self.has_vlan = True
            if row.end_ts is not None:
                heapq.heappush(self._leaving, (row.end_ts + self.linger, conn_id))
        if updated_slots:
            index = np.fromiter(updated_slots, dtype=np.int64, count=len(updated_slots))
            for name in NUMERIC:
                self._cols[name][index] = list(map(attrgetter(name), updated_rows))
            self._ended[index] = [row.ended is not None for row in updated_rows]
            self._match[index] = -1
            if self._base is None:
                self._base = updated_rows[0].first
            self._signals[:, index] = np.nan
            some = [(slot, sig) for slot, sig in zip(updated_slots, map(signals, updated_rows), strict=True)
                    if sig is not NONE]
            if some:
                sig = np.array([s for _, s in some], dtype=np.float64)
                sig -= self._base  # times relative to the base (the measures in the middle are set back below)
                sig[:, COUNT:WIDTH - 1] += self._base
                self._signals[:, [slot for slot, _ in some]] = sig.T

    def _leave(self) -> None:
        """Drop the ended rows whose linger time is over."""
        rows = self.rows
        leaving = self._leaving
        while leaving and leaving[0][0] <= self.now:
            leave, conn_id = heapq.heappop(leaving)
            row = rows.get(conn_id)
            if row is not None and row.end_ts is not None and row.end_ts + self.linger <= self.now:
                self._drop(conn_id)

    def _drop(self, conn_id: int) -> None:
        slot = self._slot.pop(conn_id)
        self._signals[:, slot] = np.nan
        del self.rows[conn_id]
        self._ids[slot] = -1
        self._free.append(slot)

    # -- what to show --------------------------------------------------------------------------------------------
    def set_query(self, text: str) -> None:
        """Raises QueryError (with the position) and keeps the previous filter if the text does not parse."""
        predicate = compile_query(text, self.lens) if text.strip() else None
        self._uses_problem = predicate is not None and "problem" in keywords_used(text)
        self._problems_matched = None
        self.query = text.strip()
        self._predicate = predicate
        self._match[:] = -1

    def sort_by(self, key: str, reverse: bool | None = None) -> None:
        """Sort by a column: again on the same column reverses; a new column starts in its first direction
        (numbers largest first, text A to Z)."""
        if key not in BY_KEY:
            raise KeyError(key)
        if reverse is None:
            reverse = not self.sort_reverse if key == self.sort_key else BY_KEY[key].right
        self.sort_key = key
        self.sort_reverse = reverse

    def next_sort(self, visible: list[str], step: int = 1) -> None:
        keys = [c.key for c in COLUMNS if c.key in visible]
        i = keys.index(self.sort_key) if self.sort_key in keys else -1
        self.sort_key = keys[(i + step) % len(keys)]
        self.sort_reverse = BY_KEY[self.sort_key].right

    def recompute(self) -> list[int]:
        """Sort every live row, starting from last time's order so the stable sort mostly finds it in place;
        then keep the rows the filter and the ended switch let through."""
        ids = self._ids
        prev = self._order_slots
        still = prev[ids[prev] == self._order_ids] if len(prev) else prev
        fresh = np.fromiter(self._new_slots, dtype=np.int64, count=len(self._new_slots))
        self._new_slots = []
        fresh = fresh[ids[fresh] >= 0]
        cand = np.concatenate([still, fresh]) if len(fresh) else still
        column = BY_KEY[self.sort_key]
        descending = self.sort_reverse != column.flip
        if len(column.fields) == 1 and column.fields[0] in self._cols:
            keys = self._cols[column.fields[0]][cand]
            cand = cand[np.argsort(-keys if descending else keys, kind="stable")]
        else:
            rows = self.rows
            getter = attrgetter(*column.fields)
            listed = cand.tolist()
            listed.sort(key=lambda slot: getter(rows[int(ids[slot])]), reverse=descending)
            cand = np.asarray(listed, dtype=np.int64)
        self._order_slots = cand
        self._order_ids = ids[cand]
        self.detect_problems()
        shown = cand
        if not self.show_ended:
            shown = shown[~self._ended[shown]]
        predicate = self._predicate
        if predicate is not None:
            match = self._match
            rows = self.rows
            for slot in shown[match[shown] < 0].tolist():
                match[slot] = 1 if predicate(rows[int(ids[slot])]) else 0
            shown = shown[match[shown] == 1]
        self.order = ids[shown].tolist()
        self.version += 1
        return self.order

    # -- the problems lens ------------------------------------------------------------------------------------
    def set_thresholds(self, thresholds: dict[str, float]) -> None:
        self.lens.thresholds = dict(thresholds)
        self.detect_problems()

    def detect_problems(self) -> dict[str, int]:
        """Which rows show which kind at `now` (the counts, and the ids for the filter term `problem KIND`)."""
        size = self._size
        live = self._ids[:size] >= 0
        if self._base is None or not size:
            found = np.zeros((size, COUNT), dtype=bool)
        else:
            found = detect(self._signals[:, :size].T, self.now - self._base, thresholds_vector(self.lens.thresholds))
            found &= live[:, None]
        self._problems = found
        counts = found.sum(axis=0)
        self.problem_counts = {name: int(counts[k]) for k, name in enumerate(KIND_NAMES)}
        if self._uses_problem:
            # the rows whose problems changed since the last detection are matched against the filter again
            previous = self._problems_matched
            if previous is None:
                self._match[:size] = -1
            else:  # (slots past the previous detection's are new: not matched yet anyway)
                n = min(len(previous), size)
                self._match[np.flatnonzero((found[:n] != previous[:n]).any(axis=1))] = -1
            self._problems_matched = found
            slots = self._slot
            self.lens.flagged = lambda conn_id, k: bool(found[slots[conn_id], k])
        return self.problem_counts

    def problem_rows(self, kind: str | None = None, limit: int = 1000) -> list[tuple[str, ConnRow, float]]:
        """(kind, row, since) of the problems found at the last detection, of one kind or all, the oldest first."""
        found = self._problems
        out: list[tuple[float, str, ConnRow]] = []
        for k, name in enumerate(KIND_NAMES):
            if kind is not None and name != kind:
                continue
            slots = np.flatnonzero(found[:, k])
            if not len(slots):
                continue
            since = self._signals[k, slots]
            if len(slots) > limit:  # the `limit` oldest, without sorting them all
                keep = np.argpartition(since, limit - 1)[:limit]
                slots, since = slots[keep], since[keep]
            order = np.argsort(since, kind="stable")
            for slot, t in zip(slots[order].tolist(), since[order].tolist(), strict=True):
                out.append((t, name, self.rows[int(self._ids[slot])]))
        if kind is None:
            out.sort(key=lambda item: item[0])
        base = self._base or 0.0
        return [(name, row, since + base) for since, name, row in out[:limit]]

    def visible(self) -> list[ConnRow]:
        return [self.rows[i] for i in self.order]
