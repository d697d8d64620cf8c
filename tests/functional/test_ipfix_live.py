"""--ipfix on a live capture: the router of a client/router/server network-namespace lab, real TCP between the
namespaces, nfcapd listening in the router's namespace; on one core and two, what nfdump reads back equals the
run's --summary --json. A collector that refuses (TCP, nobody listening) costs the tracking nothing."""

from __future__ import annotations

import json
import signal
import sys

import pytest

from tests.collectors import free_port, nfcapd, nfdump_totals, summary_totals
from tests.helpers import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
from netlab import available  # noqa: E402

from tests.lab import start_live, stop, talk  # noqa: E402

pytestmark = pytest.mark.skipif(available() is not None, reason=f"network lab: {available()}")



@pytest.mark.parametrize("cores", ["1", "2"])
def test_live_export_reaches_nfcapd(lab, tmp_path, cores):
    port = 6100 + int(cores)
    with nfcapd(tmp_path, lab.router) as collector:
        proc = start_live(lab, "--summary", "--json", "--cores", cores, "-f", f"tcp port {port}",
                      "--ipfix", collector.address)
        names = talk(lab, port, 8)
        out = stop(proc, signal.SIGTERM)
        flows = collector.flows()
    doc = json.loads(out)
    assert len(doc["connections"]) == 8
    assert {(c["client"], c["server"]) for c in doc["connections"]} == set(names)
    assert nfdump_totals(flows) == summary_totals(doc["connections"])
    assert doc["stats"]["ipfix"]["dropped"] == 0
    if cores == "2":
        # each core its own exporter (observation domain 1 and 2): nfcapd counts two
        assert len({f["export_sysid"] for f in flows}) == len({c["shard"] for c in doc["connections"]}) == 2


def test_a_refusing_collector_costs_no_tracking(lab):
    port = 6110
    plain = start_live(lab, "--summary", "--json", "-f", f"tcp port {port}",
                   "--ipfix", f"tcp://127.0.0.1:{free_port(1)}")
    talk(lab, port, 5)
    doc = json.loads(stop(plain, signal.SIGTERM))
    assert len(doc["connections"]) == 5
    ipfix = doc["stats"]["ipfix"]
    assert ipfix["sent"] == 0 and ipfix["dropped"] == 5
