"""Enter on a row: one flow's story. Both endpoints, both states, counters, RTT legs, the Zeek view with its
letters explained, and the state timeline: every transition with the packet that caused it. Updates while the
flow lives; Esc goes back to the table, on the same row.

`l` switches to the ladder (the flow's packets, re-read from the capture file: engine.flow_packets, drawn by
output.ladder), `a` shows absolute sequence numbers there, Enter unfolds a folded run; `t` switches to the
time-sequence picture (output.timeseq), `z` zooms it to the data; `w` writes the flow's packets to a pcap file."""

from __future__ import annotations

import bisect
import dataclasses
import math
import os

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, OptionList, Static

from midstat_tui.engine.flow_packets import Flow, FlowReader, FlowRef, FlowWatch
from midstat_tui.engine.records import ConnRow, row_counters
from midstat_tui.errors import MidstatError
from midstat_tui.output.ladder import start_text
from midstat_tui.output.pcap_write import PcapWriter, open_output
from midstat_tui.tcp import zeek
from midstat_tui.tcp.states import NAMES
from midstat_tui.ui.conn_table import state_class
from midstat_tui.ui.export import cannot_write_in, free_name
from midstat_tui.ui.header import clock_text
from midstat_tui.ui.ladder_view import LadderView
from midstat_tui.ui.timeseq_view import TimeSeqView

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
    FlowScreen #flow-ladder, FlowScreen #flow-timeseq { display: none; }
    FlowScreen.ladder #flow-ladder { display: block; }
    FlowScreen.timeseq #flow-timeseq { display: block; }
    FlowScreen.ladder #flow-top, FlowScreen.ladder #flow-zeek, FlowScreen.ladder #flow-timeline { display: none; }
    FlowScreen.timeseq #flow-top, FlowScreen.timeseq #flow-zeek, FlowScreen.timeseq #flow-timeline {
        display: none;
    }
    """
    BINDINGS = [Binding("escape,backspace", "back", "Back"), Binding("q", "app.quit", "Quit"),
                Binding("l", "ladder", "Ladder/story"), Binding("a", "absolute", "Absolute seq", show=False),
                Binding("t", "timeseq", "Time-seq"), Binding("z", "zoom", "Zoom to data", show=False),
                Binding("w", "write", "Write pcap"), Binding("question_mark", "help", "Help", show=False)]

    def __init__(self, conn_id: int, fetch, interval: float | None = 1.0, reader: FlowReader | None = None,
                 export_dir: str = ".", watcher=None) -> None:
        super().__init__()
        self.conn_id = conn_id
        self.fetch = fetch  # conn id -> (row, counters, transitions) or None
        self.interval = interval
        self.reader = reader  # the capture file the flow's packets are read from (None live)
        self.export_dir = export_dir
        self.last: tuple[ConnRow, dict, list[dict]] | None = None
        self.gone = False
        self.flow: Flow | None = None      # what the ladder and the picture show
        # a file's: the incarnation's every packet, read once; shown up to the replay's position (`flow`, a cut of
        # it), growing as the replay goes on and cut again after a seek
        self.whole: Flow | None = None
        self._times: list[float] = []      # whole's packet times
        self.watcher = watcher  # live: the session, which keeps the flow's packets from when this screen opens
        self.watch: FlowWatch | None = None
        self.watch_seen = -1
        self.status = ""
        self.title_text = ""

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
            yield LadderView(id="flow-ladder")
            yield TimeSeqView(id="flow-timeseq")
        yield Footer()

    def on_mount(self) -> None:
        self.refresh_flow()
        if self.watcher is not None and self.reader is None and self.last is not None:
            self.watch = self.watcher.watch(FlowRef.of(self.last[0]))
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
        self.title_text = f"[b]connection {row.id}[/b] · {row.client} ⇄ {row.server}{vlan} · shard {row.shard}{status}"
        self._show_title()
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
            line("retx bytes", "retrans_bytes"), line("retx segs", "retrans_packets"), line("out-order", "ooo"),
            line("zero win", "zero_win"),
        ]))
        self.query_one("#flow-zeek", Static).update(
            f"Zeek [b]{row.zeek_state}[/b]: {zeek.CONN_STATES.get(row.zeek_state, '')} "
            f"History [b]{row.history or '-'}[/b]: "
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

        self._follow()

    def _show_title(self) -> None:
        """The title; over the ladder and the picture (which hide the box that says `first`), when the connection
        started too: a reused port's incarnations, alike in everything else, differ there."""
        text = self.title_text
        if self.last is not None and (self.has_class("ladder") or self.has_class("timeseq")):
            text += f"\nstarted {start_text(self.last[0].first, self.capture_start())}"
        self.query_one("#flow-title", Static).update(text)

    def capture_start(self) -> float | None:
        """The capture's first packet time (a file's, or the first packet captured live)."""
        capture_range = getattr(self.app, "capture_range", None)
        return capture_range()[0] if capture_range is not None else None

    # -- the ladder and the packets ---------------------------------------------------------------------------
    def _follow(self) -> None:
        """The ladder or the picture on screen takes the packets that came since (live), or that the replay of a
        file reached since (and, after a seek, only those before where it landed)."""
        if self.watch is not None:
            if self.watch.version == self.watch_seen:
                return
        elif self.whole is None or not (self.has_class("ladder") or self.has_class("timeseq")) or \
                self._cut_length() == (len(self.flow.packets) if self.flow is not None else 0):
            return
        if self.has_class("ladder"):
            note = self.load_flow()
            view = self.query_one(LadderView)
            at_end = view.highlighted is None or view.highlighted >= len(view.lines) - 1
            if view.flow is None or self.flow is None:
                view.show(self.flow, note)
            else:
                view.flow = self.flow
                view.redraw()
            if at_end and view.lines:
                view.highlighted = len(view.lines) - 1
        elif self.has_class("timeseq"):
            note = self.load_flow()
            self.query_one(TimeSeqView).show(self.flow, note)

    def replay_position(self) -> float | None:
        """A file's replay: the moment the table shows (its last refresh). The flow is shown up to there: not the
        packets the table does not know yet."""
        view = getattr(self.app, "view", None)
        return getattr(view, "now", None)

    def _cut_length(self) -> int:
        """How many of the whole flow's packets are at or before the replay's position."""
        position = self.replay_position()
        if position is None:
            return len(self._times)
        return bisect.bisect_right(self._times, position + 1e-9)

    def on_unmount(self) -> None:
        if self.watch is not None and self.watcher is not None:
            self.watcher.unwatch(self.watch)
            self.watch = None

    def load_flow(self) -> str:
        """Read the flow's packets (again, if it moved on since); '' or why there are none."""
        if self.last is None:
            return "the connection has left the table"
        if self.watch is not None:
            if self.watch.version != self.watch_seen:
                self.watch_seen = self.watch.version
                self.flow = self.watch.flow()
            if not self.flow.packets:
                return ("live: no packet of this connection kept (its packets are kept from when its screen opens, "
                        "and the last ones before from its packet ring)")
            return ""
        if self.reader is None:
            return ("the flow's packets are read from the capture file again, and this one cannot be reopened "
                    "(standard input, a pipe, or a file this user may not read)")
        row = self.last[0]
        if self.whole is None:
            # the whole incarnation, to its last packet in the file (not the row's last so far: the replay goes on),
            # each checksum checked (the row's count of bad ones so far says nothing of those to come)
            ref = dataclasses.replace(FlowRef.of(row), last=math.inf, bad_checksum=-1)
            try:
                self.whole = self.reader.flow(ref, keep_frames=True)
            except MidstatError as exc:
                self.flow = None
                return str(exc)
            self._times = [packet.ts for packet in self.whole.packets]
        whole = self.whole
        count = self._cut_length()
        if count == len(whole.packets):
            self.flow = whole
        elif self.flow is None or len(self.flow.packets) != count:
            self.flow = dataclasses.replace(whole, packets=whole.packets[:count], conn=None)
        if not count and whole.packets:
            self.flow = None
            return (f"the replay is before this connection's first packet ({start_text(whole.packets[0].ts)}): "
                    "its packets appear as the replay reaches them")
        return ""

    def action_ladder(self) -> None:
        self.remove_class("timeseq")
        if self.has_class("ladder"):
            self.remove_class("ladder")
            self._show_title()
            return
        self.add_class("ladder")
        self._show_title()
        note = self.load_flow()
        view = self.query_one(LadderView)
        view.show(self.flow, note)
        view.focus()
        ring = self.ring_note()
        if ring:
            self.status = ring
            self.notify(ring)

    def ring_note(self) -> str:
        """Live: what the packet ring gave (the packets before the screen opened), '' when nothing."""
        watch = self.watch
        if watch is None or not watch.ring:
            return ""
        return (f"before this screen opened: the last {len(watch.ring):,} of {watch.ring_seen:,} packets "
                "(headers only, from the packet ring)")

    def action_timeseq(self) -> None:
        self.remove_class("ladder")
        if self.has_class("timeseq"):
            self.remove_class("timeseq")
            self._show_title()
            return
        self.add_class("timeseq")
        self._show_title()
        note = self.load_flow()
        self.query_one(TimeSeqView).show(self.flow, note)

    def action_zoom(self) -> None:
        if self.has_class("timeseq"):
            self.query_one(TimeSeqView).toggle_zoom()

    def action_absolute(self) -> None:
        view = self.query_one(LadderView)
        if self.has_class("ladder"):
            view.set_absolute(not view.absolute)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if isinstance(event.option_list, LadderView):
            event.option_list.toggle_fold(event.option_index)

    def action_write(self) -> None:
        note = self.load_flow()
        if note or self.flow is None:
            self.notify(f"nothing written: {note}", severity="error")
            return
        row = self.last[0]  # type: ignore[index]
        if not os.access(self.export_dir, os.W_OK | os.X_OK):
            self.status = f"write failed: {cannot_write_in(self.export_dir)}"
            self.notify(self.status, severity="error")
            return
        path = os.path.abspath(free_name(self.export_dir, f"midstat-flow-{row.id}", "pcap"))
        try:
            datalink = self.reader.datalink if self.reader is not None else self.watch.datalink  # type: ignore[union-attr]
            writer = PcapWriter(open_output(path), datalink, path)
            for packet in self.flow.packets:
                if packet.frame is not None:
                    writer.write(packet.ts, packet.frame)
            writer.close()
        except MidstatError as exc:
            self.status = f"write failed: {exc}"
            self.notify(self.status, severity="error")
            return
        headers = sum(1 for packet in self.flow.packets if packet.frame is None)
        more = f" ({headers:,} earlier ones are headers only, from the packet ring: not written)" if headers else ""
        self.status = f"wrote {writer.packets:,} packets to {path}{more}"
        self.notify(self.status)

    def app_rows(self) -> dict:
        view = getattr(self.app, "view", None)
        return view.rows if view is not None else {}

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_help(self) -> None:  # (the app's own `?` is the main screen's: this one shows the same keys from here)
        from midstat_tui.ui.help_screen import HelpScreen

        self.app.push_screen(HelpScreen())


def reader_for(session) -> FlowReader | None:
    """The capture file a session replays, to read a flow's packets from again (None live or for a stream): the
    one opened before root was given up (engine.run), else opened now."""
    if getattr(session, "live", True):
        return None
    opened = getattr(session, "flow_reader", None)
    if opened is not None:
        return opened
    job = getattr(session, "job", None)
    path = job.path if job is not None else getattr(session, "name", None)
    if not path or path == "-":
        return None
    engine = getattr(session, "engine", None)
    if engine is not None:
        config, checksums, bpf = engine.tracker.config, engine.checksums, getattr(session, "bpf", None)
    else:
        config, checksums, bpf = job.config, job.checksum_policy(), job.bpf
    try:
        return FlowReader(path, config, checksums, bpf=bpf)
    except MidstatError:
        return None
