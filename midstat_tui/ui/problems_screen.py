"""`p`: the problems lens. Each kind with its count, threshold and what it usually means; below, the connections
of the kind under the cursor (or of every kind), oldest first, with what is wrong. Enter on a kind filters the
table to it (`problem KIND`), Enter on a connection opens its flow; `T` sets a threshold; Esc goes back."""

from __future__ import annotations

from collections import Counter

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Input, Static

from midstat_tui.engine.records import format_addr
from midstat_tui.problems import BY_NAME, DEFAULTS, KINDS, ThresholdError, detail, parse_threshold
from midstat_tui.timespec import offset_text

LISTED = 200  # connections listed per refresh (the counts above are complete; Enter on a kind filters to all)


def threshold_text(name: str, thresholds: dict[str, float]) -> str:
    kind = BY_NAME[name]
    if kind.default is None:
        return "-"
    value = thresholds.get(name, kind.default)
    return f"{value:g}" if kind.unit == "share" else f"{value:g} s"


class ThresholdScreen(ModalScreen[tuple[str, float] | None]):
    DEFAULT_CSS = """
    ThresholdScreen { align: center middle; }
    ThresholdScreen > Vertical { width: 76; height: auto; border: round $accent; background: $surface; padding: 0 1; }
    ThresholdScreen #threshold-error { color: $error; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, kind: str | None) -> None:
        super().__init__()
        self.kind = kind if kind in DEFAULTS else None

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Threshold: KIND=VALUE, seconds (a share from 0 to 1 for retransmissions)\n"
                         + ", ".join(f"{k}={v:g}" for k, v in DEFAULTS.items()) + " by default")
            yield Input(value=f"{self.kind}=" if self.kind else "", id="threshold-input")
            yield Static(id="threshold-error")

    def on_mount(self) -> None:
        field = self.query_one(Input)
        field.focus()
        field.cursor_position = len(field.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        try:
            self.dismiss(parse_threshold(event.value))
        except ThresholdError as exc:
            self.query_one("#threshold-error", Static).update(str(exc))

    def action_cancel(self) -> None:
        self.dismiss(None)


SYN_GROUPS_OF = 10_000  # unanswered SYNs grouped at most (the oldest): a flood's million would cost a refresh
SYN_GROUPS_SHOWN = 5


def syn_groups_text(view) -> str:
    """Unanswered SYNs grouped by destination (a service down, a filtering firewall) and by source (a scan, a
    flood), the largest first, as `--problems` prints them."""
    rows = [row for _, row, _ in view.problem_rows("unanswered_syn", SYN_GROUPS_OF)]
    if not rows:
        return ""

    def top(counter: Counter) -> str:
        ranked = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
        more = len(ranked) - SYN_GROUPS_SHOWN
        shown = ", ".join(f"{k} {n:,}" for k, n in ranked[:SYN_GROUPS_SHOWN])
        return shown + (f" (+{more:,} more)" if more > 0 else "")

    of = f" (of the {SYN_GROUPS_OF:,} oldest)" if len(rows) >= SYN_GROUPS_OF else ""
    return (f"\n  by destination{of}: {top(Counter(row.server for row in rows))}"
            f"\n  by source{of}: {top(Counter(format_addr(row.c_addr) for row in rows))}")


class ProblemsScreen(Screen[str | None]):
    """Dismissed with a kind to filter the table on, or None."""

    DEFAULT_CSS = """
    ProblemsScreen #problems-title { padding: 0 1; background: $panel; text-style: bold; }
    ProblemsScreen #problems-kinds { height: auto; max-height: 14; border: round $accent; }
    ProblemsScreen #problems-meaning { height: auto; padding: 0 1; color: $text-muted; }
    ProblemsScreen #problems-list { height: 1fr; border: round $accent; }
    """
    BINDINGS = [Binding("escape,backspace", "back", "Back"), Binding("T", "threshold", "Threshold"),
                Binding("a", "all", "All kinds"), Binding("q", "app.quit", "Quit")]

    def __init__(self, interval: float | None = 1.0) -> None:
        super().__init__()
        self.interval = interval
        self.kind: str | None = None   # the kind listed below (None: every kind)
        self._listed: list[int] = []

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(id="problems-title")
            kinds = DataTable(id="problems-kinds", cursor_type="row")
            for label, key in (("kind", "kind"), ("connections", "connections"), ("threshold", "threshold")):
                kinds.add_column(label, key=key)
            yield kinds
            yield Static(id="problems-meaning")
            listing = DataTable(id="problems-list", cursor_type="row", zebra_stripes=True)
            listing.add_columns("kind", "client", "server", "for", "what")
            yield listing
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#problems-kinds", DataTable)
        for kind in KINDS:
            table.add_row(kind.name, "", "", key=kind.name)
        self.refresh_lens()
        table.focus()
        if self.interval:
            self.set_interval(self.interval, self.refresh_lens)

    def refresh_lens(self) -> None:
        view = self.app.view  # type: ignore[attr-defined]
        counts = view.problem_counts  # detected at the app's last refresh (and again when a threshold changes)
        thresholds = view.lens.thresholds or {}
        table = self.query_one("#problems-kinds", DataTable)
        for kind in KINDS:
            count = counts[kind.name]
            table.update_cell(kind.name, "connections", f"{count:,}" if count else "·")
            table.update_cell(kind.name, "threshold", threshold_text(kind.name, thresholds))
        total = sum(counts.values())
        which = f"the {self.kind} ones" if self.kind else "every kind"
        self.query_one("#problems-title", Static).update(
            f"Problems: {total:,} · listed below: {which} (Enter on a kind: filter the table to it; a: every "
            "kind; T: threshold)")
        self._show_meaning()
        self._fill_list(view)

    def _cursor_kind(self) -> str:
        table = self.query_one("#problems-kinds", DataTable)
        return KINDS[max(0, min(table.cursor_row, len(KINDS) - 1))].name

    def _show_meaning(self) -> None:
        name = self._cursor_kind()
        text = f"{name}: {BY_NAME[name].meaning}"
        if name == "unanswered_syn":
            text += syn_groups_text(self.app.view)  # type: ignore[attr-defined]
        self.query_one("#problems-meaning", Static).update(Text(text))

    def _fill_list(self, view) -> None:
        listing = self.query_one("#problems-list", DataTable)
        rows = view.problem_rows(self.kind, LISTED)
        now = view.now
        listing.clear()
        self._listed = []
        for name, row, since in rows:
            age = (row.end_ts if row.end_ts is not None else now) - since
            # Text, not markup: an IPv6 endpoint's [addr] would be read as a style tag and vanish
            listing.add_row(name, Text(row.client), Text(row.server), offset_text(max(0.0, age)),
                            Text(detail(row, name, now)))
            self._listed.append(row.id)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "problems-kinds":
            self._show_meaning()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "problems-kinds":
            self.dismiss(self._cursor_kind())
        elif 0 <= event.cursor_row < len(self._listed):
            from midstat_tui.ui.flow_screen import FlowScreen

            app = self.app
            self.app.push_screen(FlowScreen(self._listed[event.cursor_row], app.session.connection,  # type: ignore
                                            interval=self.interval))

    def action_all(self) -> None:
        self.kind = None if self.kind else self._cursor_kind()
        self.refresh_lens()

    def action_threshold(self) -> None:
        def chosen(result: tuple[str, float] | None) -> None:
            if result is None:
                return
            name, value = result
            view = self.app.view  # type: ignore[attr-defined]
            view.set_thresholds({**(view.lens.thresholds or {}), name: value})
            self.refresh_lens()
        self.app.push_screen(ThresholdScreen(self._cursor_kind()), chosen)

    def action_back(self) -> None:
        self.dismiss(None)
