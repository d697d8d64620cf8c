"""`c`: choose which columns the table shows. Each line says `on` or `off` in words (and colour), not only by the
colour of a toggle."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import SelectionList, Static

from midstat_tui.columns import COLUMNS

WHAT = {"alert": "suspicious RST mark", "cpu": "shard", "pkts_c2s": "packets client→server",
        "pkts_s2c": "packets server→client", "bytes_c2s": "IP bytes client→server",
        "bytes_s2c": "IP bytes server→client", "rtt": "handshake RTT", "retrans": "retransmitted segments",
        "midstream": "picked up mid-stream", "ended": "end reason"}


def prompt(key: str, title: str, on: bool) -> Content:
    what = f" ({WHAT[key]})" if key in WHAT else ""
    mark = Content.styled(" on ", "bold $success") if on else Content.styled("off ", "dim")
    return Content.assemble(mark, " ", Content(title + what))


class ColumnsScreen(ModalScreen[list[str] | None]):
    DEFAULT_CSS = """
    ColumnsScreen { align: center middle; }
    ColumnsScreen > Vertical { width: 56; height: auto; max-height: 100%; border: round $accent;
                               background: $surface; }
    ColumnsScreen SelectionList { height: auto; max-height: 22; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("enter", "apply", "Apply", priority=True)]

    def __init__(self, shown: list[str]) -> None:
        super().__init__()
        self.shown = shown

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(" Columns: Space toggles, Enter applies, Esc cancels")
            yield SelectionList[str](*[(prompt(c.key, c.title, c.key in self.shown), c.key, c.key in self.shown)
                                       for c in COLUMNS])

    def on_selection_list_selection_toggled(self, event: SelectionList.SelectionToggled) -> None:
        chooser = event.selection_list
        column = COLUMNS[event.selection_index]
        chooser.replace_option_prompt_at_index(
            event.selection_index, prompt(column.key, column.title, column.key in chooser.selected))

    def action_apply(self) -> None:
        chosen = self.query_one(SelectionList).selected
        self.dismiss([c.key for c in COLUMNS if c.key in chosen] or None)

    def action_cancel(self) -> None:
        self.dismiss(None)
