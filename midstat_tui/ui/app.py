"""The midstat TUI: the connection table over the engine's one-second snapshots, with a header, a filter bar,
flow drill-down, help, a column chooser, replay controls and exports."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Footer, Input, Static

from midstat_tui import early_signals
from midstat_tui.columns import BY_KEY, COLUMNS
from midstat_tui.conn_view import ConnView
from midstat_tui.engine.collector import settle
from midstat_tui.engine.driver import Tick
from midstat_tui.engine.groups import GROUP_KEYS, GROUP_TITLES
from midstat_tui.engine.session import Session, merged_ticks
from midstat_tui.query import QueryError, keywords_used
from midstat_tui.services import Services, load_services
from midstat_tui.ui.columns_screen import ColumnsScreen
from midstat_tui.ui.conn_table import ConnTable
from midstat_tui.ui.export import cannot_write_in, export_rows
from midstat_tui.ui.flow_screen import FlowScreen, reader_for
from midstat_tui.ui.goto_screen import GotoScreen
from midstat_tui.ui.group_table import SORT_FIELDS, GroupsTable
from midstat_tui.ui.hangup import HangupDriver
from midstat_tui.ui.header import HeaderFacts, SummaryHeader
from midstat_tui.ui.help_screen import HelpScreen
from midstat_tui.ui.problems_screen import ProblemsScreen
from midstat_tui.ui.quick_filter import QuickFilterScreen, combined, quick_term

SPEEDS = (0.0, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 100.0)
SEEK_STEP = 10.0
APPLY_SLICE = 10_000  # rows applied from a pull in one step (some 10 ms as records, 50-100 ms as Python rows)
APPLY_BUDGET = 0.04  # seconds of steps before the loop answers keys again (each wait between two costs the end)
GG_SECONDS = 0.6   # live: two `g`s this close are `gg`
MIN_REFRESH = 0.9  # of the interval: a Tick that comes sooner after the last one shown waits until then
# the engine's thread and the app's share the interpreter lock: each of the app's numpy steps lets go of it and then
# waits up to this long for the busy engine to give it back (5 ms by default: a flood's slice of some hundred steps
# stood 0.5-0.8 s; benchmarks/RESULTS.md, "the switch interval")
SWITCH_INTERVAL = 0.001


class TickArrived(Message):
    """A Tick of the engine's clock (core 0's, on several cores), posted from the engine's thread as it is made
    (session.listen), as a reader thread posts to its view."""

    def __init__(self, tick: Tick) -> None:
        super().__init__()
        self.tick = tick


class FilterInput(Input):
    """The `/` bar: Enter applies, Esc clears, ↑ ↓ walk the filter history."""

    BINDINGS = [Binding("up", "history(-1)", show=False), Binding("down", "history(1)", show=False)]

    def __init__(self, **kwargs) -> None:
        super().__init__(placeholder="filter: host, net, port, sport, dport, state, cstate, sstate, vlan, "
                                     "midstream, ended, zeek, problem; and/or/not", **kwargs)
        self.history: list[str] = []
        self._at = 0

    def remember(self, text: str) -> None:
        if text and (not self.history or self.history[-1] != text):
            self.history.append(text)
        self._at = len(self.history)

    def action_history(self, step: int) -> None:
        if not self.history:
            return
        self._at = max(0, min(len(self.history), self._at + step))
        self.value = self.history[self._at] if self._at < len(self.history) else ""
        self.cursor_position = len(self.value)


class MidstatApp(App[None]):
    TITLE = "midstat"
    CSS = """
    #filter { display: none; height: 3; }
    #filter.-visible { display: block; }
    #status { height: 1; padding: 0 1; color: $text-muted; }
    #status.-error { color: $error; }
    #groups, #states { display: none; }
    #states { height: 1; padding: 0 1; }
    .-grouped #groups, .-grouped #states { display: block; }
    .-grouped #conns { display: none; }
    """
    BINDINGS = [
        # help and quit first: the footer shows as many as fit, from the left, and these must stay on 80 columns
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
        Binding("slash", "open_filter", "Filter"),
        Binding("s", "next_sort", "Sort"),
        Binding("S", "reverse_sort", "Reverse", show=False),
        Binding("t", "toggle_ended", "Ended"),
        Binding("space", "pause", "Pause"),
        Binding("c", "columns", "Columns"),
        Binding("v", "cycle_view", "Group"),
        Binding("f", "quick_filter", "Quick filter", show=False),
        Binding("G", "last_row", "Last row", show=False),
        Binding("n", "toggle_names", "Names", show=False),
        Binding("e", "export('csv')", "Export"),
        Binding("E", "export('json')", "JSON", show=False),
        Binding("plus", "speed(1)", "Faster", show=False),
        Binding("minus", "speed(-1)", "Slower", show=False),
        Binding("full_stop", "step", "Step", show=False),
        Binding("left_square_bracket", "seek(-1)", "Back", show=False),
        Binding("right_square_bracket", "seek(1)", "Fwd", show=False),
        Binding("g", "goto", "Go to", show=False),
        Binding("p", "problems", "Problems"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
    ]

    def __init__(self, session: Session, interval: float | None = 1.0, show_load: bool = True,
                 export_dir: str = ".") -> None:
        super().__init__(driver_class=HangupDriver)  # a terminal that goes away ends the app (ui.hangup)
        self.terminal_lost = False  # set by the driver when the terminal hung up
        self.session = session
        self.interval = interval
        self.show_load = show_load
        self.export_dir = export_dir
        self.flow_reader = None  # the capture file a flow screen reads packets from (made when one opens)
        self.view = ConnView()
        self.shown_columns = [c.key for c in COLUMNS if c.default]
        self.columns_chosen = False   # the user picked the columns: VLAN no longer appears by itself
        self.frozen = False
        self._switch_interval: float | None = None  # the interpreter's, given back on leaving (SWITCH_INTERVAL)
        self.stats: dict = {}
        # --metrics: each second's pulled stats and the problems lens's counts by kind
        self.on_stats: Callable[[float, dict, dict[str, int]], None] | None = None
        self._metrics_at: float | None = None
        self._drawn_at = 0.0              # monotonic time the table was last sorted and drawn
        self._catching_up: Timer | None = None  # the next slice of a big pull, when one is due
        self.table = ConnTable(self.view, self._columns(), id="conns")
        self.groups = GroupsTable(id="groups")
        self.grouping: str | None = None       # the grouped view's key (engine.groups.GROUP_KEYS), None: connections
        self._last_g = 0.0
        self._filter_before = ""
        self._services: Services | None = None  # read once, at the first `n`
        self._names_seen = 0  # how many host names the last pull knew
        self._held: Tick | None = None     # a Tick not shown yet (too soon after the last one, or the view frozen)
        self._held_timer: Timer | None = None
        self._shown_at = -1e9              # monotonic time the last Tick was shown
        self.tick_rates: dict = {}         # the last Tick's rates (the header's)

    def _columns(self):
        return [BY_KEY[k] for k in self.shown_columns]

    def compose(self) -> ComposeResult:
        yield SummaryHeader(id="summary")
        yield FilterInput(id="filter")
        yield Static(id="states")
        yield self.groups
        yield self.table
        yield Static(id="status")
        yield Footer(compact=True)

    _MAIN_ONLY = frozenset({"open_filter", "next_sort", "reverse_sort", "toggle_ended", "pause", "columns",
                            "export", "speed", "step", "seek", "goto", "help", "problems", "cycle_view",
                            "quick_filter", "last_row", "toggle_names"})

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The table's keys belong to the main screen: hidden and inactive over the flow and dialog screens."""
        return not (action in self._MAIN_ONLY and len(self.screen_stack) > 1)

    def on_mount(self) -> None:
        # SIGTERM (kill, systemd), SIGHUP (the SSH session dropped) and a SIGINT sent by `kill` (Ctrl-C in the
        # terminal is a key here) leave like `q`: the terminal is restored
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, self.exit)
        if early_signals.HELD:  # one came while midstat was still starting
            self.exit()
            return
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(SWITCH_INTERVAL, self._switch_interval))
        self.table.focus()
        self.tick()
        if self.interval:
            if hasattr(self.session, "listen"):  # each Tick comes as a message, as the engine closes its seconds
                self.session.listen(self._post_tick)
            else:
                self.set_interval(self.interval, self.tick)

    def on_unmount(self) -> None:
        if self._switch_interval is not None:
            sys.setswitchinterval(self._switch_interval)
        if hasattr(self.session, "listen"):
            self.session.listen(None)
        self.session.stop()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signum)

    # -- the one-second refresh: each Tick of the engine's clock ------------------------------------------------
    def _post_tick(self, tick: Tick) -> None:
        """(The engine's thread.) A Tick for the app's loop."""
        self.post_message(TickArrived(tick))

    def on_tick_arrived(self, message: TickArrived) -> None:
        """A Tick is shown as it comes, no sooner than MIN_REFRESH of the interval after the last one (a replay as
        fast as it goes closes many seconds a second: those wait, merged, for the next refresh). One of APPLY_SLICE
        changed rows or more (a flood's second, or a part of it) is taken at once: its slices are applied while the
        engine goes on, and drawn once a second meanwhile."""
        self._held = merged_ticks(self._held, message.tick)
        big = len(self._held.changes) >= APPLY_SLICE  # a flood's: applied at once, in slices (drawn once a second)
        if self._held_timer is not None:
            if not big:
                return
            self._held_timer.stop()
            self._held_timer = None
        wait = self._shown_at + MIN_REFRESH * (self.interval or 1.0) - time.monotonic()
        if wait > 0 and not big:
            self._held_timer = self.set_timer(wait, self._show_held)
        else:
            self._show_held()

    def _show_held(self) -> None:
        self._held_timer = None
        if not self.is_running:
            return
        self._shown_at = time.monotonic()
        tick = None
        if not self.frozen:  # (frozen, the Ticks are kept, merged, for when it thaws; the header still moves)
            tick, self._held = self._held, None
        self._show(tick)
        self.session.delivered()  # the next Tick may come

    def tick(self) -> None:
        """Pull what the session has now and show it (tests step the app with it; a session that sends no Ticks
        is pulled on a timer)."""
        self._show(None if self.frozen else self.session.pull())

    def _show(self, pulled: Tick | None) -> None:
        session = self.session
        if pulled is not None:
            self.stats = pulled.stats
            self.tick_rates = pulled.rates
            self._take_names(pulled.names)
            self._metrics_at = pulled.position  # --metrics: this second's figures, once its rows are applied
            self.view.take(pulled)
        if self._catching_up is not None:  # this tick applies the next slice itself
            self._catching_up.stop()
        self._apply_slice(first=True)
        if session.error:
            self._status(f"{session.error} — what was tracked stays browsable", error=True)

    def _apply_slice(self, first: bool = False) -> None:
        """Apply what was pulled. The usual second's changes at once, then the table is sorted and drawn. A flood
        hands hundreds of thousands of new rows over in one pull: those are applied APPLY_SLICE at a time, for up to
        APPLY_BUDGET seconds a turn, the loop answering keys between turns, and what is applied so far is drawn
        once a second meanwhile (not a whole table's part: the last picture stays until all of it is in)."""
        self._catching_up = None
        if not self.is_running:  # shutting down: the screens are gone before the timers stop
            return
        view = self.view
        if view.behind <= APPLY_SLICE:
            view.catch_up()
            self._applied()
            self._redraw()
            if self.on_stats is not None and self._metrics_at is not None:
                # the problems by kind: the lens's counts of this second, as the header's badge shows them
                self.on_stats(self._metrics_at, self.stats, dict(view.problem_counts))
                self._metrics_at = None
            return
        if not first and time.monotonic() - self._drawn_at >= 1.0 and not view.replacing:
            self._redraw()  # (a whole table is drawn once all in: half of it would look like rows lost)
        else:
            started = time.monotonic()
            view.catch_up(APPLY_SLICE)
            while view.behind > APPLY_SLICE and time.monotonic() - started < APPLY_BUDGET:
                view.catch_up(APPLY_SLICE)
            self._applied()
        self._catching_up = self.set_timer(0.002, self._apply_slice)

    def _applied(self) -> None:
        settle(len(self.view.rows))  # a big table stays out of the collector's passes (engine.collector)
        if self.view.has_vlan and "vlan" not in self.shown_columns and not self.columns_chosen:
            # rows that differ only by their VLAN would look identical without it
            self.shown_columns = [c.key for c in COLUMNS if c.key in self.shown_columns or c.key == "vlan"]
            self.table.set_columns(self._columns())

    def capture_range(self) -> tuple[float | None, float | None]:
        """A file's first and last packet time: from the side scan once it is done, else what the replay knows."""
        session = self.session
        span = getattr(session, "span", None)
        if span is not None:
            return span
        last = session.position if session.at_end else None
        return session.first_ts, last

    def _show_header(self) -> None:
        session = self.session
        first, last = self.capture_range()
        stopped = None
        reason = getattr(session, "stopped", session.error)  # (on several cores, a lost worker stops no capture)
        if session.live and (reason or session.finished):
            stopped = reason or "the capture ended"
        elif not session.live and getattr(session, "stopped", None):  # a file's every shard worker is gone
            stopped = session.stopped
        self.query_one(SummaryHeader).show(HeaderFacts(
            source=session.name, bpf=session.bpf, live=session.live, position=self.view.now if self.frozen else
            session.position, first=first, last=last, speed=session.speed,
            paused=self.frozen if session.live else session.paused, at_end=session.at_end, stopped=stopped,
            stats=self.stats, counters=dict(getattr(session, "_stats", None) or self.stats),
            rates=dict(self.tick_rates), shown=self.view.shown_count, rows=len(self.view.rows),
            show_load=self.show_load, spark_active=list(session.spark_active), spark_pps=list(session.spark_pps),
            problems=sum(self.view.problem_counts.values())))

    def _status(self, text: str, error: bool = False) -> None:
        status = self.query_one("#status", Static)
        status.update(text)
        status.set_class(error, "-error")

    def _redraw(self) -> None:
        self._drawn_at = time.monotonic()
        self.view.recompute(sort=not self._grouped())
        self.table.refresh_view()
        self._show_groups()
        self._show_header()

    # -- grouped view ----------------------------------------------------------------------------------------------
    def _show_groups(self) -> None:
        """In the grouped view: the groups of what the filter passes, and the state-pair summary line (`ss -s`)."""
        if self.grouping is None:
            return
        self.groups.show(self.view.groups(self.grouping))
        states = self.view.groups("states")
        states.sort("connections", True)
        total = int(states.columns["connections"].sum()) if len(states) else 0
        pairs = " · ".join(f"{int(states.columns['connections'][i])} {states.label(i)}"
                           for i in states.order[:6].tolist())
        more = f" · {len(states) - 6} more" if len(states) > 6 else ""
        self.query_one("#states", Static).update(f"{total} connections: {pairs}{more}" if total else
                                                  "no connections pass the filter")

    def action_cycle_view(self) -> None:
        """v: connections -> by server -> server host -> client host -> state pair -> VLAN -> Zeek -> connections."""
        order = [None, *GROUP_KEYS]
        self.grouping = order[(order.index(self.grouping) + 1) % len(order)]
        self.view.pin = None
        self._enter_view()

    def _enter_view(self) -> None:
        grouped = self.grouping is not None and self.view.pin is None
        self.screen.set_class(grouped, "-grouped")
        if grouped:
            self.groups.focus()
            self._status(f"grouped by {GROUP_TITLES[self.grouping].lower()} · v: next grouping · Enter: its "
                         "connections")
        else:
            self.table.focus()
            if self.view.pin is not None:
                grouping, _, label = self.view.pin
                self._status(f"{GROUP_TITLES[grouping].lower()} {label} · Esc: back to the groups")
            else:
                self._status(f"filter: {self.view.query}" if self.view.query else "")
        self._redraw()

    def on_groups_table_selected(self, message: GroupsTable.Selected) -> None:
        self.view.pin = (message.grouping, message.code, message.label)
        self.table.cursor = 0
        self._enter_view()

    def on_groups_table_sort_requested(self, message: GroupsTable.SortRequested) -> None:
        groups = self.groups
        if message.field == groups.sort_field:
            groups.sort_reverse = not groups.sort_reverse
        else:
            groups.sort_field, groups.sort_reverse = message.field, message.field != "key"
        self._redraw()

    # -- filter -----------------------------------------------------------------------------------------------
    def action_open_filter(self) -> None:
        bar = self.query_one(FilterInput)
        self._filter_before = self.view.query  # what an invalid Enter goes back to (typing applies as it goes)
        bar.add_class("-visible")
        bar.value = self.view.query
        bar.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "filter":
            return
        bar = self.query_one(FilterInput)
        try:
            self.view.set_query(event.value)
        except QueryError as exc:
            self.view.set_query(self._filter_before)
            self._redraw()
            self._status(f"filter not applied: {exc}; the previous filter stays", error=True)
            bar.cursor_position = exc.position
            return
        bar.remember(event.value.strip())
        bar.remove_class("-visible")
        self._enter_view()
        self._show_filter()

    def on_input_changed(self, event: Input.Changed) -> None:
        """Search as you type: each valid expression applies at once (Enter keeps it in the history, Esc clears);
        one that does not parse yet leaves the last valid one."""
        if event.input.id != "filter" or not event.input.has_class("-visible"):
            return
        try:
            self.view.set_query(event.value)
        except QueryError:
            return
        self._redraw()

    def action_quick_filter(self) -> None:
        """f, then s / c / p / t: keep the connections with the selected row's server, client host, server port or
        state pair (added to the current filter)."""
        conn_id = self.table.cursor_id
        if self._grouped() or conn_id is None or conn_id not in self.view.rows:
            self._status("quick filters take a connection row: select one in the connection table", error=True)
            return
        row = self.view.rows[conn_id]

        def picked(choice: str | None) -> None:
            if not choice:
                return
            query = combined(self.view.query, quick_term(choice, row))
            self.view.set_query(query)
            self.query_one(FilterInput).remember(query)
            self._show_filter()
            self._redraw()
        self.push_screen(QuickFilterScreen(row), picked)

    def _show_filter(self) -> None:
        query = self.view.query
        if query and not self.view.show_ended and "ended" in keywords_used(query):
            self._status(f"filter: {query} · ended connections are hidden: t shows them", error=True)
        else:
            self._status(f"filter: {query}" if query else "")

    def key_escape(self) -> None:
        bar = self.query_one(FilterInput)
        if self.screen.query("HelpPanel"):  # the command palette's Keys panel: Esc closes it, as other panels
            self.action_hide_help_panel()
            return
        if bar.has_focus:
            self.view.set_query("")
            bar.value = ""
            bar.remove_class("-visible")
            self._status("")
            self._enter_view()
        elif self.view.pin is not None and len(self.screen_stack) == 1:  # a group's connections: back to the groups
            self.view.pin = None
            self._enter_view()

    # -- sort, columns, ended -------------------------------------------------------------------------------
    def action_next_sort(self) -> None:
        if self._grouped():
            groups = self.groups
            field = SORT_FIELDS[(SORT_FIELDS.index(groups.sort_field) + 1) % len(SORT_FIELDS)]
            groups.sort_field, groups.sort_reverse = field, field != "key"
        else:
            self.view.next_sort(self.shown_columns)
        self._redraw()

    def action_reverse_sort(self) -> None:
        if self._grouped():
            self.groups.sort_reverse = not self.groups.sort_reverse
        else:
            self.view.sort_reverse = not self.view.sort_reverse
        self._redraw()

    def _grouped(self) -> bool:
        return self.grouping is not None and self.view.pin is None

    def on_conn_table_sort_requested(self, message: ConnTable.SortRequested) -> None:
        self.view.sort_by(message.key)
        self._redraw()

    def action_toggle_ended(self) -> None:
        self.view.show_ended = not self.view.show_ended
        if self.view.query:
            self._show_filter()
        else:
            self._status("ended connections shown" if self.view.show_ended else "ended connections hidden")
        self._redraw()

    def action_columns(self) -> None:
        def chosen(keys: list[str] | None) -> None:
            if keys:
                self.columns_chosen = True
                self.shown_columns = keys
                self.table.set_columns(self._columns())
        self.push_screen(ColumnsScreen(self.shown_columns), chosen)

    # -- flow, help ----------------------------------------------------------------------------------------
    def on_conn_table_selected(self, message: ConnTable.Selected) -> None:
        if self.flow_reader is None:
            self.flow_reader = reader_for(self.session)
        self.push_screen(FlowScreen(message.conn_id, self.session.connection, interval=self.interval,
                                    reader=self.flow_reader, export_dir=self.export_dir,
                                    watcher=self.session if hasattr(self.session, "watch") else None))

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    # -- replay and pause -------------------------------------------------------------------------------------
    def action_pause(self) -> None:
        if self.session.live:
            self.frozen = not self.frozen
            if not self.frozen and self._held is not None:  # what came while frozen, at once
                self._show_held()
                return
        else:
            self.session.toggle_pause()
        self._show_header()

    def action_speed(self, direction: int) -> None:
        if self.session.live:
            return
        current = self.session.speed
        faster = [s for s in SPEEDS if s > current and s != 0.0]
        slower = [s for s in SPEEDS if 0 < s < current]
        if direction > 0:
            speed = faster[0] if faster and current != 0.0 else 0.0
        else:
            speed = slower[-1] if slower else (SPEEDS[-1] if current == 0.0 else current)
        self.session.set_speed(speed)
        self._show_header()
        if self.session.paused or self.session.at_end:  # the header says the speed only while playing
            pace = "as fast as possible" if speed == 0 else f"×{speed:g}"
            when = "when the replay plays again (Space)" if self.session.paused else "after a seek back"
            self.notify(f"speed: {pace}, {when}", timeout=3)

    def action_step(self) -> None:
        if not self.session.live and self.session.paused:
            self.session.step(1.0)

    def action_seek(self, direction: int) -> None:
        position = self.session.position
        if self.session.live or position is None:
            return
        target = position + direction * SEEK_STEP
        if target < position and not self._rewindable():
            return
        first, last = self.capture_range()
        # `[` and `]` stop at the capture's ends (g goes anywhere inside)
        if first is not None and target < first:
            target = first
            self._status("at the first packet of the capture")
        elif last is not None and target > last:
            target = last
            self._status("at the last packet of the capture")
        self.session.seek(target)

    def _rewindable(self) -> bool:
        """Can the replay go back? Not on a pipe or standard input, which are read once (said in the status)."""
        source = getattr(self.session, "source", None)
        if source is None or getattr(source, "seekable", True):
            return True
        self._status("a pipe or standard input is read once: going back needs a capture file (-r FILE)", error=True)
        return False

    def _take_names(self, names) -> None:
        """The host names learned so far (engine.names): what `n` shows and the filter term `name` reads. A filter
        that uses `name` is judged again when more names are known."""
        if names is None:
            return
        lookup = self.view.names
        grew = lookup.target is not names or len(names) != self._names_seen
        lookup.target = names
        self._names_seen = len(names)
        if self.table.hosts is not None:
            self.table.hosts = names
        if grew and self.view.query and "name" in keywords_used(self.view.query):
            self.view.set_query(self.view.query)

    def action_toggle_names(self) -> None:
        """n cycles: numbers -> ports as service names (from /etc/services, or the shipped list when it is missing)
        -> also addresses as the host names learned from the traffic (DNS answers, TLS SNI, HTTP Host) -> numbers."""
        if self.table.hosts is not None:
            self.table.services = None
            self.table.hosts = None
            self._status("ports and addresses as numbers")
        elif self.table.services is not None:
            self.table.hosts = self.view.names.target or {}
            known = len(self.table.hosts.names()) if self.table.hosts else 0  # distinct names
            self._status(f"addresses as learned host names ({known} known), ports as service names "
                         "· n: numbers")
        else:
            if self._services is None:
                self._services = load_services()
            self.table.services = self._services
            self._status(f"ports as service names, from {self._services.source} · n: host names too")
        self.groups.services, self.groups.hosts = self.table.services, self.table.hosts  # the groups' keys alike
        self.table.refresh_view()
        if self._grouped() and self.groups.table is not None:
            self.groups.show(self.groups.table)

    def action_last_row(self) -> None:
        """G: to the last row (of the groups, in the grouped view)."""
        (self.groups if self._grouped() else self.table).action_last()

    def first_row(self) -> None:
        """gg: to the first row."""
        (self.groups if self._grouped() else self.table).action_first()

    def action_goto(self) -> None:
        if self.session.live:  # no time to go to: `g` `g` is the first row
            now = time.monotonic()
            if now - self._last_g < GG_SECONDS:
                self.first_row()
                now = 0.0
            self._last_g = now
            return

        def go(target: float | None) -> None:
            position = self.session.position
            if target is None or (position is not None and target < position and not self._rewindable()):
                return
            self.session.seek(target)
        first, last = self.capture_range()
        # a second `g` (no time has one) closes the dialog and goes to the first row: `gg`
        self.push_screen(GotoScreen(first, last, self.session.position, on_g=self.first_row), go)

    # -- the problems lens ---------------------------------------------------------------------------------------
    def action_problems(self) -> None:
        def chosen(kind: str | None) -> None:
            if kind is None:
                self._redraw()
                return
            self.view.set_query(f"problem {kind}")
            self.query_one(FilterInput).remember(self.view.query)
            self._show_filter()
            self._redraw()
        self.push_screen(ProblemsScreen(interval=self.interval), chosen)

    # -- export --------------------------------------------------------------------------------------------------
    def action_export(self, fmt: str) -> None:
        try:
            path = export_rows(self.view.visible(), fmt, self.export_dir, names=self.view.names)
        except PermissionError:
            self._status(f"export failed: {cannot_write_in(self.export_dir)}", error=True)
            return
        except OSError as exc:
            self._status(f"export failed: {exc}", error=True)
            return
        path = os.path.abspath(path)
        count = len(self.view.order)
        self._status(f"exported {count:,} connection{'' if count == 1 else 's'} to {path}")
        self.notify(f"exported to {path}")
