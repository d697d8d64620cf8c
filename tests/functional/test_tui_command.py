"""`midstat -r FILE` with no headless flag opens the TUI in a real terminal (a pty); however it ends, the terminal is
restored (the alternate screen left, the cursor shown) and no traceback is printed. Run as root, it gives up root
once the file is open."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.helpers import FIXTURES, nobody_uid, uids
from tests.terminal import tui

MIXED = str(FIXTURES / "mixed_traffic.pcap")


def test_tui_opens_in_a_terminal_and_quits_on_q():
    with tui("-r", MIXED, "--speed", "0") as term:
        term.wait_for(b"10.231.1.1")
        assert b"mixed_traffic.pcap" in term.seen
        os.write(term.master, b"q")
        assert term.finish() == 0
        term.assert_restored()


@pytest.mark.parametrize("how", ["ctrl-c", "SIGTERM", "SIGHUP"])
def test_the_terminal_is_restored_however_the_tui_is_stopped(how):
    with tui("-r", MIXED, "--speed", "1") as term:  # still replaying when it is stopped
        term.wait_for(b"10.231.1.1")
        if how == "ctrl-c":
            os.write(term.master, b"\x03")
        else:
            term.proc.send_signal(getattr(signal, how))
        assert term.finish() == 0
        term.assert_restored()


@pytest.mark.skipif(os.geteuid() != 0 or nobody_uid() is None, reason="needs root and a 'nobody' account")
def test_run_as_root_the_tui_gives_up_root_and_still_reads_a_root_only_file(tmp_path):
    """The default: root becomes nobody once the file is open, even when nobody could not read the file itself
    (or the Python installation, when it lives under /root); seeking back still works as nobody."""
    private = tmp_path / "private.pcap"
    private.write_bytes((FIXTURES / "mixed_traffic.pcap").read_bytes())
    private.chmod(0o600)
    with tui("-r", str(private), "--speed", "0") as term:
        term.wait_for(b"10.231.1.1")
        assert uids(term.proc.pid) == [nobody_uid()] * 4
        os.write(term.master, b"[")  # back 10 s: the file is read again, as nobody
        time.sleep(1.0)
        os.write(term.master, b"e")  # the project folder belongs to root: nobody may not write there
        term.wait_for(b"as nobody")
        os.write(term.master, b"?")
        term.wait_for(b"midstat keys")
        assert term.quit() == 0
        term.assert_restored()
        assert b"Permission denied" not in term.seen


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_user_root_keeps_root():
    with tui("-r", MIXED, "--speed", "0", "--user", "root") as term:
        term.wait_for(b"10.231.1.1")
        assert uids(term.proc.pid) == [0, 0, 0, 0]
        os.write(term.master, b"q")
        assert term.finish() == 0


def test_a_file_on_two_cores_in_the_tui():
    """`-r FILE --cores 2`: two shards replay their shares in step; a flow's history comes from its shard."""
    with tui("-r", MIXED, "--speed", "0", "--cores", "2") as term:
        term.wait_for(b"10.231.1.1")
        term.wait_for(b"end")  # the header says the replay reached the end of the file
        os.write(term.master, b"\r")
        term.wait_for(b"SYN_SENT")
        assert term.quit() == 0
        term.assert_restored()
