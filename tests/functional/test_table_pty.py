"""The table's interactions in a real terminal (a pty) of 80x24, on files with one and two cores, as the default
user (root gives up root: `nobody`) and with `--user root`: the filter's errors and forms, the column chooser, the
export's full path, horizontal scrolling, the flow screen, help and quit in the footer; `--match` says the same
one-line errors, exit 2."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests import table_pcap
from tests.helpers import FIXTURES, ROOT, nobody_uid
from tests.terminal import _read_until, tui

MIXED = str(FIXTURES / "mixed_traffic.pcap")
ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")
USERS = ["default", "root"]


def _users() -> list:
    if os.geteuid() != 0 or nobody_uid() is None:
        return [pytest.param(u, marks=pytest.mark.skip(reason="needs root and a 'nobody' account")) for u in USERS]
    return USERS


def _press(term, keys: bytes, pause: float = 0.5) -> None:
    os.write(term.master, keys)
    time.sleep(pause)


def _filter(term, text: bytes) -> None:
    """`/`, then the text once the bar has opened, then Enter."""
    _press(term, b"/", 1.0)  # generous: other test runs may share the machine
    _press(term, text, 0.5)
    _press(term, b"\r", 0.5)


def _text(term) -> bytes:
    """What the terminal was sent, without the colour and cursor escapes (words stay whole)."""
    return ANSI.sub(b"", term.seen)


def _wait_text(term, needle: bytes, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while needle not in _text(term) and time.monotonic() < deadline:
        term.seen += _read_until(term.master, b"\x00never", timeout=0.3)
    assert needle in _text(term), _text(term)[-3000:]


@pytest.fixture(scope="module")
def cases():
    folder = Path(tempfile.mkdtemp(prefix="midstat-table-"))
    folder.chmod(0o755)
    path = table_pcap.write(folder / "cases.pcap")
    path.chmod(0o644)
    return path


@pytest.fixture
def export_dir():
    folder = tempfile.mkdtemp(prefix="midstat-export-")
    os.chmod(folder, 0o777)  # nobody writes its export there
    return folder


@pytest.mark.parametrize("user", _users())
@pytest.mark.parametrize("cores", ["1", "2"])
def test_table_interactions_at_80x24(cores, user, export_dir):
    extra = ("--user", "root") if user == "root" else ()
    with tui("-r", MIXED, "--speed", "0", "--cores", cores, *extra, size=(80, 24), cwd=export_dir) as term:
        term.wait_for(b"10.231.1.1")
        _wait_text(term, b"Help")  # the footer keeps help and quit on 80 columns
        _wait_text(term, b"Quit")
        # horizontal scrolling, a column at a time: Age and Idle come into view; `s` sorts by Idle, largest first,
        # its arrow whole
        assert b"Idle" not in _text(term)
        _press(term, b"\x1b[C" * 4)
        _wait_text(term, b"Age")
        _press(term, b"s")
        _wait_text(term, "Idle▼".encode())
        _press(term, b"\x1b[D" * 4)
        # an unknown keyword: an error with a suggestion, the table unchanged
        _filter(term, b"hots 1.2.3.4")
        _wait_text(term, b"did you mean 'host'?")
        _press(term, b"\x1b")  # Esc clears the bar
        _filter(term, b"dport=8009")
        _wait_text(term, b"write 'dport 8009'")
        _press(term, b"\x1b")
        # `|` is `or`
        _filter(term, b"dport 6001 | dport 6002")
        _wait_text(term, b"filter: dport 6001 | dport 6002")
        assert b"unexpected" not in _text(term)
        # ended connections hidden, a filter on `ended` says so
        _press(term, b"t")
        _filter(term, b"ended")
        _wait_text(term, b"ended connections are hidden")
        _press(term, b"t")
        _press(term, b"\x1b")
        _press(term, b"/", 1.0)
        _press(term, b"\x1b")  # Esc in the bar clears the filter
        # the column chooser says on and off
        _press(term, b"c")
        _wait_text(term, b"off  History")
        _wait_text(term, b" on  RTT ms")
        _press(term, b"\x1b")
        # export: the full path in the message
        _press(term, b"e")
        _wait_text(term, os.path.realpath(export_dir).encode()[-30:])
        exported = [f for f in os.listdir(export_dir) if f.endswith(".csv")]
        assert len(exported) == 1
        header = (Path(export_dir) / exported[0]).read_text().splitlines()[0]
        assert header.startswith("conn,client,server,vlan,shard,client_state,server_state,first,last,duration")
        # the flow screen shows its timeline
        _press(term, b"\r")
        _wait_text(term, b"time (UTC)")
        _wait_text(term, b"SYN_SENT")
        _press(term, b"\x1b")
        _press(term, b"?")
        _wait_text(term, b"midstat keys")
        assert term.quit() == 0
        term.assert_restored()


@pytest.mark.parametrize("user", _users())
@pytest.mark.parametrize("cores", ["1", "2"])
def test_the_table_shows_long_ipv6_vlans_reuse_and_suspicious_rsts(cores, user, cases):
    extra = ("--user", "root") if user == "root" else ()
    with tui("-r", str(cases), "--speed", "0", "--cores", cores, *extra, size=(120, 24)) as term:
        _wait_text(term, table_pcap.V6_CLIENT_TEXT.encode())  # whole, with its port
        _wait_text(term, b"VLAN")  # shown by itself: the capture has tags
        text = _text(term)
        assert b" 10 " in text and b" 20 " in text
        _filter(term, b"suspicious")
        _wait_text(term, b"filter: suspicious")
        _press(term, b"\r")  # the one suspicious row's flow screen
        _wait_text(term, b"blind RST 1")
        _press(term, b"\x1b")
        # the reused port: the earlier incarnation (ended by the reuse) and the new one, both in the table
        _filter(term, b"10.9.0.1:40000 and ended")
        _wait_text(term, b"filter: 10.9.0.1:40000 and ended")
        _press(term, b"\r")
        _wait_text(term, b"ended: port_reuse")
        _press(term, b"\x1b")
        _press(term, b"/", 1.0)
        _press(term, b"\x1b")
        _filter(term, b"10.9.0.1:40000 and not ended")
        _wait_text(term, b"filter: 10.9.0.1:40000 and not ended")
        _press(term, b"\r")
        _wait_text(term, b"ended: no (open)")
        assert term.quit() == 0
        term.assert_restored()


@pytest.mark.parametrize("expr, says", [
    ("hots 1.2.3.4", "did you mean 'host'?"),
    ("dport=8009", "write 'dport 8009'"),
    ("dport 8009 |", "ends too soon"),
])
@pytest.mark.parametrize("mode", [("--summary",), ("--plain", "--cores", "2")])
def test_match_has_the_same_one_line_errors(expr, says, mode):
    run = subprocess.run([sys.executable, "-m", "midstat_tui", "-r", MIXED, *mode, "--match", expr], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert says in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert "Traceback" not in run.stderr


def test_match_with_a_bar_and_an_ss_spelling():
    run = subprocess.run([sys.executable, "-m", "midstat_tui", "-r", MIXED, "--summary", "--json", "--match",
                          "(dport 6001 | dport 6002) and time-wait"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, check=True)
    import json

    conns = json.loads(run.stdout)["connections"]
    assert conns and all(c["server"].endswith((":6001", ":6002")) for c in conns)
    assert all("TIME_WAIT" in (c["client_state"], c["server_state"]) for c in conns)
