"""Enter on a row: one flow's story. Both endpoints, both states, counters, RTT legs, the Zeek view with its
letters explained, and the state timeline: every transition with the packet that caused it. Updates while the
flow lives; Esc goes back to the table, on the same row."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from midstat_tui.engine.views import ConnRow, row_counters
from midstat_tui.tcp import zeek
from midstat_tui.tcp.states import NAMES
from midstat_tui.ui.conn_table import state_class
from midstat_tui.ui.header import clock_text

STATE_COLOURS = {"handshake": "yellow", "established": "green", "closing": "magenta", "closed": "red"}


def _state(state: int) -> str:
    return f"[{STATE_COLOURS[state_class(state)]}]{NAMES[state]}[/]"


def explain_history(history: str) -> str:
    """Each letter once, with who sent it and what it means."""
    parts = []
    for letter in dict.fromkeys(history):
        meaning = zeek.HISTORY_LETTERS.get(letter.lower())
        if meaning is None:
            continue
        who = "" if letter == "^" else ("client " if letter.isupper() else "server ")
        parts.append(f"[b]{letter}[/b] {who}{meaning}")
        if letter in "cgtwCGTW":
            parts[-1] += " (again at 10, 100, ... times)"
    return " · ".join(parts)


class FlowScreen(Screen[None]):
    DEFAULT_CSS = """
    FlowScreen #flow-title { padding: 0 1; background: $panel; }
    FlowScreen #flow-top { height: auto; }
    FlowScreen .flow-box { height: auto; border: round $accent; padding: 0 1; }
    FlowScreen #flow-sides { width: 1fr; }
    FlowScreen #flow-counters { width: 36; }
    FlowScreen #flow-zeek { height: auto; padding: 0 1; }
    FlowScreen #flow-timeline { height: 1fr; min-height: 7; border: round $accent; }
    """
    BINDINGS = [Binding("escape,backspace", "back", "Back"), Binding("q", "app.quit", "Quit")]

    def __init__(self, conn_id: int, fetch, interval: float | None = 1.0) -> None:
        super().__init__()
        self.conn_id = conn_id
        self.fetch = fetch  # conn id -> (row, counters, transitions) or None
        self.interval = interval
        self.last: tuple[ConnRow, dict, list[dict]] | None = None
        self.gone = False

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(id="flow-title")
            with Horizontal(id="flow-top"):
                yield Static(id="flow-sides", classes="flow-box")
                yield Static(id="flow-counters", classes="flow-box")
            yield Static(id="flow-zeek")
            table = DataTable(id="flow-timeline", cursor_type="row", zebra_stripes=True)
            table.add_columns("time (UTC)", "side", "from", "to", "dir", "flags", "seq", "ack", "len")
            yield table
        yield Footer()

    def on_mount(self) -> None:
        self.refresh_flow()
        if self.interval:
            self.set_interval(self.interval, self.refresh_flow)

    def refresh_flow(self) -> None:
        found = self.fetch(self.conn_id)
        if found is None:
            row = self.app_rows().get(self.conn_id)
            if self.last is None and row is not None:
                # the engine no longer holds it (a reused port's earlier incarnation): what the table knows
                self.last = (row, row_counters(row), [])
            self.gone = self.last is not None and row is None
        else:
            self.gone = False
            self.last = found
        if self.last is None:
            self.query_one("#flow-title", Static).update(f"connection {self.conn_id} has left the table")
            return
        row, counters, transitions = self.last
        vlan = f" · VLAN {'.'.join(map(str, row.vlan))}" if row.vlan else ""
        status = " · left the table (last known state)" if self.gone else ""
        self.query_one("#flow-title", Static).update(
            f"[b]connection {row.id}[/b] · {row.client} ⇄ {row.server}{vlan} · shard {row.shard}{status}")
        ended = row.ended or "no (open)"
        rtt_c, rtt_s = counters["rtt_client_ms"], counters["rtt_server_ms"]
        # compact, so that on 80x24 the timeline below keeps several rows
        self.query_one("#flow-sides", Static).update(
            f"client {_state(row.cstate)} · server {_state(row.sstate)}\n"
            f"ended: {ended} · RST by: {counters['rst_by'] or '-'}\n"
            f"mid-stream: {'yes' if row.midstream else 'no'} · bad csum {counters['bad_checksum']}\n"
            # blind: out of window, not obeyed; odd: another TTL or MAC than the sender's (possible injection)
            f"blind RST {counters['suspicious_rst']} · odd RST {counters['odd_rst']} · "
            f"bad flags {counters['bad_flags']}\n"
            f"RTT legs: client {'-' if rtt_c is None else f'{rtt_c:.3f} ms'} · "
            f"server {'-' if rtt_s is None else f'{rtt_s:.3f} ms'}\n"
            f"first {clock_text(row.first)}\nlast  {clock_text(row.last)}")

        def line(label: str, key: str) -> str:
            return f"{label:<11}{counters[key + '_c2s']:>10}{counters[key + '_s2c']:>10}"

        self.query_one("#flow-counters", Static).update("\n".join([
            f"{'':<11}{'c→s':>10}{'s→c':>10}",
            line("packets", "packets"), line("IP bytes", "bytes"), line("payload", "payload"),
            line("retx bytes", "retrans"), line("retx segs", "retrans_pkts"), line("out-order", "ooo"),
            line("zero win", "zero_win"),
        ]))
        self.query_one("#flow-zeek", Static).update(
            f"Zeek [b]{row.zeek}[/b]: {zeek.CONN_STATES.get(row.zeek, '')} History [b]{row.history or '-'}[/b]: "
            f"{explain_history(row.history)}")
        table = self.query_one("#flow-timeline", DataTable)
        if table.row_count != len(transitions):
            table.clear()
            for t in transitions:
                p = t["packet"]
                # from = to: a reset the receiver's stack ignored (out of its window), kept for the record
                to = "RST ignored" if t["from"] == t["to"] else t["to"]
                table.add_row(clock_text(t["ts"]), t["side"], t["from"], to, p["dir"], p["flags"],
                              str(p["seq"]), str(p["ack"]), str(p["len"]))

    def app_rows(self) -> dict:
        view = getattr(self.app, "view", None)
        return view.rows if view is not None else {}

    def action_back(self) -> None:
        self.app.pop_screen()
