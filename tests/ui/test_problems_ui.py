"""The problems lens in the TUI (Pilot, real sessions over real captures): the header's badge, `p`, its counts and
connections, Enter on a kind filtering the table, thresholds set in the TUI, and a snapshot of the screen."""

from __future__ import annotations

from textual.widgets import DataTable, Input, Static

from midstat_tui.problems import KIND_NAMES
from midstat_tui.ui.app import MidstatApp
from midstat_tui.ui.flow_screen import FlowScreen
from midstat_tui.ui.problems_screen import ProblemsScreen, ThresholdScreen
from tests.helpers import FIXTURES
from tests.ui.conftest import make_app

SIZE = (120, 34)
PROBLEMS = FIXTURES / "problems"


def _line1(app: MidstatApp) -> str:
    return str(app.query_one("#summary-line1", Static).render())


async def test_the_header_badge_counts_the_problems(app):
    async with app.run_test(size=SIZE):
        assert app.view.problem_counts["refused"] == 3 and app.view.problem_counts["reset"] == 6
        assert _line1(app).rstrip().endswith("⚠ 9 problems (p)")


async def test_no_badge_on_a_clean_capture(tmp_path):
    app = make_app(FIXTURES / "close_client_first.pcap", tmp_path)
    async with app.run_test(size=SIZE):
        assert sum(app.view.problem_counts.values()) == 0
        assert "problem" not in _line1(app)


async def test_p_lists_each_kind_and_enter_filters_the_table_to_it(app):
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("p")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, ProblemsScreen)
        kinds = screen.query_one("#problems-kinds", DataTable)
        counts = {name: str(kinds.get_cell(name, "connections")) for name in KIND_NAMES}
        assert counts["refused"] == "3" and counts["reset"] == "6" and counts["close_wait"] == "·"
        listing = screen.query_one("#problems-list", DataTable)
        assert listing.row_count == 9
        # the cursor's kind says what it means
        await pilot.press("down", "down", "down")   # refused
        assert "SYN was answered by a RST" in str(screen.query_one("#problems-meaning", Static).render())
        await pilot.press("a")                      # list that kind only
        assert listing.row_count == 3
        await pilot.press("enter")
        await pilot.pause()
        assert not isinstance(app.screen, ProblemsScreen)
        assert app.view.query == "problem refused"
        rows = [app.view.rows[i] for i in app.view.order]
        assert len(rows) == 3 and {r.zeek_state for r in rows} == {"REJ"}
        assert "filter: problem refused" in str(app.query_one("#status", Static).render())


async def test_enter_on_a_listed_connection_opens_its_flow(app):
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("p")
        await pilot.pause()
        app.screen.query_one("#problems-list", DataTable).focus()
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, FlowScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, ProblemsScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert app.view.query == ""


async def test_a_threshold_set_in_the_tui_finds_the_stuck_server(tmp_path):
    """The close_wait capture: the server sat 2 s in CLOSE_WAIT, not a problem at the default 10 s; at 1 s it is."""
    app = make_app(PROBLEMS / "close_wait.pcap", tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        assert sum(app.view.problem_counts.values()) == 0
        await pilot.press("p")
        await pilot.pause()
        await pilot.press("T")
        await pilot.pause()
        assert isinstance(app.screen, ThresholdScreen)
        field = app.screen.query_one(Input)
        assert field.value == "close_wait="   # the kind under the cursor
        await pilot.press(*"soon", "enter")
        await pilot.pause()
        assert "is not a number" in str(app.screen.query_one("#threshold-error", Static).render())
        field.value = "close_wait=1"
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ProblemsScreen)
        assert app.view.lens.thresholds == {"close_wait": 1.0}
        assert app.view.problem_counts["close_wait"] == 1
        kinds = app.screen.query_one("#problems-kinds", DataTable)
        assert str(kinds.get_cell("close_wait", "threshold")) == "1 s"
        listing = app.screen.query_one("#problems-list", DataTable)
        assert listing.row_count == 1 and "10.231.2.1:5101" in str(listing.get_row_at(0))
        await pilot.press("escape")
        await pilot.pause()
        app.tick()
        await pilot.pause()
        assert _line1(app).rstrip().endswith("⚠ 1 problem (p)")


async def test_the_filter_term_follows_the_moment(tmp_path):
    """`problem unanswered_syn` depends on time: rewound to before the SYNs were 3 s old, nothing matches."""
    app = make_app(PROBLEMS / "unanswered_syn.pcap", tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("slash", *"problem unanswered_syn", "enter")
        await pilot.pause()
        assert len(app.view.order) == 4
        app.view.now -= 2.0   # as if the table were two seconds younger
        app.view.recompute()
        assert app.view.order == []
        assert app.view.problem_counts["unanswered_syn"] == 0


def test_problems_screen_snapshot(snap_compare, tmp_path):
    async def run_before(pilot):
        await pilot.press("p")
        await pilot.pause()

    assert snap_compare(make_app(tmp_path=tmp_path), terminal_size=(110, 30), run_before=run_before)


async def test_ipv6_endpoints_are_listed_whole(app):
    """mixed_traffic holds reset IPv6 connections: their [address]:port is shown as it is, not read as markup."""
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("p")
        await pilot.pause()
        listing = app.screen.query_one("#problems-list", DataTable)
        cells = [str(listing.get_cell_at((r, c))) for r in range(listing.row_count) for c in (1, 2)]
        v6 = [cell for cell in cells if cell.startswith("[")]
        assert v6 and all("]:" in cell and "::" in cell for cell in v6), cells
        assert not [cell for cell in cells if cell.startswith(":")], cells


async def test_unanswered_syns_are_grouped_by_destination_and_source_as_headless_says(tmp_path):
    """On `unanswered_syn` the lens says where the SYNs went and where they came from, as `--problems` prints it."""
    import subprocess
    import sys

    from tests.helpers import ROOT

    capture = PROBLEMS / "unanswered_syn.pcap"
    printed = subprocess.run([sys.executable, "-m", "midstat_tui", "-r", str(capture), "--problems"],
                             capture_output=True, text=True, check=True, cwd=ROOT).stdout
    expected = [line.strip() for line in printed.splitlines() if line.strip().startswith(("by destination",
                                                                                           "by source"))]
    assert len(expected) == 2
    app = make_app(capture, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("p")
        await pilot.pause()
        screen = app.screen
        kinds = screen.query_one("#problems-kinds", DataTable)
        while screen._cursor_kind() != "unanswered_syn":
            await pilot.press("down")
        meaning = str(screen.query_one("#problems-meaning", Static).render())
        assert [line.strip() for line in meaning.splitlines()[1:]] == expected
        assert kinds.cursor_row == KIND_NAMES.index("unanswered_syn")


async def test_the_badge_stays_on_the_first_line_at_80_columns(app):
    """At 80x24 the badge shortens (`⚠ 9 (p)`) and comes first, rather than wrap the header's first line onto a
    second or be cut off its end."""
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        line1 = app.query_one("#summary-line1", Static)
        assert line1.size.height == 1
        assert _line1(app).startswith(" ⚠ 9 (p)  midstat mixed_traffic.pcap")
    async with make_app().run_test(size=(160, 24)) as pilot:  # where it fits: the long one, at the end
        await pilot.pause()
        assert _line1(pilot.app).rstrip().endswith("⚠ 9 problems (p)")
