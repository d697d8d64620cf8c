"""`f`: a quick filter from the selected connection (as k9s does): one more key picks what to keep."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.widgets import Static

from midstat_tui.engine.records import ConnRow, format_addr
from midstat_tui.tcp.states import NAMES

CHOICES = {"s": "server", "c": "client", "p": "port", "t": "states"}


def quick_term(choice: str, row: ConnRow) -> str:
    """The filter term that keeps the connections sharing this row's server, client host, server port or state
    pair."""
    if choice == "server":
        return f"server {row.server}"
    if choice == "client":
        return f"client {format_addr(row.c_addr)}"
    if choice == "port":
        return f"dport {row.s_port}"
    return f"cstate {NAMES[row.cstate]} and sstate {NAMES[row.sstate]}"


def combined(query: str, term: str) -> str:
    """The current filter narrowed by a term."""
    return f"({query}) and {term}" if query else term


class QuickFilterScreen(ModalScreen[str | None]):
    DEFAULT_CSS = """
    QuickFilterScreen { align: center middle; }
    QuickFilterScreen > Static { width: 64; height: auto; border: round $accent; background: $surface;
                                 padding: 0 1; }
    """
    BINDINGS = [
        Binding("s", "pick('server')", show=False), Binding("c", "pick('client')", show=False),
        Binding("p", "pick('port')", show=False), Binding("t", "pick('states')", show=False),
        Binding("escape,f,q", "pick('')", show=False),
    ]

    def __init__(self, row: ConnRow) -> None:
        super().__init__()
        self.row = row

    def compose(self) -> ComposeResult:
        lines = ["Keep the connections with this row's", ""]
        for key, choice in CHOICES.items():
            lines.append(f"  {key}  {quick_term(choice, self.row)}")
        lines += ["", "  Esc  cancel"]
        yield Static("\n".join(lines))

    def action_pick(self, choice: str) -> None:
        self.dismiss(choice or None)
