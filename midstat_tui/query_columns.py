"""The filter evaluated on the view's columns: each term of a compiled query (query.py) may carry a `vec`, a function
(columns, slots) -> a bool array saying which of those rows match, made of numpy operations over whole columns.
A term without one (a bare word, a term added later) is evaluated row by row, on the rows still undecided only.
No UI import; the view (view.ConnView) is the ColumnSource.

Applying a new filter to a million rows is then a few passes over arrays (tens of ms), not a million Python calls.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Protocol

from midstat_tui.engine.records import ConnRow
from midstat_tui.lazy_imports import numpy as np  # loaded on first use (a start without it: issue #11)


class ColumnSource(Protocol):
    def column(self, name: str) -> np.ndarray: ...          # per slot: cstate sstate c_port s_port midstream ended
    def codes(self, grouping: str) -> np.ndarray: ...       # per slot: the code of its key in that grouping
    def key_codes(self, grouping: str, wanted: Callable[[Hashable], bool]) -> np.ndarray: ...  # codes whose raw key
    def code_of(self, grouping: str, raw: Hashable) -> int: ...  # a key's code, -1 if never seen
    def host_codes_in(self, grouping: str, size: int, low: int, high: int) -> np.ndarray: ...  # addresses in a range
    def rows_at(self, slots: np.ndarray) -> list[ConnRow]: ...
    def problems(self) -> np.ndarray: ...  # per slot and problem kind (problems.KINDS order): found at its moment


Vec = Callable[[ColumnSource, "np.ndarray"], "np.ndarray"]
Predicate = Callable[[ConnRow], bool]


def with_vec(pred: Predicate, vec: Vec) -> Predicate:
    pred.vec = vec  # type: ignore[attr-defined]
    return pred


def timed(pred: Callable[..., bool], vec: Vec) -> Predicate:
    """A term judged at a moment: `pred(row, now=None)`; its column form reads the source's own moment."""
    pred.timed = True  # type: ignore[attr-defined]
    return with_vec(pred, vec)


def is_timed(*preds: Predicate) -> bool:
    return any(getattr(p, "timed", False) for p in preds)


def timed_parts(preds: list[Predicate]) -> list[Callable[..., bool]]:
    """Each as `p(row, now=None)`: a term that ignores the moment is wrapped (only where the moment is passed on)."""
    out = []
    for p in preds:
        if is_timed(p):
            out.append(p)
            continue
        out.append(timed(lambda conn, now=None, p=p: p(conn), vec_of(p)))
    return out


def problem(kind: int | None) -> Vec:
    """Rows showing a problem kind (None: any kind) in the source's detection."""
    if kind is None:
        return lambda src, slots: src.problems()[slots].any(axis=1)
    return lambda src, slots: src.problems()[slots, kind]


def vec_of(pred: Predicate) -> Vec:
    """A term's column form, or its row-by-row one on the rows given."""
    vec = getattr(pred, "vec", None)
    if vec is not None:
        return vec

    def rows(src: ColumnSource, slots: np.ndarray) -> np.ndarray:
        return np.fromiter(map(pred, src.rows_at(slots)), dtype=bool, count=len(slots))

    return rows


def all_of(parts: list[Predicate]) -> Vec:
    vecs = [vec_of(p) for p in parts]

    def vec(src: ColumnSource, slots: np.ndarray) -> np.ndarray:
        result = np.ones(len(slots), dtype=bool)
        pending = np.arange(len(slots))
        for v in vecs:  # each next term only on the rows still in: a slow term sees few rows after a fast one
            if not len(pending):
                break
            hit = v(src, slots[pending])
            result[pending[~hit]] = False
            pending = pending[hit]
        return result

    return vec


def any_of(parts: list[Predicate]) -> Vec:
    vecs = [vec_of(p) for p in parts]

    def vec(src: ColumnSource, slots: np.ndarray) -> np.ndarray:
        result = np.zeros(len(slots), dtype=bool)
        pending = np.arange(len(slots))
        for v in vecs:
            if not len(pending):
                break
            hit = v(src, slots[pending])
            result[pending[hit]] = True
            pending = pending[~hit]
        return result

    return vec


def none_of(inner: Predicate) -> Vec:
    v = vec_of(inner)
    return lambda src, slots: ~v(src, slots)


def flag(name: str) -> Vec:
    return lambda src, slots: src.column(name)[slots] > 0


def in_range(name: str, low: float, high: float) -> Vec:
    def vec(src: ColumnSource, slots: np.ndarray) -> np.ndarray:
        values = src.column(name)[slots]
        return (values >= low) & (values <= high)

    return vec


def either(a: Vec, b: Vec) -> Vec:
    return lambda src, slots: a(src, slots) | b(src, slots)


def both(a: Vec, b: Vec) -> Vec:
    return lambda src, slots: a(src, slots) & b(src, slots)


def keyed(grouping: str, wanted: Callable[[Hashable], bool]) -> Vec:
    """Rows whose key in a grouping (server-host, client-host, vlan, zeek) is one the test accepts: the test runs
    once per distinct key, not per row."""
    def vec(src: ColumnSource, slots: np.ndarray) -> np.ndarray:
        return np.isin(src.codes(grouping)[slots], src.key_codes(grouping, wanted))

    return vec


def exact(grouping: str, raw: Hashable) -> Vec:
    """Rows whose key in a grouping is this one: one dictionary look-up, then a comparison of the codes."""
    def vec(src: ColumnSource, slots: np.ndarray) -> np.ndarray:
        return src.codes(grouping)[slots] == src.code_of(grouping, raw)

    return vec


def in_net(grouping: str, size: int, low: int, high: int) -> Vec:
    """Rows whose address (server-host or client-host) is within [low, high], of that size (4 or 16 bytes)."""
    def vec(src: ColumnSource, slots: np.ndarray) -> np.ndarray:
        return np.isin(src.codes(grouping)[slots], src.host_codes_in(grouping, size, low, high))

    return vec
