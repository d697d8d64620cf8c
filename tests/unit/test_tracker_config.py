"""The tracker's settings are built by the engine (engine.run.tracker_config), not by the CLI: the CLI parses its
options and hands their values over (issue #11: the CLI does no engine work)."""

from __future__ import annotations

import ast

import pytest

from midstat_tui.engine.run import tracker_config
from midstat_tui.errors import MidstatError
from midstat_tui.tcp.states import ESTABLISHED, SYN_SENT
from tests.helpers import ROOT


def test_timeouts_given_as_state_equals_seconds_replace_those_states_timeouts():
    config = tracker_config(30.0, 5.0, 1000, ["ESTABLISHED=3600", "syn-sent=7.5"])
    assert (config.time_wait, config.linger, config.max_conns) == (30.0, 5.0, 1000)
    assert config.idle_timeouts[ESTABLISHED] == 3600.0
    assert config.idle_timeouts[SYN_SENT] == 7.5
    assert tracker_config(30.0, 5.0, 1000).idle_timeouts[ESTABLISHED] != 3600.0


@pytest.mark.parametrize("item", ["ESTABLISHED", "NOSUCH=3", "ESTABLISHED=x", "ESTABLISHED=nan", "ESTABLISHED=-1",
                                  "ESTABLISHED=1e12"])
def test_a_bad_timeout_is_a_one_line_error_with_status_2(item):
    with pytest.raises(MidstatError) as exc:
        tracker_config(60.0, 60.0, 10, [item])
    assert str(exc.value).startswith("--timeout ") and item in str(exc.value) and "\n" not in str(exc.value)
    assert exc.value.status == 2


def test_the_cli_builds_no_tracker_config_itself():
    """No TrackerConfig made and no state name parsed in cli.py: that is engine work."""
    tree = ast.parse((ROOT / "midstat_tui" / "cli.py").read_text())
    called = {node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    assert not called & {"TrackerConfig", "parse_state"}
