"""--metrics with --problems: the gauge midstat_problems{kind} says what that second's `--problems --json` report
counts. Live between real stacks in network namespaces (a server stuck in CLOSE_WAIT, a refused connect), on one
core and two: scraped several times during the run (from inside the router's namespace, where midstat serves),
parsed with prometheus_client's parser, each scrape matched by its report time to the report midstat wrote."""

from __future__ import annotations

import json
import socket
import time

import pytest

from midstat_tui.problems import KIND_NAMES
from tests.collectors import free_port, scrape_metrics
from tests.lab import NetLab, start_live, stop, stuck_and_refused


def scrape(lab: NetLab, port: int) -> tuple[float, dict[str, float]]:
    """(the report time the figures come from, the problems gauge by kind), over HTTP from the router's namespace."""
    samples = scrape_metrics(port, lab)
    kinds = {dict(labels)["kind"]: value for (name, labels), value in samples.items() if name == "midstat_problems"}
    return samples[("midstat_report_timestamp_seconds", ())], kinds


@pytest.mark.parametrize("cores", ["1", "2"])
def test_the_problems_gauge_is_the_reports_counts(lab, cores):
    metrics_port = free_port(socket.SOCK_STREAM)
    proc = start_live(lab, "--problems", "--json", "--threshold", "close_wait=2", "--cores", cores, "--metrics",
                      f"127.0.0.1:{metrics_port}")
    scrapes = []
    try:
        with stuck_and_refused(lab, 6200 + int(cores), 44200 + int(cores)):
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline:
                time.sleep(0.6)
                scrapes.append(scrape(lab, metrics_port))
            out = stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reports = {r["ts"]: r["counts"] for r in map(json.loads, out.decode().splitlines())}
    matched = []
    for ts, kinds in scrapes:
        if ts == 0.0:
            continue  # scraped before the first report
        report = next((counts for at, counts in reports.items() if abs(at - ts) < 1e-6), None)
        assert report is not None, f"no report at {ts} (reports at {sorted(reports)})"
        assert set(kinds) == set(KIND_NAMES)
        assert kinds == {kind: float(n) for kind, n in report.items()}
        matched.append(kinds)
    assert len(matched) >= 4
    assert matched[-1]["close_wait"] == 1 and matched[-1]["refused"] == 1
    assert matched[0]["close_wait"] == 0  # scraped before the server had sat 2 s in CLOSE_WAIT
