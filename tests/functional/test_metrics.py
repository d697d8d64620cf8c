"""--metrics: scraped while a run goes on (a capture fed through a pipe, half of it, then the rest), parsed with
prometheus_client's own parser; every figure equals the --plain block of the same moment."""

from __future__ import annotations

import os
import select
import struct
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.collectors import UdpCollector, free_port, scrape_metrics
from tests.helpers import ROOT, shared

CAPTURE = shared("ndpi/tests/cfgs/default/pcap/1kxun.pcap")


def _split(path: Path, fraction: float) -> tuple[bytes, bytes]:
    """A classic pcap cut at a packet boundary near `fraction` of its packets."""
    data = path.read_bytes()
    offsets, pos = [], 24
    while pos + 16 <= len(data):
        offsets.append(pos)
        pos += 16 + struct.unpack_from("<I", data, pos + 8)[0]
    cut = offsets[int(len(offsets) * fraction)]
    return data[:cut], data[cut:]


def _last_block(text: str) -> tuple[Counter, dict[str, str]]:
    """The last --plain block: its rows counted by (client state, server state), and its status lines."""
    lines = text.splitlines()
    start = max(i for i, line in enumerate(lines) if line.startswith("Proto"))
    pairs: Counter = Counter()
    status: dict[str, str] = {}
    for line in lines[start + 1:]:
        if line.startswith("# "):
            name, _, rest = line[2:].partition(": ")
            status[name] = rest
        elif line.startswith("tcp"):
            _, _, _, cstate, _, sstate = line.split()
            pairs[(cstate, sstate)] += 1
    return pairs, status


def _read_until_quiet(proc, quiet: float = 1.5, timeout: float = 30) -> bytes:
    got = b""
    deadline = time.monotonic() + timeout
    last = time.monotonic()
    fd = proc.stdout.fileno()
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            got += chunk
            last = time.monotonic()
        elif got and time.monotonic() - last > quiet:
            break
    return got


@pytest.mark.parametrize("cores", [1, 2])
def test_a_scrape_during_the_run_equals_its_plain_block(cores):
    head, tail = _split(CAPTURE, 0.5)
    port = free_port(kind=1)
    collector = UdpCollector()
    proc = subprocess.Popen([sys.executable, "-m", "midstat_tui", "-r", "-", "--plain", "--cores", str(cores),
                             "--metrics", f"127.0.0.1:{port}", "--ipfix", collector.address],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    try:
        proc.stdin.write(head)
        proc.stdin.flush()
        text = _read_until_quiet(proc).decode()
        metrics = scrape_metrics(port)  # mid-run: half the capture is in, the other half not yet written
        pairs, status = _last_block(text)
        assert pairs, "the block lists open connections"
        by_state = {(dict(labels)["client_state"], dict(labels)["server_state"]): value
                    for (name, labels), value in metrics.items() if name == "midstat_connections_by_state"}
        assert by_state == {pair: float(n) for pair, n in pairs.items()}
        totals = status["totals"]  # "P packets, B bytes, S connections started, E ended, A open"
        numbers = [int(part.split()[0]) for part in totals.split(", ")]
        assert numbers == [metrics[("midstat_packets_total", ())], metrics[("midstat_bytes_total", ())],
                           metrics[("midstat_connections_started_total", ())],
                           metrics[("midstat_connections_ended_total", ())],
                           metrics[("midstat_connections_open", ())]]
        assert numbers[0] < 1723  # mid-run: not the whole capture yet
        sent, dropped = (int(part.split()[0]) for part in status["ipfix"].split(", ")[:2])
        assert (sent, dropped) == (metrics[("midstat_ipfix_records_sent_total", ())],
                                   metrics[("midstat_ipfix_records_dropped_total", ())])
        shard_packets = {dict(labels)["shard"]: v for (name, labels), v in metrics.items()
                         if name == "midstat_shard_packets_total"}
        assert set(shard_packets) == {str(i) for i in range(cores)}
        assert sum(shard_packets.values()) == numbers[0]
        _, err = proc.communicate(tail, timeout=60)
        assert proc.returncode == 0, err.decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        collector.close()


def test_metrics_port_taken_is_a_one_line_error():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        run = subprocess.run([sys.executable, "-m", "midstat_tui", "-r", str(CAPTURE), "--summary",
                              "--metrics", f"127.0.0.1:{port}"], capture_output=True, cwd=ROOT, timeout=60)
    assert run.returncode == 2
    err = run.stderr.decode()
    assert err.startswith("midstat: --metrics") and err.count("\n") == 1 and "Traceback" not in err
