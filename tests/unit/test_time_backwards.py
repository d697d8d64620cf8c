"""Timestamps that go backwards (a clock stepped back, captures merged out of order) are counted and clamped: no
negative duration, RTT or timer (issue #10), in the pure-Python and compiled packet paths, on one and two cores."""

from __future__ import annotations

import json
import sys

import pytest

from midstat_tui.engine.pipeline import Engine
from midstat_tui.tcp.connection import COMPILED_AVAILABLE
from tests.helpers import ROOT, fixture_packets, midstat

sys.path.insert(0, str(ROOT / "scripts"))
import hostile_frames as hf  # noqa: E402

STEP = 7200.0


_packets = fixture_packets


def _stepped_back(name: str, at: int) -> list[tuple[float, bytes]]:
    """The capture with every packet from index `at` on dated STEP seconds earlier."""
    return [(ts - STEP if i >= at else ts, frame) for i, (ts, frame) in enumerate(_packets(name))]


@pytest.mark.parametrize("compiled", [False, True] if COMPILED_AVAILABLE else [False])
@pytest.mark.parametrize("at", [1, 2, 5])
def test_durations_and_rtts_never_go_negative(compiled, at):
    packets = _stepped_back("close_client_first.pcap", at)
    engine = Engine(1, compiled=compiled)
    engine.feed_batch(packets)
    (conn,) = engine.tracker.table.values()
    assert conn.last >= conn.first
    for rtt in (conn.rtt_server, conn.rtt_client):
        assert rtt is None or rtt >= 0
    assert engine.stats()["time_backwards"] == len(packets) - at
    # the states are those of the clean capture: the order of the packets is what the machines follow
    clean = Engine(1, compiled=compiled)
    clean.feed_batch(_packets("close_client_first.pcap"))
    (ref,) = clean.tracker.table.values()
    assert (conn.client_state, conn.server_state, conn.history) == (ref.client_state, ref.server_state, ref.history)


@pytest.mark.parametrize("cores", ["1", "2"])
def test_the_command_reports_and_clamps(tmp_path, cores):
    packets = _stepped_back("mixed_traffic.pcap", 40)
    path = tmp_path / "backwards.pcap"
    hf.write_pcap(str(path), packets)
    proc = midstat("-r", str(path), "--summary", "--json", "--cores", cores)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["stats"]["time_backwards"] > 0
    assert len(doc["connections"]) > 5
    for conn in doc["connections"]:
        assert conn["duration"] >= 0, conn
        for key in ("rtt_ms", "rtt_server_ms", "rtt_client_ms"):
            assert conn.get(key) is None or conn[key] >= 0, conn
