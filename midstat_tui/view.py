"""What the connection table shows: the rows the engine handed over, filtered and sorted. No UI import.

The sort and the filter live here, outside the widget, so the widget only draws the visible lines and a test can
check the order without a screen.
"""

from __future__ import annotations

from operator import attrgetter

from midstat_tui.columns import BY_KEY, COLUMNS
from midstat_tui.engine.session import Pulled
from midstat_tui.engine.views import ConnRow
from midstat_tui.query import Predicate, compile_query

_ID = attrgetter("id")


class ConnView:
    def __init__(self) -> None:
        self.rows: dict[int, ConnRow] = {}
        self.order: list[int] = []          # ids in display order
        self.sort_key = "age"
        self.sort_reverse = False
        self.show_ended = True
        self.query = ""
        self._predicate: Predicate | None = None
        self._matches: dict[int, bool] = {}   # filter results, kept until a row changes or the filter does
        self.now = 0.0
        self.version = 0

    def apply(self, pulled: Pulled) -> None:
        rows = self.rows
        matches = self._matches
        if pulled.reset:
            rows.clear()
            matches.clear()
        for conn_id, row in pulled.changes.items():
            matches.pop(conn_id, None)
            if row is None:
                rows.pop(conn_id, None)
            else:
                rows[conn_id] = row
        self.now = pulled.position

    def set_query(self, text: str) -> None:
        """Raises QueryError (with the position) and keeps the previous filter if the text does not parse."""
        predicate = compile_query(text) if text.strip() else None
        self.query = text.strip()
        self._predicate = predicate
        self._matches.clear()

    def sort_by(self, key: str, reverse: bool | None = None) -> None:
        if key not in BY_KEY:
            raise KeyError(key)
        if reverse is None:
            reverse = not self.sort_reverse if key == self.sort_key else False
        self.sort_key = key
        self.sort_reverse = reverse

    def next_sort(self, visible: list[str], step: int = 1) -> None:
        keys = [c.key for c in COLUMNS if c.key in visible]
        i = keys.index(self.sort_key) if self.sort_key in keys else -1
        self.sort_key = keys[(i + step) % len(keys)]

    def recompute(self) -> list[int]:
        """Filter and sort. Rows are taken in the previous display order, so the sort (timsort, stable) mostly finds
        runs already in place; filter results are cached per row until that row changes."""
        rows = self.rows
        candidates = [r for r in map(rows.get, self.order) if r is not None]
        if len(candidates) < len(rows):
            shown = set(self.order)
            candidates.extend(row for i, row in rows.items() if i not in shown)
        if not self.show_ended:
            candidates = [r for r in candidates if r.ended is None]
        predicate = self._predicate
        if predicate is not None:
            matches = self._matches
            kept = []
            for row in candidates:
                hit = matches.get(row.id)
                if hit is None:
                    hit = matches[row.id] = predicate(row)
                if hit:
                    kept.append(row)
            candidates = kept
        column = BY_KEY[self.sort_key]
        # one field: no key tuples to build; ties keep their previous (stable) order
        candidates.sort(key=attrgetter(*column.fields), reverse=self.sort_reverse != column.flip)
        self.order = list(map(_ID, candidates))
        self.version += 1
        return self.order

    def visible(self) -> list[ConnRow]:
        return [self.rows[i] for i in self.order]
