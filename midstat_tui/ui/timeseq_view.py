"""The flow screen's time-sequence picture (output.timeseq): bytes sent each way over time in braille dots,
retransmissions in red, zero-window periods shaded, state changes as markers listed below. `z` zooms to the data."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from midstat_tui.engine.flow_packets import Flow
from midstat_tui.output.timeseq import Picture, data_span, draw, state_lines, time_sequence

STYLES = {"c2s": "green", "s2c": "bright_blue", "retrans": "bold red", "zero_win": "yellow", "state": "magenta",
          "axis": "dim", "text": "", "": ""}


class TimeSeqView(Static):
    DEFAULT_CSS = """
    TimeSeqView { height: 1fr; border: round $accent; padding: 0 1; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.picture: Picture | None = None
        self.zoom = False
        self.note = ""

    def show(self, flow: Flow | None, note: str = "") -> None:
        self.picture = time_sequence(flow) if flow is not None and flow.packets else None
        self.note = note or "no packets"
        self.redraw()

    def toggle_zoom(self) -> None:
        self.zoom = not self.zoom
        self.redraw()

    def on_resize(self) -> None:
        self.redraw()

    def redraw(self) -> None:
        pic = self.picture
        if pic is None:
            self.update(self.note)
            return
        width = max(self.content_region.width or 78, 40)
        height = max(self.content_region.height or 20, 12)
        markers = min(len(pic.states), max(height // 3, 3))
        rows = draw(pic, width, height - markers, data_span(pic) if self.zoom else None)
        text = Text(no_wrap=True)
        for row in rows:
            for ch, kind in row:
                text.append(ch, STYLES.get(kind, ""))
            text.append("\n")
        for line in state_lines(pic, markers):
            text.append(line + "\n", "magenta")
        text.rstrip()
        self.update(text)
