"""Row changes as columns: the TUI's bulk hand-off from the engine to the connection view.

A face is told, once a second, the rows of the connections that changed (engine.driver.RowChanges: a dict of
ConnRow). In a flood that is hundreds of thousands of rows a second, and a ConnRow costs microseconds to build and
as many to take apart again. With the compiled core the rows are never built as Python objects on that path: the
core fills one fixed-size record per connection straight from its C structs into a numpy array (`_core.row_cols`,
the ConnRow's fields under the same names), and the view (midstat_tui.conn_view) takes whole columns of it; a
ConnRow is made only for a row somebody looks at (`row_at`: the lines drawn, a flow's screen, an export).

`RowBlock` is such a batch of changes: the records, plus a dict for what stays a Python row (a removed connection:
None; a reused port's earlier incarnation; a record the core cannot hold, such as a long Zeek history). It reads as
the dict of changes it replaces (a Mapping id -> ConnRow | None), so code that iterates changes still works.
Without the compiled core nothing here is used (`available()` is False) and the rows go as dicts of ConnRow.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

import numpy as np

from midstat_tui.engine.driver import RowChanges
from midstat_tui.engine.records import ConnRow, row_of

if TYPE_CHECKING:
    from midstat_tui.engine.pipeline import Engine
    from midstat_tui.tcp.connection import Connection

try:
    from midstat_tui import _core
    _LAYOUT = _core.row_layout()
except (ImportError, AttributeError):  # no compiled core (or an older build): rows go as Python objects
    _core = None  # type: ignore[assignment]
    _LAYOUT = None

# Zeek's conn_state by the record's code (the order of the core's ZK_ codes); the record's `ended` and `rst_by` are
# 1 + the index of their text here (0: None)
ZEEK_NAMES = ("S0", "S1", "SF", "REJ", "S2", "S3", "RSTO", "RSTR", "RSTOS0", "RSTRH", "SH", "SHR", "OTH")
ENDED_NAMES = ("closed", "reset", "time_wait_expired", "idle_timeout", "port_reuse", "evicted", "bad_flags")
RST_NAMES = ("client", "server")
_ENDED = (None, *ENDED_NAMES)
_RST = (None, *RST_NAMES)


def _dtype() -> np.dtype | None:
    if _LAYOUT is None:
        return None
    size, fields, _ = _LAYOUT
    names, formats, offsets = [], [], []
    for name, kind, offset in fields:
        if name == "vlan":  # two tags as two columns: a record's tolist() then gives plain ints
            names += ["vlan0", "vlan1"]
            formats += ["<u4", "<u4"]
            offsets += [offset, offset + 4]
        elif name in ("c_addr", "s_addr"):  # raw bytes (an "S" column would drop trailing zero bytes)
            names.append(name)
            formats.append("V16")
            offsets.append(offset)
        else:
            names.append(name)
            formats.append(kind)
            offsets.append(offset)
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": size})


ROW_DTYPE = _dtype()
SIGNAL_WIDTH = _LAYOUT[2] if _LAYOUT is not None else 0
_NAMES = ROW_DTYPE.names if ROW_DTYPE is not None else ()
_AT = {name: i for i, name in enumerate(_NAMES)}


def available() -> bool:
    return ROW_DTYPE is not None


def _nan_none(value: float) -> float | None:
    return None if value != value else value


if ROW_DTYPE is not None:
    (_I_ID, _I_FIRST, _I_LAST, _I_END, _I_RTT, _I_RTT_C, _I_RTT_S, _I_SINCE_C, _I_SINCE_S, _I_ZW_C, _I_ZW_S,
     _I_DATA_C, _I_DATA_S, _I_TS_C, _I_TS_S, _I_PK_C, _I_PK_S, _I_BY_C, _I_BY_S, _I_PAY_C, _I_PAY_S, _I_RB_C,
     _I_RB_S, _I_RP, _I_RP_C, _I_RP_S, _I_OOO_C, _I_OOO_S, _I_ZWIN_C, _I_ZWIN_S, _I_SUSP, _I_ODD_RST, _I_BADF,
     _I_BADC, _I_TRANS, _I_ALERTS, _I_SHARD, _I_VLAN0, _I_VLAN1, _I_CPORT, _I_SPORT, _I_CADDR, _I_SADDR, _I_CLEN,
     _I_SLEN, _I_CSTATE, _I_SSTATE, _I_VLAN_N, _I_MID, _I_ENDED, _I_RST_BY, _I_ZEEK, _I_HLEN, _I_ODD,
     _I_HIST) = range(len(_NAMES))
    assert _NAMES[_I_HIST] == "history" and _NAMES[_I_CADDR] == "c_addr", _NAMES


_make_row = tuple.__new__


def row_from_values(v: tuple) -> ConnRow:
    """The ConnRow of one record, given as its tuple of values (a record array's tolist() item)."""
    n = v[_I_VLAN_N]
    vlan = () if not n else (v[_I_VLAN0],) if n == 1 else (v[_I_VLAN0], v[_I_VLAN1])
    return _make_row(ConnRow, (
        v[_I_ID], v[_I_SHARD], v[_I_CADDR][:v[_I_CLEN]], v[_I_CPORT], v[_I_SADDR][:v[_I_SLEN]], v[_I_SPORT], vlan,
        v[_I_CSTATE], v[_I_SSTATE], v[_I_FIRST], v[_I_LAST], v[_I_PK_C], v[_I_PK_S], v[_I_BY_C], v[_I_BY_S],
        v[_I_RP_C], v[_I_RP_S], v[_I_RP], v[_I_RTT], ZEEK_NAMES[v[_I_ZEEK]], v[_I_HIST][:v[_I_HLEN]].decode("ascii"),
        bool(v[_I_MID]), _ENDED[v[_I_ENDED]], v[_I_ALERTS],
        v[_I_PAY_C], v[_I_PAY_S], v[_I_RB_C], v[_I_RB_S], v[_I_OOO_C], v[_I_OOO_S], v[_I_ZWIN_C], v[_I_ZWIN_S],
        _nan_none(v[_I_RTT_C]), _nan_none(v[_I_RTT_S]), _RST[v[_I_RST_BY]], v[_I_SUSP], v[_I_ODD_RST], v[_I_BADF],
        v[_I_BADC], _nan_none(v[_I_END]), v[_I_TRANS],
        v[_I_SINCE_C], v[_I_SINCE_S], _nan_none(v[_I_ZW_C]), _nan_none(v[_I_ZW_S]), v[_I_DATA_C], v[_I_DATA_S],
        v[_I_TS_C], v[_I_TS_S]))


def rows_of_records(recs: np.ndarray) -> list[ConnRow]:
    return [row_from_values(v) for v in recs.tolist()]


def as_records(recs: np.ndarray) -> np.ndarray:
    """The records in the core's layout (numpy's concatenate of such arrays packs their fields: set back)."""
    return recs if recs.dtype == ROW_DTYPE and recs.dtype.itemsize == ROW_DTYPE.itemsize else recs.astype(ROW_DTYPE)


# Whole records are copied as raw bytes: numpy copies a structured array with padding field by field (some 1.4 µs a
# record for a fancy-indexed assignment, against 0.1 as bytes)
_RAW = np.dtype((np.void, ROW_DTYPE.itemsize)) if ROW_DTYPE is not None else None


def take_records(recs: np.ndarray, index: np.ndarray) -> np.ndarray:
    """recs[index] (an index array or a boolean mask)."""
    return recs.view(_RAW)[index].view(ROW_DTYPE)


class RecordStore:
    """Records by slot (the connection view's), in chunks: growing adds chunks, nothing is copied (a million
    records are 336 MB).

    A put of at least BORROW_MIN records on fresh slots that follow each other (above every slot put before: a
    flood's new rows) is not copied: the store keeps the records' array by reference (a borrowed segment) and the
    chunks' pages for those slots stay untouched. A borrowed segment is copied the first time one of its slots is
    written again (the engine's array is never written here). `settle()` (after each pull) copies the borrowed
    segments of an array of which less than half was borrowed, so that a few borrowed slices do not keep a whole
    pull's records alive."""

    SHIFT = 16
    MASK = (1 << SHIFT) - 1
    BORROW_MIN = 1024

    def __init__(self) -> None:
        self._chunks: list[np.ndarray] = []  # each a raw (void) view of 2**SHIFT records
        self._high = 0  # 1 + the highest slot ever put (0: none)
        # borrowed segments, by first slot: their first slots, their raw records, whether a copy is the store's own
        self._starts: list[int] = []
        self._segs: list[np.ndarray] = []
        self._own: list[bool] = []
        self._bounds: tuple[np.ndarray, np.ndarray] | None = None  # (starts, ends) as arrays, made when needed
        self._lent: dict[int, list] = {}  # id of a borrowed array's root -> [root, borrowed bytes] (since settle)

    def ensure(self, size: int) -> None:
        while len(self._chunks) << self.SHIFT < size:
            self._chunks.append(np.zeros(1 << self.SHIFT, dtype=ROW_DTYPE).view(_RAW))

    @property
    def borrowed(self) -> int:
        """How many records are held by reference (not copied yet)."""
        return sum(len(seg) for seg, own in zip(self._segs, self._own, strict=True) if not own)

    def _parts(self, slots: np.ndarray) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """(chunk, positions in `slots`; None: all of them) for each chunk the slots fall in."""
        chunk_of = slots >> self.SHIFT
        low, high = int(chunk_of.min()), int(chunk_of.max())
        if low == high:
            return [(self._chunks[low], None)]
        return [(self._chunks[c], np.flatnonzero(chunk_of == c)) for c in np.unique(chunk_of).tolist()]

    def _in_segments(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the segment of each slot, -1: none; positions of the slots in a segment)."""
        if self._bounds is None:
            starts = np.array(self._starts, dtype=np.int64)
            self._bounds = (starts, starts + np.array([len(s) for s in self._segs], dtype=np.int64))
        starts, ends = self._bounds
        seg = np.searchsorted(starts, slots, side="right") - 1
        inside = seg >= 0
        inside[inside] = slots[inside] < ends[seg[inside]]
        seg[~inside] = -1
        return seg, np.flatnonzero(inside)

    @staticmethod
    def _groups(seg: np.ndarray, at: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        """(segment, positions) for each segment the positions `at` fall in."""
        segs = seg[at]
        order = np.argsort(segs, kind="stable")
        at, segs = at[order], segs[order]
        cuts = np.flatnonzero(np.diff(segs)) + 1
        for part in np.split(at, cuts):
            yield int(seg[part[0]]), part

    def put(self, slots: np.ndarray, recs: np.ndarray) -> None:
        if not len(slots):
            return
        raw = recs.view(_RAW)
        first, last = int(slots[0]), int(slots[-1])
        count = len(slots)
        if first >= self._high and count >= self.BORROW_MIN and last - first == count - 1 and \
                (count == 1 or bool((np.diff(slots) == 1).all())):
            self._starts.append(first)
            self._segs.append(raw)
            self._own.append(False)
            self._bounds = None
            root = raw
            while isinstance(root.base, np.ndarray):
                root = root.base
            lent = self._lent.setdefault(id(root), [root, 0])
            lent[1] += raw.nbytes
            self._high = last + 1
            return
        self._high = max(self._high, int(slots.max()) + 1)
        if self._segs:
            seg, inside = self._in_segments(slots)
            if len(inside):
                for s, at in self._groups(seg, inside):
                    if not self._own[s]:  # written again: the store's own copy from now on
                        self._segs[s] = self._segs[s].copy()
                        self._own[s] = True
                    self._segs[s][slots[at] - self._starts[s]] = raw[at]
                if len(inside) == count:
                    return
                rest = np.flatnonzero(seg < 0)
                slots, raw = slots[rest], raw[rest]
        for chunk, at in self._parts(slots):
            if at is None:
                low = int(slots[0]) & self.MASK
                if int(slots[-1]) - int(slots[0]) == len(slots) - 1 and bool((np.diff(slots) == 1).all()):
                    chunk[low:low + len(slots)] = raw  # slots that follow each other (a flood's): one copy
                else:
                    chunk[slots & self.MASK] = raw
            else:
                chunk[slots[at] & self.MASK] = raw[at]

    def settle(self) -> None:
        """The borrowed segments of an array less than half borrowed are copied (the array can go)."""
        lent, self._lent = self._lent, {}
        thin = {key for key, (root, size) in lent.items() if 2 * size < root.nbytes}
        if not thin:
            return
        for s, seg in enumerate(self._segs):
            if self._own[s]:
                continue
            root = seg
            while isinstance(root.base, np.ndarray):
                root = root.base
            if id(root) in thin:
                self._segs[s] = seg.copy()
                self._own[s] = True

    def take(self, slots: np.ndarray) -> np.ndarray:
        out = np.empty(len(slots), dtype=_RAW)
        if len(slots):
            rest: np.ndarray | None = None
            if self._segs:
                seg, inside = self._in_segments(slots)
                for s, at in self._groups(seg, inside) if len(inside) else ():
                    out[at] = self._segs[s][slots[at] - self._starts[s]]
                if len(inside) == len(slots):
                    return out.view(ROW_DTYPE)
                if len(inside):
                    rest = np.flatnonzero(seg < 0)
            if rest is None:
                for chunk, at in self._parts(slots):
                    if at is None:
                        out[:] = chunk[slots & self.MASK]
                    else:
                        out[at] = chunk[slots[at] & self.MASK]
            else:
                sub = slots[rest]
                for chunk, at in self._parts(sub):
                    where = rest if at is None else rest[at]
                    out[where] = chunk[(sub if at is None else sub[at]) & self.MASK]
        return out.view(ROW_DTYPE)

    def one(self, slot: int) -> tuple:
        if self._segs:
            s = bisect_right(self._starts, slot) - 1
            if s >= 0 and slot - self._starts[s] < len(self._segs[s]):
                at = slot - self._starts[s]
                return self._segs[s][at:at + 1].view(ROW_DTYPE)[0].item()
        return self._chunks[slot >> self.SHIFT][slot & self.MASK:(slot & self.MASK) + 1].view(ROW_DTYPE)[0].item()


# records filled per call into the core: a flood's hundreds of thousands of rows are made in several calls, so the
# face's thread gets the interpreter between two (a call holds it: some 5-10 ms for this many)
CHUNK = 16_384


def record_keys(recs: np.ndarray) -> dict[str, list]:
    """The raw keys of the groupings a connection keeps all its life (engine.groups.row_raw: server, server-host,
    client-host, vlan) of each record, without making its row."""
    c_addr = [a[:n] for a, n in zip(recs["c_addr"].tolist(), recs["c_len"].tolist(), strict=True)]
    s_addr = [a[:n] for a, n in zip(recs["s_addr"].tolist(), recs["s_len"].tolist(), strict=True)]
    vlan = [() if not n else (a,) if n == 1 else (a, b)
            for n, a, b in zip(recs["vlan_n"].tolist(), recs["vlan0"].tolist(), recs["vlan1"].tolist(), strict=True)]
    return {"server": list(zip(s_addr, recs["s_port"].tolist(), strict=True)), "server-host": s_addr,
            "client-host": c_addr, "vlan": vlan}


def records_of(conns: list) -> tuple[np.ndarray, np.ndarray]:
    """The records of these connections, in order, and which of them (a bool per record) need a Python row."""
    count = len(conns)
    recs = np.empty(count, dtype=ROW_DTYPE)
    odd = 0
    for start in range(0, count, CHUNK):
        odd += _core.row_cols(conns[start:start + CHUNK], recs[start:start + CHUNK], ENDED_NAMES, RST_NAMES)
    return recs, (recs["odd"] != 0) if odd else np.zeros(count, dtype=bool)


def signals_of(recs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """problems.signals of each record: (N x WIDTH float64, NaN where none; a bool per record: has any)."""
    recs = np.ascontiguousarray(as_records(recs))
    out = np.empty((len(recs), SIGNAL_WIDTH), dtype=np.float64)
    some = np.empty(len(recs), dtype=np.uint8)
    if len(recs):
        _core.row_signals(recs, out, some)
    return out, some.view(bool)


class RowBlock(Mapping):
    """Row changes, to be applied in order: `parts`, each (records, rows) where `rows` maps an id to its ConnRow,
    or None: the connection left. Within a part an id is in the records or in the rows, not both; a later part may
    change an id again (two ticks' changes kept as two parts: merging is appending, nothing is copied), so applying
    the parts in order, each part's rows then its records, gives the latest. Reads as the dict id -> ConnRow | None
    it stands for (made when asked: the bulk path never asks)."""

    def __init__(self, recs: np.ndarray | None = None, rows: dict[int, ConnRow | None] | None = None) -> None:
        self.parts: list[tuple[np.ndarray, dict[int, ConnRow | None]]] = []
        if (recs is not None and len(recs)) or rows:
            self.parts.append((recs if recs is not None else np.zeros(0, dtype=ROW_DTYPE), rows or {}))
        self._flat: dict[int, ConnRow | None] | None = None

    def __len__(self) -> int:
        """How many changes there are to apply (an id changed in two parts counts twice)."""
        return sum(len(recs) + len(rows) for recs, rows in self.parts)

    def _dict(self) -> dict[int, ConnRow | None]:
        if self._flat is None:
            flat: dict[int, ConnRow | None] = {}
            for recs, rows in self.parts:
                flat.update(rows)
                flat.update((row.id, row) for row in rows_of_records(recs))
            self._flat = flat
        return self._flat

    def __iter__(self) -> Iterator[int]:
        return iter(self._dict())

    def __getitem__(self, conn_id: int) -> ConnRow | None:
        return self._dict()[conn_id]

    def items(self):  # type: ignore[override]
        return self._dict().items()

    def update(self, later: Mapping) -> None:
        """Take later changes in (a connection's later change wins)."""
        self._flat = None
        if isinstance(later, RowBlock):
            self.parts.extend(later.parts)
        elif later:
            self.parts.append((np.zeros(0, dtype=ROW_DTYPE), dict(later)))

    def __reduce__(self):
        return (_rebuilt, (self.parts,))


def _rebuilt(parts: list) -> RowBlock:
    block = RowBlock()
    block.parts = parts
    return block


def merged(earlier: Mapping, later: Mapping) -> Mapping:
    """Two ticks' changes as one (the later change of a connection wins): a dict while both are dicts."""
    if isinstance(later, RowBlock) and not isinstance(earlier, RowBlock):
        block = RowBlock(rows=dict(earlier))
        block.update(later)
        return block
    earlier.update(later)  # type: ignore[attr-defined]
    return earlier


class ColumnRowChanges(RowChanges):
    """RowChanges whose `take` gives a RowBlock: the changed connections' rows as records made in C. The
    connections by id (`by_id`) are filed when first asked for (a flood's hundreds of thousands of new ones a
    tick cost the engine's thread 0.1 s a tick to file in the dict; a flow's details or a removal ask seldom)."""

    def __init__(self) -> None:
        self._unfiled: list[tuple[np.ndarray, list]] = []  # (ids, connections) taken and not in the dict yet
        self._by_id: dict[int, Connection] = {}
        super().__init__()

    @property  # type: ignore[override]
    def by_id(self) -> dict[int, Connection]:
        if self._unfiled:
            unfiled, self._unfiled = self._unfiled, []
            by_id = self._by_id
            for ids, conns in unfiled:
                by_id.update(zip(ids.tolist(), conns, strict=True))
        return self._by_id

    @by_id.setter
    def by_id(self, value: dict[int, Connection]) -> None:
        self._unfiled = []
        self._by_id = value

    def take(self, engine: Engine, position: float, reset: bool = False) -> RowBlock:  # type: ignore[override]
        tracker = engine.tracker
        if reset:
            conns = list(tracker.table.values())
            self.by_id = {}  # (filled below, as the records are made)
        else:
            conns = list(tracker.touched or ())
        recs, odd = records_of(conns)
        rows: dict[int, ConnRow | None] = {}
        if odd.any():  # rare: made in Python
            for i in np.flatnonzero(odd).tolist():
                rows[conns[i].id] = row_of(conns[i])
            self.by_id.update((conns[i].id, conns[i]) for i in np.flatnonzero(odd).tolist())
            kept = [conn for conn, o in zip(conns, odd.tolist(), strict=True) if not o]
            recs = take_records(recs, ~odd)
        else:
            kept = conns
        if kept:
            self._unfiled.append((recs["id"].copy(), kept))  # (a copy: a view would keep the records alive)
        if reset:
            rows.update(self.departed_at(position))
        block = RowBlock(recs, rows)
        if not reset:
            removed = self.removed(tracker)
            if removed:
                block.update(removed)
        self.done(tracker, position)
        return block


def row_changes(engine: Engine, columns: bool) -> RowChanges:
    """The RowChanges a session hands its face: as records when asked and the engine's connections are C structs."""
    if columns and available() and getattr(engine.tracker, "compiled", False):
        return ColumnRowChanges()
    return RowChanges()
