"""`c`: choose which columns the table shows."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import SelectionList, Static

from midstat_tui.columns import COLUMNS


class ColumnsScreen(ModalScreen[list[str] | None]):
    DEFAULT_CSS = """
    ColumnsScreen { align: center middle; }
    ColumnsScreen > Vertical { width: 40; height: auto; max-height: 90%; border: round $accent;
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
            yield SelectionList[str](*[(c.title, c.key, c.key in self.shown) for c in COLUMNS])

    def action_apply(self) -> None:
        chosen = self.query_one(SelectionList).selected
        self.dismiss([c.key for c in COLUMNS if c.key in chosen] or None)

    def action_cancel(self) -> None:
        self.dismiss(None)
