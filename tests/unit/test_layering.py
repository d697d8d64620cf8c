"""The core imports nothing from the UI: textual and rich stay out of every module but midstat_tui.ui."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import midstat_tui

CORE = sorted(m.name for m in pkgutil.walk_packages(midstat_tui.__path__, "midstat_tui.")
              if not m.name.startswith("midstat_tui.ui") and m.name != "midstat_tui.__main__")


def test_core_modules_do_not_import_the_ui():
    assert "midstat_tui.tcp.machine" in CORE and "midstat_tui.view" in CORE and "midstat_tui.cli" in CORE
    code = ("import sys\n"
            + "".join(f"import {name}\n" for name in CORE)
            + "bad = [m for m in sys.modules if m.split('.')[0] in ('textual', 'rich')]\n"
            + "print(','.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
