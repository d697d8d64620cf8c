"""The problems badge and lens and `n` names in a real terminal (a pty), as root with the default drop of
privileges, on 1 and 2 cores: one TUI session each over a shared capture that holds both (KakaoTalk: DNS answers,
ClientHellos, HTTP requests; connections stuck in CLOSE_WAIT)."""

from __future__ import annotations

import os
import time

import pytest

from tests.helpers import nobody_uid, shared, uids
from tests.terminal import tui

KAKAO = shared("ndpi/tests/cfgs/default/pcap/KakaoTalk_chat.pcap")

pytestmark = [pytest.mark.skipif(not KAKAO.exists(), reason="the shared captures are not here (MIDSTAT_SHARED)"),
              pytest.mark.skipif(os.geteuid() != 0, reason="the default privilege drop needs root")]


@pytest.mark.parametrize("cores", ["1", "2"])
def test_badge_lens_and_names_in_a_terminal(cores):
    with tui("-r", str(KAKAO), "--speed", "0", "--cores", cores, size=(150, 40)) as term:
        term.wait_for(b"end of the file")
        assert set(uids(term.proc.pid)) == {nobody_uid()}  # read as root, then dropped to nobody
        term.wait_for(b"8 problems (p)")  # the header's badge: `--problems` counts 8 on this capture
        os.write(term.master, b"p")
        term.wait_for(b"descriptor leak")  # the lens, its cursor on close_wait: what the kind usually means
        term.wait_for(b"CLOSE_WAIT for")   # a listed connection's detail line
        os.write(term.master, b"\x1b")
        time.sleep(0.3)
        before = len(term.seen)
        os.write(term.master, b"n")
        term.wait_for(b"ports as service names")
        os.write(term.master, b"n")
        term.wait_for(b"addresses as learned host names")
        # the table's endpoints as the names the clients used: an SNI's and a DNS answer's (on 2 cores: learned by
        # the shard of the connection, and by shard 0 from the answers)
        term.wait_for(b"facebook.com:https")
        term.wait_for(b"kakao.com:")
        assert b"kakao.com:" not in term.seen[:before]
        assert term.quit() == 0
        term.assert_restored()
