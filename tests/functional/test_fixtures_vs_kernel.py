"""midstat's two states at each quiet moment of the fixture captures equal what the Linux kernels said (ss).

The fixtures are real TCP between network namespaces (scripts/make_fixtures.py); at each checkpoint the script
recorded `ss` in the client and the server namespace. A socket that is gone is CLOSED.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from midstat_tui.tcp.states import NAMES, parse_state
from tests.helpers import FIXTURES, ROOT, names, replay

sys.path.insert(0, str(ROOT / "scripts"))
from netlab import available  # noqa: E402

CASES = sorted(FIXTURES.glob("*.json"))


def _checkpoints():
    for path in CASES:
        doc = json.loads(path.read_text())
        for cp in doc["checkpoints"]:
            yield pytest.param(doc, cp, id=f"{doc['scenario']}:{cp['label']}")


def test_every_scenario_is_present():
    scenarios = {json.loads(p.read_text())["scenario"] for p in CASES}
    assert {"close_client_first", "close_server_first", "reset_by_client", "reset_by_server", "refused",
            "half_close", "simultaneous_close", "ipv6_close", "vlan_close", "midstream", "lossy_transfer",
            "unreachable"} <= scenarios


@pytest.mark.parametrize(("doc", "checkpoint"), list(_checkpoints()))
def test_states_equal_the_kernels(doc, checkpoint):
    _assert_checkpoint(FIXTURES, doc, checkpoint)


def _assert_checkpoint(folder, doc, checkpoint):
    _, _, started = replay(folder / doc["pcap"], until=checkpoint["ts"])
    # the latest incarnation of each tuple as of the checkpoint
    latest = {}
    for conn in started:
        latest[names(conn)] = conn
    for expect in checkpoint["connections"]:
        key = (expect["client"], expect["server"])
        conn = latest.get(key)
        want = (NAMES[parse_state(expect["client_state"])], NAMES[parse_state(expect["server_state"])])
        if conn is None:
            assert want == ("CLOSED", "CLOSED"), f"midstat never saw {key}, the kernels say {want}"
            continue
        got = (conn.client_state, conn.server_state)
        assert got == want, f"{doc['scenario']} / {checkpoint['label']}: {key}: midstat {got}, kernels {want}"


def test_simultaneous_close_crosses_fins():
    """Both sides pass through CLOSING, as the kernels do when FINs cross."""
    _, _, started = replay(FIXTURES / "simultaneous_close.pcap")
    conn = started[-1]
    closing = {(t[1], NAMES[t[3]]) for t in conn.transitions}
    assert (0, "CLOSING") in closing and (1, "CLOSING") in closing, conn.transitions


def test_lossy_transfer_counts_retransmissions():
    _, _, started = replay(FIXTURES / "lossy_transfer.pcap")
    conn = started[-1]
    assert conn.c.retrans > 0 and conn.c.retrans_bytes > 0
    assert conn.c.retrans_bytes < conn.c.payload


def test_vlan_tagged_link_keys_the_connection_by_vlan():
    _, _, started = replay(FIXTURES / "vlan_close.pcap")
    assert [conn.vlan for conn in started] == [(100,)]


def test_midstream_pickup_guesses_roles():
    _, _, started = replay(FIXTURES / "midstream.pcap")
    conn = started[0]
    assert conn.midstream
    assert conn.s_port == 5009


@pytest.mark.skipif(available() is not None, reason=f"network lab: {available()}")
def test_fresh_captures_from_this_machines_kernel(tmp_path):
    """The same comparison on captures made now, by this machine's kernel, not the committed ones."""
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_fixtures.py"), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    docs = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("*.json"))]
    assert len(docs) == len(CASES)
    for doc in docs:
        for checkpoint in doc["checkpoints"]:
            _assert_checkpoint(tmp_path, doc, checkpoint)
