"""The connection table: a Line-API virtual table that draws only the visible rows, so a million rows cost
no more per frame than a hundred. The data, the sort and the filter live in midstat_tui.conn_view.ConnView."""

from __future__ import annotations

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.cache import LRUCache
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from midstat_tui.columns import Column, human
from midstat_tui.conn_view import ConnView
from midstat_tui.engine.records import format_addr
from midstat_tui.services import Services
from midstat_tui.tcp import states

GAP = 1
NAMES_EXTRA = 8   # the endpoint columns widen by this much when ports show as names (`microsoft-ds` for 445)
HOSTS_EXTRA = 16  # and by this much more when hosts show as their learned names (longer ones are cut)


def named_endpoint(addr: bytes, port: int, services: Services, name: str | None = None) -> str:
    """`10.0.0.1:https`, `[fd00::1]:ssh`; a port with no name stays a number. With `name` (the host name learned
    for this side of the connection, engine.names), `example.com:https`."""
    host = format_addr(addr)
    if name is not None:
        host = name
    elif len(addr) == 16:
        host = f"[{host}]"
    return f"{host}:{services.name(port) or port}"


def state_class(state: int) -> str:
    if state in states.HANDSHAKE:
        return "handshake"
    if state == states.ESTABLISHED:
        return "established"
    if state in states.CLOSING_STATES:
        return "closing"
    return "closed"


class ConnTable(ScrollView, can_focus=True):
    COMPONENT_CLASSES = {
        "conn-table--header", "conn-table--cursor", "conn-table--handshake", "conn-table--established",
        "conn-table--closing", "conn-table--closed", "conn-table--ended", "conn-table--odd", "conn-table--alert",
    }
    DEFAULT_CSS = """
    ConnTable { height: 1fr; }
    ConnTable > .conn-table--header { text-style: bold; background: $panel; color: $text; }
    ConnTable > .conn-table--cursor { background: $accent 40%; text-style: bold; }
    ConnTable > .conn-table--handshake { color: #e5c07b; }
    ConnTable > .conn-table--established { color: #98c379; }
    ConnTable > .conn-table--closing { color: #c678dd; }
    ConnTable > .conn-table--closed { color: #e06c75; }
    ConnTable > .conn-table--ended { text-style: dim; }
    ConnTable > .conn-table--odd { background: $boost; }
    ConnTable > .conn-table--alert { color: $error; text-style: bold reverse; }
    """
    BINDINGS = [
        Binding("up,k", "cursor_up", "Up", show=False),
        Binding("down,j", "cursor_down", "Down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home", "first", "First", show=False),
        Binding("end", "last", "Last", show=False),
        Binding("enter", "select", "Open flow"),
    ]

    cursor = reactive(0, repaint=False)

    class Selected(Message):
        def __init__(self, conn_id: int) -> None:
            super().__init__()
            self.conn_id = conn_id

    class SortRequested(Message):
        def __init__(self, key: str) -> None:
            super().__init__()
            self.key = key

    def __init__(self, view: ConnView, columns: list[Column], **kwargs) -> None:
        super().__init__(**kwargs)
        self.view = view
        self.columns = columns
        self._cache: LRUCache[tuple, Strip] = LRUCache(1024)
        self._cursor_id: int | None = None
        self._version = 0
        self._widths: list[int] = [c.width for c in columns]
        self.services: Services | None = None   # ports as service names (`n`), else numbers
        self.hosts = None   # addresses as learned host names (`n` twice: engine.names' map), else numbers

    # -- data in ---------------------------------------------------------------------------------------------
    def set_columns(self, columns: list[Column]) -> None:
        self.columns = columns
        self.refresh_view()

    def refresh_view(self) -> None:
        """Call after view.recompute(): keeps the cursor on the same connection, redraws the visible lines."""
        view = self.view  # the display order as an array: a million ids are never made a list here
        count = view.shown_count
        self._version += 1
        self._cache.clear()
        extra = NAMES_EXTRA if self.services is not None else 0
        fit = self.view.addr_width
        if self.hosts:  # as wide as the longest learned name needs (`name:65535`), at most HOSTS_EXTRA wider
            fit = min(max(fit, self.hosts.widest() + 6), fit + HOSTS_EXTRA)
        self._widths = [max(c.width, fit + extra) if c.fit else c.width for c in self.columns]
        width = sum(w + GAP for w in self._widths)
        self.virtual_size = Size(width, count + 1)
        if self._cursor_id is not None:
            index = view.index_of(self._cursor_id)
            if index is None:
                index = min(self.cursor, max(0, count - 1))
            self.set_reactive(ConnTable.cursor, index)
        self.cursor = min(self.cursor, max(0, count - 1))
        self._remember_cursor()
        self.refresh()

    @property
    def cursor_id(self) -> int | None:
        return self._cursor_id

    def _remember_cursor(self) -> None:
        view = self.view
        self._cursor_id = view.id_at(self.cursor) if 0 <= self.cursor < view.shown_count else None

    def validate_cursor(self, value: int) -> int:
        count = self.view.shown_count
        return max(0, min(value, count - 1)) if count else 0

    def watch_cursor(self, old: int, new: int) -> None:
        self._remember_cursor()
        self.refresh_line(old - self.scroll_offset.y + 1)
        self.refresh_line(new - self.scroll_offset.y + 1)
        self._scroll_cursor_into_view()

    def _scroll_cursor_into_view(self) -> None:
        top = self.scroll_offset.y
        rows = max(1, self.size.height - 1)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.cursor >= top + rows:
            self.scroll_to(y=self.cursor - rows + 1, animate=False, immediate=True)

    # -- drawing ------------------------------------------------------------------------------------------------
    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        if y == 0:
            strip, fill = self._header(), self.get_component_rich_style("conn-table--header")
        else:
            index = scroll_y + y - 1
            if index >= self.view.shown_count:
                return Strip.blank(width, self.rich_style)
            is_cursor = index == self.cursor
            key = (index, self._version, is_cursor, self.has_focus)
            cached = self._cache.get(key)
            if cached is None:
                cached = self._row(index, is_cursor)
                self._cache[key] = cached
            strip, fill = cached
        # the row's background (the cursor's highlight, the zebra stripe) runs to the right edge of the screen
        return strip.crop_extend(scroll_x, scroll_x + width, fill)

    @staticmethod
    def _cell(text: str, column: Column, width: int) -> str:
        text = text[:width]
        return (text.rjust(width) if column.right else text.ljust(width)) + " " * GAP

    def column_offsets(self) -> list[int]:
        """Where each shown column starts, in cells from the table's left edge."""
        offsets, x = [], 0
        for width in self._widths:
            offsets.append(x)
            x += width + GAP
        return offsets

    def _header(self) -> Strip:
        style = self.get_component_rich_style("conn-table--header")
        segments = []
        for column, width in zip(self.columns, self._widths, strict=True):
            title = column.title
            if column.key == self.view.sort_key:
                title = f"{title}{'▼' if self.view.sort_reverse else '▲'}"
            segments.append(Segment(self._cell(title, column, width), style + Style(meta={"header": column.key})))
        return Strip(segments)

    def _row(self, index: int, is_cursor: bool) -> tuple[Strip, Style]:
        view = self.view
        conn_id = view.id_at(index)
        if conn_id not in view.rows:
            # a big pull after a seek (or a file's end on several cores) is being applied in slices: the order is
            # last draw's until the next, and this row has not come again yet (or has left): a blank line meanwhile
            return Strip.blank(sum(self._widths) + GAP * len(self._widths), self.rich_style), self.rich_style
        row = view.rows[conn_id]
        base = self.rich_style
        if index % 2:
            base = base + self.get_component_rich_style("conn-table--odd")
        if row.ended is not None:
            base = base + self.get_component_rich_style("conn-table--ended")
        if is_cursor:
            base = base + self.get_component_rich_style("conn-table--cursor")
        meta = Style(meta={"row": index})
        segments = []
        now = view.now
        for column, width in zip(self.columns, self._widths, strict=True):
            style = base
            if column.key == "cstate":
                style = base + self.get_component_rich_style(f"conn-table--{state_class(row.cstate)}")
            elif column.key == "sstate":
                style = base + self.get_component_rich_style(f"conn-table--{state_class(row.sstate)}")
            elif column.key == "alert" and row.rst_alerts:
                style = base + self.get_component_rich_style("conn-table--alert")
            if column.per_view:
                text = human(view.rate(column.key, row.id))
            elif self.services is not None and column.key in ("client", "server"):
                named = self.hosts.row_names(row) if self.hosts else (None, None)
                text = (named_endpoint(row.c_addr, row.c_port, self.services, named[0])
                        if column.key == "client" else
                        named_endpoint(row.s_addr, row.s_port, self.services, named[1]))
            else:
                text = column.text(row, now)
            segments.append(Segment(self._cell(text, column, width), style + meta))
        return Strip(segments), base + meta

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._cache.clear()

    # -- keys and mouse -----------------------------------------------------------------------------------------
    def action_cursor_up(self) -> None:
        self.cursor -= 1

    def action_cursor_down(self) -> None:
        self.cursor += 1

    def action_page_up(self) -> None:
        self.cursor -= max(1, self.size.height - 2)

    def action_page_down(self) -> None:
        self.cursor += max(1, self.size.height - 2)

    def action_first(self) -> None:
        self.cursor = 0

    def action_last(self) -> None:
        self.cursor = self.view.shown_count - 1

    # ← → (ScrollableContainer's "Scroll Left" / "Scroll Right" bindings) move a whole column
    def action_scroll_left(self) -> None:
        """Scroll left by one column: the previous column's left edge comes to the screen's left edge."""
        x = self.scroll_offset.x
        earlier = [o for o in self.column_offsets() if o < x]
        self.scroll_to(x=earlier[-1] if earlier else 0, animate=False, immediate=True)

    def action_scroll_right(self) -> None:
        """Scroll right by one column, as long as part of the table is still off screen on the right."""
        x = self.scroll_offset.x
        later = [o for o in self.column_offsets() if o > x]
        if later and x < self.max_scroll_x:
            self.scroll_to(x=min(later[0], self.max_scroll_x), animate=False, immediate=True)

    def action_select(self) -> None:
        if self._cursor_id is not None:
            self.post_message(self.Selected(self._cursor_id))

    def on_click(self, event: events.Click) -> None:
        meta = event.style.meta
        if "header" in meta:
            self.post_message(self.SortRequested(meta["header"]))
        elif "row" in meta:
            self.cursor = meta["row"]
            if event.chain >= 2:
                self.action_select()
