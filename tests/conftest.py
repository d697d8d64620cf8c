"""Settings for the whole suite."""

from __future__ import annotations

import os

if os.environ.get("PYTEST_XDIST_WORKER"):
    # a pytest-xdist worker is started with COLUMNS=80 and LINES=24 in its environment, which a plain pytest run
    # does not have: every midstat the tests start would inherit them (a TUI in a 120-column tmux pane would draw
    # 80 columns, --help would wrap at 80). The workers run with the environment the suite is run in.
    for name in ("COLUMNS", "LINES"):
        os.environ.pop(name, None)
