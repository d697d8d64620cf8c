"""What the connection table shows: the rows the engine handed over, filtered and sorted. No UI import.

The sort and the filter live here, outside the widget, so the widget only draws the visible lines and a test can
check the order without a screen.
"""

from __future__ import annotations

from midstat_tui.columns import BY_KEY, COLUMNS
from midstat_tui.engine.session import Pulled
from midstat_tui.engine.views import ConnRow
from midstat_tui.query import Predicate, compile_query


class ConnView:
    def __init__(self) -> None:
        self.rows: dict[int, ConnRow] = {}
        self.order: list[int] = []          # ids in display order
        self.sort_key = "age"
        self.sort_reverse = False
        self.show_ended = True
        self.query = ""
        self._predicate: Predicate | None = None
        self.now = 0.0
        self.version = 0

    def apply(self, pulled: Pulled) -> None:
        rows = self.rows
        if pulled.reset:
            rows.clear()
        for conn_id, row in pulled.changes.items():
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
        rows = self.rows.values()
        if not self.show_ended:
            rows = [r for r in rows if r.ended is None]
        predicate = self._predicate
        if predicate is not None:
            rows = [r for r in rows if predicate(r)]
        keyfunc = BY_KEY[self.sort_key].sort
        now = self.now
        ordered = sorted(rows, key=lambda r: (keyfunc(r, now), r.id), reverse=self.sort_reverse)
        self.order = [r.id for r in ordered]
        self.version += 1
        return self.order

    def visible(self) -> list[ConnRow]:
        return [self.rows[i] for i in self.order]
