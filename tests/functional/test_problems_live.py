"""The problems lens live (`-i IFACE --problems --json`: a report every second of the clock) between real stacks in
network namespaces, on one core and two: a server that never closes shows up once it has sat in CLOSE_WAIT past
the threshold (the clock moves on without packets), a refused connect at once."""

from __future__ import annotations

import json
import time

import pytest

from tests.lab import CLIENT4, SERVER4, available, start_live, stop, stuck_and_refused

pytestmark = pytest.mark.skipif(available() is not None, reason=f"network lab: {available()}")


@pytest.mark.parametrize("cores", ["1", "2"])
def test_live_reports_find_the_stuck_server_once_it_is_stuck(lab, cores):
    proc = start_live(lab, "--problems", "--json", "--threshold", "close_wait=2", "--cores", cores)
    try:
        with stuck_and_refused(lab, 6100 + int(cores), 44100 + int(cores)) as (stuck, closed_at):
            time.sleep(4.5)  # reports of 4 seconds of the clock: before and after the 2 s threshold
            out = stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reports = [json.loads(line) for line in out.decode().splitlines()]
    assert len(reports) >= 3   # one a second
    found = [{(p["kind"], p["client"], p["server"]) for p in r["problems"]} for r in reports]
    last = found[-1]
    assert last == {("close_wait", *stuck), ("refused", f"{CLIENT4}:{44100 + int(cores)}", f"{SERVER4}:6999")}
    # before the server had sat 2 s in CLOSE_WAIT, the reports did not list it; after, they all do
    for report, kinds in zip(reports, found, strict=True):
        if report["ts"] < closed_at + 1.5:
            assert ("close_wait", *stuck) not in kinds
        elif report["ts"] > closed_at + 2.5:
            assert ("close_wait", *stuck) in kinds
