"""`g`: go to a moment of the capture."""

from __future__ import annotations

import calendar
import time

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static


def parse_time(text: str, first: float | None, position: float | None) -> float:
    """Epoch seconds, `+S` from the first packet, or `HH:MM:SS` (UTC) on the current day of the capture."""
    text = text.strip()
    if text.startswith("+"):
        if first is None:
            raise ValueError("no packet yet to count from")
        return first + float(text[1:])
    if ":" in text:
        base = position if position is not None else first
        if base is None:
            raise ValueError("no packet yet")
        parts = [float(p) for p in text.split(":")]
        while len(parts) < 3:
            parts.append(0.0)
        hours, minutes, seconds = parts
        day = time.gmtime(base)
        midnight = calendar.timegm((day.tm_year, day.tm_mon, day.tm_mday, 0, 0, 0))
        return midnight + hours * 3600 + minutes * 60 + seconds
    return float(text)


class GotoScreen(ModalScreen[float | None]):
    DEFAULT_CSS = """
    GotoScreen { align: center middle; }
    GotoScreen > Vertical { width: 60; height: auto; border: round $accent; background: $surface; padding: 0 1; }
    GotoScreen #goto-error { color: $error; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, first: float | None, position: float | None) -> None:
        super().__init__()
        self.first = first
        self.position = position

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Go to: epoch seconds, +SECONDS from the start, or HH:MM:SS (UTC)")
            yield Input(placeholder="+12.5", id="goto-input")
            yield Static(id="goto-error")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        try:
            self.dismiss(parse_time(event.value, self.first, self.position))
        except ValueError as exc:
            self.query_one("#goto-error", Static).update(f"not a time: {exc}")

    def action_cancel(self) -> None:
        self.dismiss(None)
