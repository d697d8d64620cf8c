"""lifecycle.start_worker: a worker lives as long as the process that started it, and not longer, whichever thread
started it (the kernel's parent-death signal follows the forking thread, not the process)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import ROOT, alive

SCRIPT = """
import multiprocessing, sys, threading, time
from midstat_tui.lifecycle import start_worker

def work():
    time.sleep(600)

box = []
def start():
    box.append(start_worker(multiprocessing.get_context("fork"), work, (), "test-worker"))
if sys.argv[1] == "thread":
    t = threading.Thread(target=start); t.start(); t.join()   # the starting thread is gone from here on
else:
    start()
print(box[0].pid, flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("starter", ["main", "thread"])
def test_a_worker_outlives_its_starting_thread_but_not_its_process(starter):
    parent = subprocess.Popen([sys.executable, "-c", SCRIPT, starter], stdout=subprocess.PIPE, cwd=ROOT)
    try:
        worker = int(parent.stdout.readline())
        time.sleep(1.5)  # past a watch interval: a worker tied to the ended thread would be dead by now
        assert alive(worker)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 5
        while alive(worker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(worker)
    finally:
        parent.kill()
        parent.wait()
