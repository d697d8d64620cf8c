"""What the connection table shows: the rows the engine handed over, filtered and sorted. No UI import.

The sort and the filter live here, outside the widget, so the widget only draws the visible lines and a test can
check the order without a screen. Numbers are kept in numpy columns indexed by a slot per connection, so a refresh
at a million connections costs a gather and a stable argsort (which finds last second's order nearly sorted), not
a million Python comparisons; filter results are cached per row until the row changes. Columns that do not sort as
numbers (addresses, text) fall back to a Python sort.

Rows arrive as ConnRows (a dict of changes) or, from a session over the compiled core, as records made in C
(engine.rowcols.RowBlock): those are applied a column at a time and kept as records; `rows[id]` makes a ConnRow from
its record when asked (the table asks for the lines it draws).

When a port is reused, the engine replaces the earlier incarnation on its tuple by the new one and hands over its
last row (engine.records.departed_row); the view keeps every ended row until its end time plus the linger time, so
both incarnations stay visible side by side, as any ended connection does.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from itertools import repeat
from operator import attrgetter
from typing import NamedTuple

import numpy as np

from midstat_tui.columns import BY_KEY, COLUMNS
from midstat_tui.engine.groups import (
    GroupTable,
    Interner,
    aggregate,
    categorize,
    row_interners,
    row_raw,
    state_codes,
    state_labels,
)
from midstat_tui.engine.names import NameLookup
from midstat_tui.engine.records import ConnRow
from midstat_tui.engine.rowcols import (
    ZEEK_NAMES,
    RecordStore,
    RowBlock,
    record_keys,
    row_from_values,
    rows_of_records,
    signals_of,
    take_records,
)
from midstat_tui.engine.session import Pulled
from midstat_tui.problems import COUNT, KIND_NAMES, NONE, WIDTH, Lens, detect, signals, thresholds_vector
from midstat_tui.query import Predicate, compile_query, keywords_used
from midstat_tui.query_columns import vec_of

NUMERIC = ("shard", "cstate", "sstate", "first", "last", "packets_c2s", "packets_s2c", "bytes_c2s", "bytes_s2c",
           "rtt_s", "retrans_packets", "midstream", "rst_alerts")
_NUMBERS = attrgetter(*NUMERIC)
_NUMBERS_DTYPE = np.dtype((np.float64, len(NUMERIC)))
RATES = ("rate_c2s", "rate_s2c")           # bytes/s each way over the last RATE_WINDOW seconds: per slot, not in rows
RATE_WINDOW = 5.0
IPV4_ENDPOINT = len("255.255.255.255:65535")
# groupings whose key a connection keeps all its life: coded once, when its row arrives (zeek: at every change);
# rows that arrive as records (engine.rowcols) are coded when a grouping or a filter first asks for the codes
FIXED_KEYS = ("server", "server-host", "client-host", "vlan")


def _grown(column: np.ndarray, size: int, fill: float = 0) -> np.ndarray:
    """A column (the last axis: the slots) at a new size, the new slots `fill`."""
    shape = (*column.shape[:-1], size)
    out = np.zeros(shape, dtype=column.dtype) if fill == 0 else np.full(shape, fill, dtype=column.dtype)
    out[..., :column.shape[-1]] = column
    return out


class _Rows(Mapping):
    """The view's rows by id, as ConnRows: those handed over as records are made when first looked at."""

    def __init__(self, view: ConnView) -> None:
        self._view = view

    def __getitem__(self, conn_id: int) -> ConnRow:
        return self._view._row(conn_id)

    def __contains__(self, conn_id: object) -> bool:
        return conn_id in self._view._slot

    def __len__(self) -> int:
        return len(self._view._slot)

    def __iter__(self) -> Iterator[int]:
        return iter(self._view._slot)


class _Traffic(NamedTuple):
    """The bytes one refresh added, per connection that moved: kept while inside the rate window."""

    prev: float              # the refresh before (the interval is prev..now)
    now: float
    slots: np.ndarray
    ids: np.ndarray
    c2s: np.ndarray
    s2c: np.ndarray


class ConnView:
    def __init__(self) -> None:
        self.rows: Mapping[int, ConnRow] = _Rows(self)
        # the rows as ConnRows: those handed over so, and those made from records once asked for; a row that
        # arrived as a record and is not here is its slot's record in `_recs`
        self._objs: dict[int, ConnRow] = {}
        self._recs: RecordStore | None = None  # per slot: the rows handed over as records (engine.rowcols)
        self._unkeyed: list[tuple[np.ndarray, np.ndarray]] = []  # (slots, ids) of records not coded in FIXED_KEYS
        self._keys_wanted = False  # something read the FIXED_KEYS codes: records are coded as they arrive
        self._zeek_lut = np.full(len(ZEEK_NAMES), -1, dtype=np.int64)  # a record's Zeek state -> its code
        self._order_array = np.zeros(0, dtype=np.int64)  # ids in display order (`order`: as a list, made on demand)
        self._order_list: list[int] | None = []
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
        self._end_ts = np.zeros(0, dtype=np.float64)       # NaN: not ended
        self._match = np.zeros(0, dtype=np.int8)          # -1 unknown, 0 no, 1 yes
        self._cols = {name: np.zeros(0, dtype=np.float64) for name in (*NUMERIC, *RATES)}
        self._reset_col = np.zeros(0, dtype=bool)     # an RST was seen on the connection
        self._category = np.zeros(0, dtype=np.int8)   # groups.categorize: open, handshake... of each row
        self._marks = np.zeros(0, dtype=np.int8)
        self._ports = {"c_port": np.zeros(0, dtype=np.int32), "s_port": np.zeros(0, dtype=np.int32)}
        self._key_tests: dict[tuple[str, int], tuple[Callable, int, np.ndarray]] = {}
        self._host_ints: dict[str, tuple[np.ndarray, list[tuple[int, int]]]] = {}  # per host interner: IPv4 as ints
        self._interners: dict[str, Interner] = row_interners()
        self._codes = {key: np.zeros(0, dtype=np.int64) for key in self._interners}
        self._state_labels = state_labels()
        self._shown = np.zeros(0, dtype=np.int64)     # the slots that passed the filter, in display order
        self.pin: tuple[str, int, str] | None = None  # only one group's connections: (grouping, code, label)
        # rates: the bytes each connection moved in the window (sums of _window's entries), and the entries
        self._win = (np.zeros(0, dtype=np.float64), np.zeros(0, dtype=np.float64))
        self._window: deque[_Traffic] = deque()
        self._rate_since: float | None = None         # None: the next refresh is a baseline (start, after a seek)
        self._counting = False                        # this pull's changes count towards the rates
        # the span the rate columns were last divided by (None: divide them all next time): while it holds and no
        # entry leaves the window, only the slots whose window sums changed are divided again (a flood's slices)
        self._rate_span: float | None = None
        self._order_slots = np.zeros(0, dtype=np.int64)
        self._order_ids = np.zeros(0, dtype=np.int64)
        self._new_slots: list[int] = []
        self._new_slot_runs: list[np.ndarray] = []   # the new slots of rows handed over as records, an array a slice
        # the highest id ever given a slot since the last reset: a record with a higher id is new (ids grow), found
        # without a look in `_slot` (a flood's slices: every row new)
        self._top_id = -1
        self._dropped = False                         # a slot was let go since the last recompute
        # pulls taken and not yet applied (take / catch_up), the first one's changes iterated as they are applied
        self._backlog: deque[tuple[Pulled, deque[list] | None]] = deque()
        self._applied_of_first = 0
        # the problems lens: every slot's signals (problems.signals), float32 times relative to `_base`; the
        # detection at `now` is redone on the matrix at each recompute (a few vector operations at 1M rows)
        self.lens = Lens()
        self.names = NameLookup()  # the host names the filter term `name` reads (the app points it at the map)
        self._base: float | None = None
        # column-major (WIDTH x slots): detect reads whole columns
        self._signals = np.full((WIDTH, 0), np.nan, dtype=np.float32)
        self._problems = np.zeros((0, COUNT), dtype=bool)  # per slot and kind, at the last recompute
        self.problem_counts: dict[str, int] = dict.fromkeys(KIND_NAMES, 0)
        self._uses_problem = False
        self._problems_matched: np.ndarray | None = None  # the detection the filter's cached matches were made at

    # -- rows in -------------------------------------------------------------------------------------------------
    def _grow(self, need: int, ahead: bool = False) -> None:
        """Room for `need` slots. `ahead` (a pull of more new rows than half the room: a flood's first seconds):
        room for twice that, so the next such pull fits without a grow (a grow at a million rows copies some 100 MB
        with the face's thread held; the room made ahead is zeros, whose pages are not touched before a row lands
        there)."""
        size = max(1024, len(self._ids))
        while size < (2 * need if ahead else need):
            size *= 2
        if size == len(self._ids):
            return
        # each column made at its new size and the old part copied in: the new part's pages, when zeros, are not
        # touched before a row lands there (a concatenate writes them all: at a million rows, most of a grow)
        self._ids = _grown(self._ids, size, -1)
        self._ended = _grown(self._ended, size)
        self._end_ts = _grown(self._end_ts, size, np.nan)
        if self._recs is not None:
            self._recs.ensure(size)
        self._match = _grown(self._match, size, -1)
        for name, col in self._cols.items():
            self._cols[name] = _grown(col, size)
        # (the new slots' signals are written as a row lands there: a slot below `_size` always has its own, so
        # the new part is left as it comes, untouched, rather than filled with NaN: 56 MB at a million slots)
        signals = np.empty((WIDTH, size), dtype=np.float32)
        signals[:, :self._signals.shape[1]] = self._signals
        self._signals = signals
        self._reset_col = _grown(self._reset_col, size)
        self._category = _grown(self._category, size)
        self._marks = _grown(self._marks, size)
        for name, ports in self._ports.items():
            self._ports[name] = _grown(ports, size)
        for key, codes in self._codes.items():
            self._codes[key] = _grown(codes, size)
        self._win = tuple(_grown(w, size) for w in self._win)  # type: ignore

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
    def replacing(self) -> bool:
        """A whole table (a reset pull: after a seek, a file's end on several cores) is being applied: until it is
        all in, the rows are partly the new table's."""
        return bool(self._backlog) and self._backlog[0][0].reset

    @property
    def behind(self) -> int:
        """Changes taken and not applied yet (a pull's count is known once its application started)."""
        return sum(len(p.changes) for p, _ in self._backlog) - self._applied_of_first

    def catch_up(self, limit: int | None = None) -> bool:
        """Apply the queued changes, at most `limit` rows this call; True once none is left."""
        budget = math.inf if limit is None else limit
        backlog = self._backlog
        while backlog and budget > 0:
            pulled, steps = backlog[0]
            if steps is None:  # its first slice
                self._start(pulled)
                steps = self._steps(pulled.changes)
                backlog[0] = (pulled, steps)
                self._applied_of_first = 0
                if not steps:
                    self._apply_rows(())  # nothing changed: the rates' window still moves on
            while steps and budget > 0:
                step = steps[0]
                kind, items, at = step[:3]
                take = int(min(len(items) - at, budget))
                if kind == "rows":
                    self._apply_rows(items[at:at + take])
                else:
                    if not at:
                        step[3] = self._top_id
                    self._apply_records(items[at:at + take], step[3])
                step[2] = at + take
                if step[2] >= len(items):
                    steps.popleft()
                self._applied_of_first += take
                budget -= take
            if not steps:
                backlog.popleft()
                self._applied_of_first = 0
                if self._recs is not None:
                    self._recs.settle()  # (records kept by reference: rowcols.RecordStore)
                self._leave()
        return not backlog

    def _steps(self, changes) -> deque[list]:
        """A pull's changes as steps applied in order: ["rows", [(id, row), ...], done] or ["recs", records, done,
        the highest id with a slot when the step started] (a RowBlock's parts, each its rows then its records)."""
        if not isinstance(changes, RowBlock):
            return deque([["rows", list(changes.items()), 0]] if changes else [])
        steps: deque[list] = deque()
        records = fresh = 0
        for recs, rows in changes.parts:
            if rows:
                steps.append(["rows", list(rows.items()), 0])
            if len(recs):
                steps.append(["recs", recs, 0, -1])
                records += len(recs)
                fresh += int(np.count_nonzero(recs["id"] > self._top_id))  # surely new (some others may be)
        if records > len(self._free):  # room for the new rows at once (one grow, not one per slice)
            need = self._size + records - len(self._free)
            self._grow(need, ahead=fresh - len(self._free) > len(self._ids) // 2)
        return steps

    def _start(self, pulled: Pulled) -> None:
        if pulled.reset:
            self._objs.clear()
            self._recs = None  # (every row comes again: a new store, which may keep the records by reference)
            self._unkeyed.clear()
            self._slot.clear()
            self._free.clear()
            self._size = 0
            self._ids[:] = -1
            self._order_slots = np.zeros(0, dtype=np.int64)
            self._order_ids = np.zeros(0, dtype=np.int64)
            self._new_slots = []
            self._new_slot_runs = []
            self._top_id = -1
            self._leaving = []
            self.addr_width = IPV4_ENDPOINT
            self.has_vlan = False
            self._window.clear()
        if pulled.reset or self._rate_since is None:  # rates count afresh: this pull is a baseline
            self._rate_since = pulled.position
            self._counting = False
            self._rate_span = None
        else:
            self._counting = True
        self.now = pulled.position

    def _apply_rows(self, changes: Iterable[tuple[int, ConnRow | None]]) -> None:
        rows, slots = self._objs, self._slot
        updated_slots: list[int] = []
        updated_rows: list[ConnRow] = []
        arrived: list[tuple[int, ConnRow]] = []
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
                if conn_id > self._top_id:
                    self._top_id = conn_id
                arrived.append((slot, row))
                # (a connection's addresses and tags never change: looked at when it arrives)
                if len(row.c_addr) == 16 or len(row.s_addr) == 16:
                    self.addr_width = max(self.addr_width, len(row.client), len(row.server))
                if row.vlan:
                    self.has_vlan = True
            rows[conn_id] = row
            updated_slots.append(slot)
            updated_rows.append(row)
            if row.end_ts is not None:
                heapq.heappush(self._leaving, (row.end_ts + self.linger, conn_id))
        if arrived:
            new = np.fromiter((slot for slot, _ in arrived), dtype=np.int64, count=len(arrived))
            for key in FIXED_KEYS:
                code = self._interners[key].code
                self._codes[key][new] = [code(row_raw(key, row)) for _, row in arrived]
            self._ports["c_port"][new] = [row.c_port for _, row in arrived]
            self._ports["s_port"][new] = [row.s_port for _, row in arrived]
            for name in ("bytes_c2s", "bytes_s2c", *RATES):  # a free slot's last values belong to another connection
                self._cols[name][new] = 0.0
            self._win[0][new] = 0.0
            self._win[1][new] = 0.0
        index = np.fromiter(updated_slots, dtype=np.int64, count=len(updated_slots))
        before = (self._cols["bytes_c2s"][index], self._cols["bytes_s2c"][index])
        if updated_slots:
            numbers = np.fromiter(map(_NUMBERS, updated_rows), dtype=_NUMBERS_DTYPE, count=len(updated_rows))
            for i, name in enumerate(NUMERIC):  # one pass over the rows for every numeric column
                self._cols[name][index] = numbers[:, i]
            self._ended[index] = [row.ended is not None for row in updated_rows]
            self._end_ts[index] = [math.nan if row.end_ts is None else row.end_ts for row in updated_rows]
            self._reset_col[index] = [row.rst_by is not None for row in updated_rows]
            cols = self._cols
            self._category[index], self._marks[index] = categorize(
                cols["cstate"][index], cols["sstate"][index], self._reset_col[index], self._ended[index],
                cols["midstream"][index])
            zeek = self._interners["zeek"].code
            self._codes["zeek"][index] = [zeek(row.zeek_state) for row in updated_rows]
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
        self._count_traffic(index, before)

    def _apply_records(self, recs: np.ndarray, top: int | None = None) -> None:
        """`_apply_rows` for rows handed over as records (engine.rowcols): whole columns at a time; no ConnRow is
        made (the table makes those of the lines it draws), the keys that never change are coded when asked.
        `top`: the highest id with a slot when this part of the pull began to be applied. A part holds an id once,
        so an id above it is new (a flood's pull: its ids come in the touched set's order, most of them below the
        highest of the slices before, and none needs a look in `_slot`)."""
        count = len(recs)
        if not count:
            return
        ids = recs["id"]
        if self._objs:  # rows made before (or handed over as rows) are out of date now
            list(map(self._objs.pop, ids.tolist(), repeat(None)))
        known = np.flatnonzero(ids <= (self._top_id if top is None else top))  # (the others are new: no slot)
        index = np.full(count, -1, dtype=np.int64)
        if len(known):
            index[known] = np.fromiter(map(self._slot.get, ids[known].tolist(), repeat(-1)), dtype=np.int64,
                                       count=len(known))
        new = np.flatnonzero(index < 0) if len(known) else np.arange(count)
        if len(new):
            reuse = min(len(new), len(self._free))
            fresh = len(new) - reuse
            taken = self._free[len(self._free) - reuse:][::-1]  # as pop() would hand them out, one by one
            del self._free[len(self._free) - reuse:]
            new_slots = np.concatenate([np.asarray(taken, dtype=np.int64),
                                        np.arange(self._size, self._size + fresh, dtype=np.int64)])
            self._size += fresh
            if self._size > len(self._ids):
                self._grow(self._size)
            index[new] = new_slots
            new_ids = ids[new]
            self._slot.update(zip(new_ids.tolist(), new_slots.tolist(), strict=True))
            self._top_id = max(self._top_id, int(new_ids.max()))
            self._ids[new_slots] = new_ids
            if self._new_slots:  # (kept in the order the slots were given)
                self._new_slot_runs.append(np.array(self._new_slots, dtype=np.int64))
                self._new_slots = []
            self._new_slot_runs.append(new_slots)
            self._unkeyed.append((new_slots, new_ids))
            arrived = recs if len(new) == count else take_records(recs, new)
            wide = np.flatnonzero((arrived["c_len"] == 16) | (arrived["s_len"] == 16))
            for row in rows_of_records(take_records(arrived, wide)):  # IPv6: the address columns widen
                self.addr_width = max(self.addr_width, len(row.client), len(row.server))
            if (arrived["vlan_n"] > 0).any():
                self.has_vlan = True
            self._ports["c_port"][new_slots] = arrived["c_port"]
            self._ports["s_port"][new_slots] = arrived["s_port"]
            for name in ("bytes_c2s", "bytes_s2c", *RATES):  # a free slot's last values belong to another connection
                self._cols[name][new_slots] = 0.0
            self._win[0][new_slots] = 0.0
            self._win[1][new_slots] = 0.0
        if self._recs is None:
            self._recs = RecordStore()
            self._recs.ensure(len(self._ids))
        self._recs.put(index, recs)
        if self._keys_wanted:
            self._key_pending()
        end_ts = recs["end_ts"]
        ended_at = np.flatnonzero(~np.isnan(end_ts))
        if len(ended_at):
            leaving = self._leaving
            leaving.extend(zip((end_ts[ended_at] + self.linger).tolist(), ids[ended_at].tolist(), strict=True))
            heapq.heapify(leaving)
        # the slots as a slice when they follow each other (a flood's new rows): numpy's fastest scatter
        at: np.ndarray | slice = index
        first_slot = int(index[0])
        if int(index[-1]) - first_slot == count - 1 and (count == 1 or bool((np.diff(index) == 1).all())):
            at = slice(first_slot, first_slot + count)
        before = (self._cols["bytes_c2s"][at].copy(), self._cols["bytes_s2c"][at].copy())
        cols = self._cols
        for name in NUMERIC:
            cols[name][at] = recs[name]
        ended = recs["ended"] != 0
        reset = recs["rst_by"] != 0
        self._ended[at] = ended
        self._end_ts[at] = end_ts
        self._reset_col[at] = reset
        self._category[at], self._marks[at] = categorize(recs["cstate"], recs["sstate"], reset, ended,
                                                         recs["midstream"])
        zeek = recs["zeek"]
        lut = self._zeek_lut
        present = np.flatnonzero(np.bincount(zeek, minlength=len(ZEEK_NAMES)))
        if (lut[present] < 0).any():  # a Zeek state not seen before: coded in order of first appearance
            seen, first_at = np.unique(zeek, return_index=True)
            code = self._interners["zeek"].code
            for z in seen[np.argsort(first_at, kind="stable")].tolist():
                lut[z] = code(ZEEK_NAMES[z])
        self._codes["zeek"][at] = lut[zeek]
        self._match[at] = -1
        if self._base is None:
            self._base = float(recs["first"][0])
        sig, some = signals_of(recs)
        every = bool(some.all())
        if not every:
            self._signals[:, at] = np.nan
        if every or some.any():
            if not every:
                sig = sig[some]
            sig -= self._base  # as _apply_rows: times relative to the base, the measures set back
            sig[:, COUNT:WIDTH - 1] += self._base
            self._signals[:, at if every else index[some]] = sig.T
        self._count_traffic(index, before)

    def _key_pending(self) -> None:
        """Code the rows that arrived as records in the groupings of FIXED_KEYS (in the order they arrived). Until
        something asks for those codes (a grouping, a filter on addresses) none is made; from then on each slice's
        new rows are coded as they come, as rows handed over as ConnRows are."""
        self._keys_wanted = True
        if not self._unkeyed:
            return
        pending, self._unkeyed = self._unkeyed, []
        slots = np.concatenate([s for s, _ in pending])
        ids = np.concatenate([i for _, i in pending])
        slots = slots[self._ids[slots] == ids]
        for key, raws in record_keys(self._recs.take(slots)).items():  # type: ignore[union-attr]
            code = self._interners[key].code
            self._codes[key][slots] = [code(raw) for raw in raws]

    def _row(self, conn_id: int) -> ConnRow:
        row = self._objs.get(conn_id)
        if row is None:
            slot = self._slot[conn_id]
            row = self._objs[conn_id] = row_from_values(self._recs.one(slot))  # type: ignore[union-attr]
        return row

    def _count_traffic(self, index: np.ndarray, before: tuple[np.ndarray, np.ndarray]) -> None:
        """Rates: what each changed connection moved since the last refresh joins the window; what left the window
        (older than RATE_WINDOW) is taken back out."""
        now = self.now
        if not self._counting:  # the first pull, or the first after a seek (in one slice or several): a baseline
            return
        c2s = self._cols["bytes_c2s"][index] - before[0]
        s2c = self._cols["bytes_s2c"][index] - before[1]
        moved = (c2s != 0) | (s2c != 0)
        index, c2s, s2c = index[moved], c2s[moved], s2c[moved]
        self._win[0][index] += c2s
        self._win[1][index] += s2c
        prev = self._window[-1].now if self._window else self._rate_since
        self._window.append(_Traffic(prev, now, index, self._ids[index], c2s, s2c))
        window = self._window
        whole = self._rate_span is None
        while len(window) > 1 and window[0].now <= now - RATE_WINDOW:
            whole = True
            old = window.popleft()
            same = self._ids[old.slots] == old.ids  # a slot since given to another connection keeps its own
            self._win[0][old.slots[same]] -= old.c2s[same]
            self._win[1][old.slots[same]] -= old.s2c[same]
        span = now - window[0].prev
        if span <= 0:
            self._rate_span = None
        elif whole or span != self._rate_span:
            np.divide(self._win[0], span, out=self._cols["rate_c2s"])
            np.divide(self._win[1], span, out=self._cols["rate_s2c"])
            self._rate_span = span
        elif len(index):
            self._cols["rate_c2s"][index] = self._win[0][index] / span
            self._cols["rate_s2c"][index] = self._win[1][index] / span

    def rate(self, key: str, conn_id: int) -> float:
        """A connection's bytes/s one way (key rate_c2s or rate_s2c) over the last RATE_WINDOW seconds."""
        slot = self._slot.get(conn_id)
        return 0.0 if slot is None else float(self._cols[key][slot])

    def _leave(self) -> None:
        """Drop the ended rows whose linger time is over."""
        slots, end_ts = self._slot, self._end_ts
        leaving = self._leaving
        while leaving and leaving[0][0] <= self.now:
            leave, conn_id = heapq.heappop(leaving)
            slot = slots.get(conn_id)
            if slot is not None and end_ts[slot] + self.linger <= self.now:  # (NaN: not ended, never true)
                self._drop(conn_id)

    def _drop(self, conn_id: int) -> None:
        slot = self._slot.pop(conn_id)
        self._signals[:, slot] = np.nan
        self._objs.pop(conn_id, None)
        self._ids[slot] = -1
        self._free.append(slot)
        self._dropped = True

    # -- what to show --------------------------------------------------------------------------------------------
    def set_query(self, text: str) -> None:
        """Raises QueryError (with the position) and keeps the previous filter if the text does not parse."""
        predicate = compile_query(text, self.lens, self.names) if text.strip() else None
        self._uses_problem = predicate is not None and "problem" in keywords_used(text)
        self._problems_matched = None
        self.query = text.strip()
        self._predicate = predicate
        self._key_tests.clear()
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

    def recompute(self, sort: bool = True) -> None:
        """Sort every live row, starting from last time's order so the stable sort mostly finds it in place;
        then keep the rows the filter and the ended switch let through. `sort=False` (the grouped view, where the
        connections are not on screen) keeps last time's order, new rows at the end."""
        ids = self._ids
        prev = self._order_slots
        # a slot of last time's order may since have been let go (and given to another connection): only then look
        dropped = self._dropped
        still = prev[ids[prev] == self._order_ids] if len(prev) and dropped else prev
        self._dropped = False
        fresh = np.fromiter(self._new_slots, dtype=np.int64, count=len(self._new_slots))
        if self._new_slot_runs:  # the records' new slots, given before those in the list
            fresh = np.concatenate([*self._new_slot_runs, fresh])
        self._new_slots = []
        self._new_slot_runs = []
        fresh = fresh[ids[fresh] >= 0]
        if dropped and len(fresh) > 1:
            # a slot new since the last time, let go and given to another new row (a reused port's departed
            # incarnation and its successor in one pull): listed twice, shown once (its last arrival's place)
            last = np.full(len(ids), -1, dtype=np.int64)
            at = np.arange(len(fresh), dtype=np.int64)
            np.maximum.at(last, fresh, at)
            fresh = fresh[last[fresh] == at]
        cand = np.concatenate([still, fresh]) if len(fresh) else still
        column = BY_KEY[self.sort_key]
        descending = self.sort_reverse != column.flip
        if not sort:
            pass
        elif len(column.fields) == 1 and column.fields[0] in self._cols:
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
            unknown = shown[match[shown] < 0]
            if len(unknown):  # the rows that changed since, or every row for a new filter: on the columns
                match[unknown] = vec_of(predicate)(self, unknown)
            shown = shown[match[shown] == 1]
        self._shown = shown
        if self.pin is not None:
            grouping, code, _ = self.pin
            shown = shown[self._group_codes(grouping, shown) == code]
        self._order_array = ids[shown]
        self._order_list = None  # a million ids as a list cost tens of ms: made when asked (not in grouped views)
        self.version += 1

    @property
    def order(self) -> list[int]:
        """The ids shown, in display order."""
        if self._order_list is None:
            self._order_list = self._order_array.tolist()
        return self._order_list

    @property
    def shown_count(self) -> int:
        return len(self._order_array)

    def id_at(self, index: int) -> int:
        """The id shown at a position of the display order (0 <= index < shown_count)."""
        return int(self._order_array[index])

    def index_of(self, conn_id: int) -> int | None:
        """Where a connection is in the display order (None: not shown): one pass over the array, in C."""
        found = np.flatnonzero(self._order_array == conn_id)
        return int(found[0]) if len(found) else None

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

    # -- groups ----------------------------------------------------------------------------------------------------
    def _group_codes(self, grouping: str, slots: np.ndarray) -> np.ndarray:
        self._key_pending()
        if grouping == "states":
            return state_codes(self._cols["cstate"][slots], self._cols["sstate"][slots])
        return self._codes[grouping][slots]

    def groups(self, grouping: str) -> GroupTable:
        """The groups of the connections the filter and the ended switch let through (as of the last recompute;
        a pinned group does not narrow them), not sorted yet (GroupTable.sort). The whole columns go in, the rows
        not shown under a code of no group: a scatter of the shown slots instead of a gather of every column."""
        self._key_pending()
        labels = self._state_labels if grouping == "states" else self._interners[grouping].labels
        capacity = len(self._ids)
        codes = np.full(capacity, len(labels), dtype=np.int64)
        codes[self._shown] = self._group_codes(grouping, self._shown)
        cols = {"pkts_c2s": self._cols["packets_c2s"], "pkts_s2c": self._cols["packets_s2c"],
                "bytes_c2s": self._cols["bytes_c2s"], "bytes_s2c": self._cols["bytes_s2c"]}
        cols["category"] = self._category
        cols["marks"] = self._marks
        rates = (self._cols["rate_c2s"], self._cols["rate_s2c"])
        return aggregate(grouping, codes, labels, cols, rates, sort=False)

    # -- the filter on the columns (query_columns.ColumnSource) ---------------------------------------------------
    def column(self, name: str) -> np.ndarray:
        if name in self._ports:
            return self._ports[name]
        if name == "ended":
            return self._ended
        return self._cols[name]

    def codes(self, grouping: str) -> np.ndarray:
        self._key_pending()
        return self._codes[grouping]

    def key_codes(self, grouping: str, wanted: Callable[[Hashable], bool]) -> np.ndarray:
        """The codes of the keys a test accepts, each key tested once (keys seen since are tested as they come)."""
        self._key_pending()
        raws = self._interners[grouping].raws
        cache = self._key_tests.get((grouping, id(wanted)))
        seen, codes = (cache[1], cache[2]) if cache is not None and cache[0] is wanted else (0, np.zeros(0, np.int64))
        if seen < len(raws):
            more = np.fromiter((i for i in range(seen, len(raws)) if wanted(raws[i])), dtype=np.int64)
            codes = np.concatenate([codes, more]) if len(more) else codes
            self._key_tests[(grouping, id(wanted))] = (wanted, len(raws), codes)
        return codes

    def code_of(self, grouping: str, raw: Hashable) -> int:
        self._key_pending()
        return self._interners[grouping].codes.get(raw, -1)

    def host_codes_in(self, grouping: str, size: int, low: int, high: int) -> np.ndarray:
        """The codes of the addresses (server-host or client-host) of `size` bytes within [low, high]: IPv4 as
        one comparison over an array of every address seen, IPv6 one by one over the IPv6 ones only."""
        self._key_pending()
        raws = self._interners[grouping].raws
        ints, v6 = self._host_ints.get(grouping, (np.zeros(0, dtype=np.int64), []))
        if len(ints) < len(raws):
            seen = len(ints)
            more = [int.from_bytes(raw, "big") if len(raw) == 4 else -1 for raw in raws[seen:]]  # type: ignore
            v6 = v6 + [(seen + i, int.from_bytes(raws[seen + i], "big"))  # type: ignore[arg-type]
                       for i, value in enumerate(more) if value < 0]
            ints = np.concatenate([ints, np.asarray(more, dtype=np.int64)])
            self._host_ints[grouping] = (ints, v6)
        if size == 4:
            return np.flatnonzero((ints >= low) & (ints <= high))
        return np.asarray([code for code, value in v6 if low <= value <= high], dtype=np.int64)

    def problems(self) -> np.ndarray:
        """Per slot and kind: the problems found at the last detection (at `now`), for the term `problem KIND`."""
        return self._problems

    def rows_at(self, slots: np.ndarray) -> list[ConnRow]:
        row = self._row
        return [row(i) for i in self._ids[slots].tolist()]
