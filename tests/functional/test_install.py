"""What a new user meets when installing: the set-up commands CI runs are README's, and a machine that could not
compile the core says so once, at start, and still gives the same results."""

from __future__ import annotations

import os
import re
import shutil
import site
import subprocess
import sys

import pytest

from tests.helpers import FIXTURES, ROOT


def _readme_command(step: str) -> str:
    readme = (ROOT / "README.md").read_text()
    block = re.search(rf"<!-- ci:{step} -->\s*```[a-z]*\n(.*?)```\s*<!-- /ci:{step} -->", readme, re.S)
    assert block, f"README.md has no ci:{step} block"
    return block.group(1).strip()


def test_the_readme_set_up_commands_use_the_distributions_python():
    """PEP 668: no pip into the system interpreter; the install script makes a venv with /usr/bin/python3."""
    run, test = _readme_command("run"), _readme_command("test")
    assert run.startswith("sh scripts/install.sh && midstat -r fixtures/pcaps/")
    assert test.startswith("sh scripts/install.sh --test && /opt/midstat/bin/python -m pytest")
    script = (ROOT / "scripts" / "install.sh").read_text()
    assert "python=/usr/bin/python3" in script and '"$python" -m venv' in script
    assert "pip install" not in run + test  # only the venv's pip, inside the script
    ci = (ROOT / ".ci" / "run").read_text()
    assert "README.md" in ci and "ci:$1" in ci


@pytest.mark.parametrize("cores", [1, 2])
def test_without_the_compiled_core_a_run_says_so_once_and_gives_the_same_results(tmp_path, cores):
    copy = tmp_path / "pkg"
    shutil.copytree(ROOT / "midstat_tui", copy / "midstat_tui",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    capture = str(FIXTURES / "mixed_traffic.pcap")
    # -S: no .pth files, so an editable install of the checkout cannot lend the copy its compiled core
    sites = os.pathsep.join([str(copy), *(d for d in site.getsitepackages() if os.path.isdir(d))])
    args = ["-m", "midstat_tui", "-r", capture, "--summary", "--json", "--cores", str(cores)]
    env = {k: v for k, v in os.environ.items() if k != "MIDSTAT_PURE_PYTHON"}
    pure = subprocess.run([sys.executable, "-S", *args], capture_output=True, text=True, cwd=tmp_path,
                          env={**env, "PYTHONPATH": sites}, timeout=120)
    compiled = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, env=env,
                              timeout=120)
    assert pure.returncode == 0 and compiled.returncode == 0, pure.stderr
    notes = [line for line in pure.stderr.splitlines() if "compiled core was not built" in line]
    assert len(notes) == 1 and notes[0].startswith("midstat: note: "), pure.stderr
    assert "10 times slower" in notes[0] and "python3-dev" in notes[0]
    assert "compiled core" not in compiled.stderr
    assert pure.stdout == compiled.stdout


def test_version_names_the_engine_that_runs():
    out = subprocess.run([sys.executable, "-m", "midstat_tui", "--version"], capture_output=True, text=True,
                         cwd=ROOT, timeout=60)
    assert out.returncode == 0 and "(compiled core)" in out.stdout, out.stdout
