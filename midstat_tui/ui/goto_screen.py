"""`g`: go to a moment of the capture. The time is read and checked by `midstat_tui.timespec` (no UI there)."""

from __future__ import annotations

from collections.abc import Callable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from midstat_tui.timespec import TimeSpecError, offset_text, parse_goto, range_text, utc_text


class GotoScreen(ModalScreen[float | None]):
    DEFAULT_CSS = """
    GotoScreen { align: center middle; }
    GotoScreen > Vertical { width: 76; height: auto; border: round $accent; background: $surface; padding: 0 1; }
    GotoScreen #goto-range { color: $text-muted; }
    GotoScreen #goto-error { color: $error; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, first: float | None, last: float | None, position: float | None,
                 on_g: Callable[[], None] | None = None) -> None:
        super().__init__()
        self.on_g = on_g
        self.first = first
        self.last = last
        self.position = position

    def compose(self) -> ComposeResult:
        here = ""
        if self.position is not None and self.first is not None:
            here = f"\nnow at {utc_text(self.position)} (+{offset_text(self.position - self.first)})"
        with Vertical():
            yield Static("Go to: +SECONDS from the start, HH:MM:SS (UTC), YYYY-MM-DD HH:MM:SS or epoch seconds")
            yield Static(range_text(self.first, self.last) + here, id="goto-range")
            yield Input(placeholder="+12.5", id="goto-input")
            yield Static(id="goto-error")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        try:
            self.dismiss(parse_goto(event.value, self.first, self.last, self.position))
        except TimeSpecError as exc:
            self.query_one("#goto-error", Static).update(str(exc))

    def on_input_changed(self, event: Input.Changed) -> None:
        """`g` typed first is no time: it is `gg`, the first row of the table."""
        if event.value == "g" and self.on_g is not None:
            event.stop()
            self.dismiss(None)
            self.on_g()

    def action_cancel(self) -> None:
        self.dismiss(None)
