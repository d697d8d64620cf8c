"""The grouped view: one row per group (server, server address, client address, state pair, VLAN, Zeek state) with
its counts, drawn line by line like the connection table. The groups come from midstat_tui.engine.groups."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from midstat_tui.columns import human
from midstat_tui.engine.groups import GROUP_TITLES, GroupTable
from midstat_tui.services import Services
from midstat_tui.ui.conn_table import HOSTS_EXTRA

GAP = 1
LABEL_TIES_UP_TO = 20_000


NAMED_KEYS = ("server", "server-host", "client-host")  # the groupings whose keys hold an address (and a port)


def named_key(label: str, group_by: str, services: Services, hosts) -> str:
    """A group's key as `n` shows it: `10.0.0.1:443` as `10.0.0.1:https`, and with `hosts` (a name map) the address
    as its learned name (`example.org:https`); keys without a name stay as they are."""
    if group_by == "server":
        host, _, port = label.rpartition(":")
        addr = host[1:-1] if host.startswith("[") else host
        name = hosts.host_name(addr) if hosts else None
        return f"{name or host}:{services.name(int(port)) or port}" if port.isdigit() else label
    name = hosts.host_name(label) if hosts else None
    return name or label


@dataclass(frozen=True)
class GroupColumn:
    field: str      # a GroupTable field, or "key"
    title: str
    width: int


GROUP_COLUMNS = (
    GroupColumn("connections", "Conns", 6), GroupColumn("open", "Open", 6), GroupColumn("handshake", "Hshake", 7),
    GroupColumn("closing", "Closing", 8), GroupColumn("reset", "Reset", 6), GroupColumn("midstream", "Mid", 5),
    GroupColumn("ended", "Ended", 6), GroupColumn("packets_c2s", "Pkt→", 6), GroupColumn("packets_s2c", "Pkt←", 6),
    GroupColumn("bytes_c2s", "Byte→", 6), GroupColumn("bytes_s2c", "Byte←", 6),
    GroupColumn("rate_c2s", "B/s→", 6), GroupColumn("rate_s2c", "B/s←", 6),
)
SORT_FIELDS = ("key", *(c.field for c in GROUP_COLUMNS))


class GroupsTable(ScrollView, can_focus=True):
    COMPONENT_CLASSES = {"group-table--header", "group-table--cursor", "group-table--odd"}
    DEFAULT_CSS = """
    GroupsTable { height: 1fr; }
    GroupsTable > .group-table--header { text-style: bold; background: $panel; color: $text; }
    GroupsTable > .group-table--cursor { background: $accent 40%; text-style: bold; }
    GroupsTable > .group-table--odd { background: $boost; }
    """
    BINDINGS = [
        Binding("up,k", "cursor_up", "Up", show=False),
        Binding("down,j", "cursor_down", "Down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home", "first", "First", show=False),
        Binding("end", "last", "Last", show=False),
        Binding("enter", "select", "Open group"),
    ]

    cursor = reactive(0, repaint=False)

    class Selected(Message):
        """Enter on a group: its grouping, its code (to select its connections) and its label."""

        def __init__(self, grouping: str, code: int, label: str) -> None:
            super().__init__()
            self.grouping = grouping
            self.code = code
            self.label = label

    class SortRequested(Message):
        def __init__(self, field: str) -> None:
            super().__init__()
            self.field = field

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.table: GroupTable | None = None
        self.sort_field = "connections"
        self.sort_reverse = True
        self._cursor_code: int | None = None
        self._key_width = 12
        self.services: Services | None = None   # `n`: ports as service names in the keys that hold a port
        self.hosts = None                       # `n` twice: addresses as learned host names (engine.names' map)

    # -- data in ---------------------------------------------------------------------------------------------
    def show(self, table: GroupTable) -> None:
        """New groups (each refresh): sorted as chosen, the cursor kept on the same group."""
        # ties in key order (the same screen whatever order the rows came in), but at a million groups in code
        # order: sorting a million labels in Python would take most of a refresh
        table.sort(self.sort_field, self.sort_reverse, label_ties=len(table) <= LABEL_TIES_UP_TO)
        if self.table is not None and self.table.group_by != table.group_by:
            self._cursor_code = None
        self.table = table
        widest = max([0, *(len(table.names[c]) for c in table.codes[table.order[:5000]].tolist())])
        if self.hosts and table.group_by in NAMED_KEYS:  # as the connection table: room for the names
            widest = min(max(widest, self.hosts.widest() + 6), widest + HOSTS_EXTRA)
        self._key_width = max(len(GROUP_TITLES[table.group_by]) + 1, widest)
        self.virtual_size = Size(self._key_width + GAP + sum(c.width + GAP for c in GROUP_COLUMNS), len(table) + 1)
        index = self.cursor
        if self._cursor_code is not None:
            found = np.flatnonzero(table.codes[table.order] == self._cursor_code)
            if len(found):
                index = int(found[0])
        self.set_reactive(GroupsTable.cursor, max(0, min(index, len(table) - 1)))
        self._remember()
        self.refresh()

    def labels_in_order(self) -> list[str]:
        if self.table is None:
            return []
        return [self.table.label(i) for i in self.table.order.tolist()]

    def _remember(self) -> None:
        table = self.table
        if table is not None and 0 <= self.cursor < len(table):
            self._cursor_code = int(table.codes[table.order[self.cursor]])

    def validate_cursor(self, value: int) -> int:
        size = len(self.table) if self.table is not None else 0
        return max(0, min(value, size - 1)) if size else 0

    def watch_cursor(self, old: int, new: int) -> None:
        self._remember()
        top = self.scroll_offset.y
        rows = max(1, self.size.height - 1)
        if new < top:
            self.scroll_to(y=new, animate=False, immediate=True)
        elif new >= top + rows:
            self.scroll_to(y=new - rows + 1, animate=False, immediate=True)
        self.refresh()

    # -- drawing ----------------------------------------------------------------------------------------------
    def _cells(self) -> list[tuple[str, int, bool]]:
        return [("key", self._key_width, False), *((c.field, c.width, True) for c in GROUP_COLUMNS)]

    def column_offsets(self) -> list[tuple[str, int]]:
        out, x = [], 0
        for field, width, _ in self._cells():
            out.append((field, x))
            x += width + GAP
        return out

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        table = self.table
        if y == 0:
            style = self.get_component_rich_style("group-table--header")
            titles = {c.field: c.title for c in GROUP_COLUMNS}
            titles["key"] = GROUP_TITLES[table.group_by] if table is not None else "Group"
            segments = []
            for field, w, right in self._cells():
                title = titles[field]
                if field == self.sort_field:
                    title += "▼" if self.sort_reverse else "▲"
                text = (title.rjust(w) if right else title.ljust(w))[:w] + " " * GAP
                segments.append(Segment(text, style + Style(meta={"header": field})))
            return Strip(segments).crop_extend(scroll_x, scroll_x + width, style)
        index = scroll_y + y - 1
        if table is None or index >= len(table):
            return Strip.blank(width, self.rich_style)
        group = int(table.order[index])
        base = self.rich_style
        if index % 2:
            base = base + self.get_component_rich_style("group-table--odd")
        if index == self.cursor:
            base = base + self.get_component_rich_style("group-table--cursor")
        base = base + Style(meta={"row": index})
        segments = []
        for field, w, right in self._cells():
            if field == "key":
                text = table.label(group)
                if self.services is not None and table.group_by in NAMED_KEYS:
                    text = named_key(text, table.group_by, self.services, self.hosts)
            elif field.startswith("rate") and not table.has_rates:
                text = "-"
            else:
                text = human(table.value(field, group))
            text = (text.rjust(w) if right else text.ljust(w))[:w] + " " * GAP
            segments.append(Segment(text, base))
        return Strip(segments).crop_extend(scroll_x, scroll_x + width, base)

    # -- keys and mouse ---------------------------------------------------------------------------------------
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
        self.cursor = len(self.table) - 1 if self.table is not None else 0

    def action_select(self) -> None:
        table = self.table
        if table is None or not len(table):
            return
        group = int(table.order[self.cursor])
        self.post_message(self.Selected(table.group_by, int(table.codes[group]), table.label(group)))

    def on_click(self, event: events.Click) -> None:
        meta = event.style.meta
        if "header" in meta:
            self.post_message(self.SortRequested(meta["header"]))
        elif "row" in meta:
            self.cursor = meta["row"]
            if event.chain >= 2:
                self.action_select()
