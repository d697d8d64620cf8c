"""The problems lens live (`-i IFACE --problems --json`: a report every second of the clock) between real stacks in
network namespaces, on one core and two: a server that never closes shows up once it has sat in CLOSE_WAIT past
the threshold (the clock moves on without packets), a refused connect at once."""

from __future__ import annotations

import json
import socket
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


REJECTS = """table inet midstat_rejects {
    chain forward {
        type filter hook forward priority 0;
        tcp dport 6997 reject with icmpx type port-unreachable
        tcp dport 6996 reject with icmpx type admin-prohibited
        tcp dport 6995 drop
    }
}
"""


@pytest.mark.parametrize("cores", ["1", "2"])
def test_a_syn_rejected_by_icmp_is_refused_and_a_dropped_one_unanswered(lab, cores):
    """A router's REJECT rules answer SYNs with ICMP port unreachable (IPv4 and IPv6) and administratively
    prohibited: the client's connect fails at once, no TCP answer: the lens lists them as `refused`, saying it was
    ICMP. A DROP rule's SYN stays `unanswered_syn` (silence is no answer)."""
    lab.ns(lab.router, "nft", "-f", "-", input_text=REJECTS)
    proc = start_live(lab, "--problems", "--json", "--threshold", "unanswered_syn=1", "--cores", cores)
    base = 45000 + 10 * int(cores)
    try:
        expected = set()
        for offset, family, client, server, port, error in (
                (0, socket.AF_INET, CLIENT4, SERVER4, 6997, ConnectionRefusedError),
                (1, socket.AF_INET, CLIENT4, SERVER4, 6996, OSError),
                (2, socket.AF_INET6, "fd31:1::1", "fd31:2::1", 6997, ConnectionRefusedError)):
            sock = lab.socket(lab.client, family)
            sock.bind((client, base + offset))
            with pytest.raises(error):
                sock.connect((server, port))
            sock.close()
            wrap = (lambda a: f"[{a}]") if family == socket.AF_INET6 else str
            expected.add(("refused", f"{wrap(client)}:{base + offset}", f"{wrap(server)}:{port}"))
        dropped = lab.socket(lab.client)
        dropped.bind((CLIENT4, base + 3))
        dropped.settimeout(0.3)
        with pytest.raises(TimeoutError):
            dropped.connect((SERVER4, 6995))
        dropped.close()
        expected.add(("unanswered_syn", f"{CLIENT4}:{base + 3}", f"{SERVER4}:6995"))
        time.sleep(2.5)
        out = stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        lab.ns(lab.router, "nft", "delete", "table", "inet", "midstat_rejects", check=False)
    last = json.loads(out.decode().splitlines()[-1])
    assert {(p["kind"], p["client"], p["server"]) for p in last["problems"]} == expected
    for p in last["problems"]:
        if p["kind"] == "refused":
            assert "answered by an ICMP unreachable" in p["detail"]
