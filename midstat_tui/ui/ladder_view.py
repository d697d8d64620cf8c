"""The flow screen's ladder: one line per row of output.ladder, scrollable, with a cursor; Enter on a folded run
unfolds it (and on an unfolded run's heading folds it back)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from midstat_tui.engine.flow_packets import Flow
from midstat_tui.output.ladder import Line, ladder

_STATE_STYLE = "bold magenta"
_MARK_STYLE = "bold red"


def _styled(line: Line) -> Text:
    text = Text(line.text, no_wrap=True)
    if line.kind == "states":
        text.stylize(_STATE_STYLE, 21)
    elif line.kind == "fold":
        text.stylize("bold cyan", 21)
    elif line.kind == "head":
        text.stylize("dim")
    start = line.text.find("[")
    if line.kind in ("packet", "more") and start >= 0:
        text.stylize(_MARK_STYLE, start)
    return text


class LadderView(OptionList):
    DEFAULT_CSS = """
    LadderView { height: 1fr; border: round $accent; padding: 0; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.flow: Flow | None = None
        self.absolute = False
        self.unfolded: set[int] = set()
        self.lines: list[Line] = []
        self._width = 0

    def show(self, flow: Flow | None, note: str = "") -> None:
        self.flow = flow
        self.unfolded = set()
        self.redraw(note)

    def ladder_width(self) -> int:
        # the lines are one narrower than the width asked for; the vertical scrollbar takes two columns
        width = (self.size.width - 1) if self.size.width else 80
        return max(width, 64)

    def redraw(self, note: str = "") -> None:
        keep = self.highlighted
        self.clear_options()
        if self.flow is None:
            self.lines = []
            self.add_option(Option(Text(note or "no packets"), disabled=True))
            return
        self._width = self.ladder_width()
        self.lines = ladder(self.flow, width=self._width, absolute=self.absolute, unfold=self.unfolded)
        self.add_options([Option(_styled(line)) for line in self.lines])
        if keep is not None and self.lines:
            self.highlighted = min(keep, len(self.lines) - 1)
        elif self.lines:
            self.highlighted = 0

    def on_resize(self) -> None:
        if self.flow is not None and self.ladder_width() != self._width:
            self.redraw()

    def toggle_fold(self, index: int) -> bool:
        """Unfold the run on line `index` (or fold it back); False when the line is not a run's."""
        if not 0 <= index < len(self.lines):
            return False
        fold = self.lines[index].fold
        if fold is None:
            return False
        if fold in self.unfolded:
            self.unfolded.discard(fold)
        else:
            self.unfolded.add(fold)
        self.redraw()
        return True

    def set_absolute(self, absolute: bool) -> None:
        self.absolute = absolute
        self.redraw()
