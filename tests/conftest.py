"""Settings for the whole suite."""

from __future__ import annotations

import os

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # a pytest-xdist worker is started with COLUMNS=80 and LINES=24 in its environment, which a plain pytest run
    # does not have: every midstat the tests start would inherit them (a TUI in a 120-column tmux pane would draw
    # 80 columns, --help would wrap at 80). The workers run with the environment the suite is run in.
    for name in ("COLUMNS", "LINES"):
        os.environ.pop(name, None)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """With `--dist loadgroup`, the tests that share a module's set-up (a module-scoped fixture of the suite's own:
    a network lab, a generated capture) run on one worker, in one group per module, so it is made once; every
    other test goes to whichever worker is free (a module of 200 independent runs is not left to one worker)."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    for item in items:
        defs = getattr(item, "_fixtureinfo", None)
        if defs is None:
            continue
        shared = any(fixture.scope == "module" and fixture.baseid
                     for chain in defs.name2fixturedefs.values() for fixture in chain)
        if shared:
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))
