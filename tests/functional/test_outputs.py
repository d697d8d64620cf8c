"""No failure loses output silently: every write complete or a one-line error (issue #10)."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time

import pytest

from tests.helpers import ROOT, midstat, shared

BIG = shared("zeek/Traces/echo-connections.pcap.gz")  # ~330 kB of --summary --json: more than a pipe holds


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    err = proc.stderr.decode()
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    return err


@pytest.mark.parametrize("cores", ["1", "2"])
@pytest.mark.parametrize("face", [["--summary", "--json"], ["--summary"], ["--plain"], ["--events"], ["--json"]])
def test_a_full_device_is_a_one_line_error_and_status_2(cores, face):
    with open("/dev/full", "wb") as full:
        proc = subprocess.run([sys.executable, "-m", "midstat_tui", "-r", str(BIG), "--cores", cores, *face],
                              stdout=full, stderr=subprocess.PIPE, timeout=120, cwd=ROOT)
    assert proc.returncode == 2
    assert "No space left on device" in _one_line_error(proc)


@pytest.mark.parametrize("cores", ["1", "2"])
def test_a_slow_non_blocking_pipe_gets_every_byte_unbuffered(cores):
    """PYTHONUNBUFFERED=1 and a pipe that takes less than asked (non-blocking, slow reader): short writes are
    retried, never dropped (before: cut at 65,536 bytes, exit 0, no message)."""
    whole = midstat("-r", str(BIG), "--summary", "--json", "--cores", cores)
    assert whole.returncode == 0 and len(whole.stdout) > 4 * 65536
    r, w = os.pipe()
    fcntl.fcntl(w, fcntl.F_SETFL, fcntl.fcntl(w, fcntl.F_GETFL) | os.O_NONBLOCK)
    proc = subprocess.Popen([sys.executable, "-m", "midstat_tui", "-r", str(BIG), "--summary", "--json", "--cores",
                             cores], stdout=w, stderr=subprocess.PIPE, cwd=ROOT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    os.close(w)
    time.sleep(1.0)  # the pipe is full long before the reader starts
    data = bytearray()
    while chunk := os.read(r, 4096):
        data += chunk
        time.sleep(0.0002)
    os.close(r)
    assert proc.wait(timeout=120) == 0
    assert proc.stderr.read() == b""
    assert bytes(data) == whole.stdout
