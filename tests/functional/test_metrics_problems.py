"""--metrics with --problems: the gauge midstat_problems{kind} says what that second's `--problems --json` report
counts. Live between real stacks in network namespaces (a server stuck in CLOSE_WAIT, a refused connect), on one
core and two: scraped several times during the run (from inside the router's namespace, where midstat serves),
parsed with prometheus_client's parser, each scrape matched by its report time to the report midstat wrote."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from midstat_tui.problems import KIND_NAMES
from tests.collectors import free_port
from tests.helpers import ROOT
from tests.lab import ROUTER_CLIENT_IF, SERVER4, NetLab

sys.path.insert(0, str(ROOT / "scripts"))
from netlab import CLIENT4  # noqa: E402


def scrape(lab: NetLab, port: int) -> tuple[float, dict[str, float]]:
    """(the report time the figures come from, the problems gauge by kind), over HTTP from the router's namespace."""
    sock = lab.socket(lab.router)
    sock.settimeout(5)
    try:
        sock.connect(("127.0.0.1", port))
        sock.sendall(f"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    finally:
        sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200"), head[:80]
    ts, kinds = None, {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == "midstat_report_timestamp_seconds":
                ts = sample.value
            elif sample.name == "midstat_problems":
                kinds[sample.labels["kind"]] = sample.value
    assert ts is not None
    return ts, kinds


@pytest.mark.parametrize("cores", ["1", "2"])
def test_the_problems_gauge_is_the_reports_counts(lab, cores):
    port = 6200 + int(cores)
    metrics_port = free_port(socket.SOCK_STREAM)
    proc = subprocess.Popen(["ip", "netns", "exec", lab.router, sys.executable, "-m", "midstat_tui", "-i",
                             ROUTER_CLIENT_IF, "--problems", "--json", "--threshold", "close_wait=2", "--cores",
                             cores, "--metrics", f"127.0.0.1:{metrics_port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    held, scrapes = [], []
    try:
        assert proc.stderr is not None
        assert "listening on" in proc.stderr.readline().decode()
        listener = lab.socket(lab.server)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((SERVER4, port))
        listener.listen(4)
        client = lab.socket(lab.client)
        client.connect((SERVER4, port))
        server, _ = listener.accept()
        listener.close()
        client.sendall(b"x" * 500)
        server.recv(65536)
        client.close()  # the server's application never closes: CLOSE_WAIT, a problem once past 2 s
        held.append(server)
        refused = lab.socket(lab.client)
        refused.bind((CLIENT4, 44200 + int(cores)))
        with contextlib.suppress(ConnectionRefusedError):
            refused.connect((SERVER4, 6999))
        refused.close()
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            time.sleep(0.6)
            scrapes.append(scrape(lab, metrics_port))
        proc.send_signal(2)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
    finally:
        for sock in held:
            sock.close()
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
