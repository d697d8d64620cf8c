#!/usr/bin/env python3
"""Regenerate fixtures/pcaps/problems/: one real capture per kind of the problems lens, made between Linux stacks in
network namespaces (scripts/netlab.py) and captured with tcpdump on the router's client-facing interface.

Each scenario writes NAME.pcap and NAME.json: the thresholds to judge it with (`--threshold`) and the connections
the lens must find, exactly (kind, client, server). tests/functional/test_problems_fixtures.py replays each capture
with `--problems --json` and compares.

    close_wait       the client closes; the server's application never does (it holds the socket open)
    fin_wait_2       the server closes; the client's application never does: the server side waits in FIN_WAIT_2
    unanswered_syn   three connects to a port whose SYNs the router drops (nft), one to another such port
    zero_window      a server that stops reading: its receive buffer fills, it advertises a zero window
    retransmissions  a transfer over a lossy link (the router drops 1 in 12 of the client's segments, at random)
    one_way          a normal exchange captured in one direction only (tcpdump -Q in: asymmetric routing)
    half_open        the server vanishes (the router drops all its packets) while the client still sends

Run as root:  python3 scripts/make_problem_fixtures.py [--out fixtures/pcaps/problems] [SCENARIO ...]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from make_fixtures import _exchange, _pair, _recv_exact, _router_rule  # noqa: E402
from netlab import CLIENT4, SERVER4, NetLab, available  # noqa: E402

Expect = list[tuple[str, tuple[str, str]]]  # (kind, (client, server))


def close_wait(lab: NetLab, held: list) -> tuple[dict, Expect]:
    client, server, names = _pair(lab, 5101)
    _exchange(client, server)
    client.close()            # FIN from the client; the server's application never calls close()
    time.sleep(2.0)
    held.append(server)
    return {"close_wait": 1}, [("close_wait", names)]


def fin_wait_2(lab: NetLab, held: list) -> tuple[dict, Expect]:
    client, server, names = _pair(lab, 5102)
    _exchange(client, server)
    server.shutdown(socket.SHUT_WR)  # the server closes its half (its socket stays: no orphan timeout)
    time.sleep(2.0)
    held.extend((client, server))
    # the client side sits in CLOSE_WAIT as long: judged at the default (10 s), it is no problem yet
    return {"fin_wait_2": 1}, [("fin_wait_2", names)]


def unanswered_syn(lab: NetLab, held: list) -> tuple[dict, Expect]:
    _router_rule(lab, "blackhole", "tcp dport { 5103, 5104 } drop")
    expect: Expect = []
    for port, sport in ((5103, 43001), (5103, 43002), (5103, 43003), (5104, 43004)):
        sock = lab.socket(lab.client)
        sock.bind((CLIENT4, sport))
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            sock.connect((SERVER4, port))
        held.append(sock)
        expect.append(("unanswered_syn", (f"{CLIENT4}:{sport}", f"{SERVER4}:{port}")))
    time.sleep(3.5)  # the default threshold is 3 s: the kernel sends its SYN again at 1 s, 2 s (and 4 s)
    held.append(lambda: lab.ns(lab.router, "nft", "delete", "table", "inet", "blackhole"))  # after the capture
    return {}, expect


def zero_window(lab: NetLab, held: list) -> tuple[dict, Expect]:
    listener = lab.socket(lab.server)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)  # inherited by the accepted socket
    listener.bind((SERVER4, 5105))
    listener.listen(1)
    client = lab.socket(lab.client)
    client.connect((SERVER4, 5105))
    server, _ = listener.accept()
    listener.close()
    names = (f"{client.getsockname()[0]}:{client.getsockname()[1]}", f"{SERVER4}:5105")
    client.setblocking(False)
    sent = 0
    deadline = time.time() + 5
    while time.time() < deadline:  # the server never reads: fill its buffer and the client's send buffer
        try:
            sent += client.send(b"z" * 65536)
        except BlockingIOError:
            time.sleep(0.05)
    time.sleep(3.0)  # the default threshold is 2 s; the client probes the zero window meanwhile
    held.extend((client, server))
    return {}, [("zero_window", names)]


def retransmissions(lab: NetLab, held: list) -> tuple[dict, Expect]:
    client, server, names = _pair(lab, 5106)
    # loss past the capture point: the capture sees every segment the client sends, the server misses some.
    # (tc netem would be the usual tool; this machine's kernel has no sch_netem, so nftables drops at random)
    _router_rule(lab, "lossy", "tcp dport 5106 numgen random mod 12 == 0 drop")
    try:
        client.settimeout(60)
        payload = b"x" * 400_000
        server.settimeout(60)
        reader = threading.Thread(target=_recv_exact, args=(server, len(payload)))
        reader.start()
        client.sendall(payload)
        reader.join()
        server.sendall(b"done")
        _recv_exact(client, 4)
    finally:
        lab.ns(lab.router, "nft", "delete", "table", "inet", "lossy", check=False)
    client.close()
    server.close()
    time.sleep(0.3)
    return {}, [("retransmissions", names)]


def one_way(lab: NetLab, held: list) -> tuple[dict, Expect]:
    client, server, names = _pair(lab, 5107)
    for _ in range(6):  # about 3 s of traffic, both ways on the wire; the capture keeps the client's only
        _exchange(client, server, 1000)
        time.sleep(0.5)
    client.close()
    server.close()
    time.sleep(0.3)
    return {}, [("one_way", names)]


def half_open(lab: NetLab, held: list) -> tuple[dict, Expect]:
    client, server, names = _pair(lab, 5108)
    _exchange(client, server)
    # the server is gone: nothing it sends gets through any more (a crashed host, a NAT that lost the state)
    _router_rule(lab, "gone", f"ip saddr {SERVER4} tcp sport 5108 drop")
    client.sendall(b"d" * 1000)  # the client still sends: it retransmits with backoff (0.2 s, 0.4 s, ... 6.4 s)
    time.sleep(8.0)
    held.extend((client, server, lambda: lab.ns(lab.router, "nft", "delete", "table", "inet", "gone")))
    # the client's data goes again and again (every byte of it), so its share of retransmitted bytes is high too
    return {}, [("half_open", names), ("retransmissions", names)]


SCENARIOS: dict[str, Callable[[NetLab, list], tuple[dict, Expect]]] = {
    "close_wait": close_wait,
    "fin_wait_2": fin_wait_2,
    "unanswered_syn": unanswered_syn,
    "zero_window": zero_window,
    "retransmissions": retransmissions,
    "one_way": one_way,
    "half_open": half_open,
}


def end_marker(lab: NetLab) -> None:
    """A short clean exchange, last in every capture: a file's moment is its last packet, so this dates the end of
    the scenario (the time the problems above had to last); the lens must find nothing wrong with it."""
    client, server, _ = _pair(lab, 5199)
    _exchange(client, server, 100)
    client.close()
    time.sleep(0.05)
    server.close()


def run_scenario(lab: NetLab, name: str, out_dir: str) -> dict:
    pcap = os.path.join(out_dir, f"{name}.pcap")
    held: list = []  # sockets held open to the end of the capture, and what undoes a scenario's rules
    try:
        with lab.capture(pcap, direction="in" if name == "one_way" else None):
            thresholds, expect = SCENARIOS[name](lab, held)
            end_marker(lab)
    finally:
        for sock in held:  # after the capture ended: their ends are not in it
            if callable(sock):
                sock()
                continue
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                sock.close()
    doc = {
        "scenario": name,
        "pcap": f"{name}.pcap",
        "made_by": "scripts/make_problem_fixtures.py: real Linux TCP between network namespaces, captured on the "
                   "router",
        "kernel": os.uname().release,
        "thresholds": thresholds,
        "expect": [{"kind": kind, "client": c, "server": s} for kind, (c, s) in expect],
    }
    with open(os.path.join(out_dir, f"{name}.json"), "w") as fh:
        json.dump(doc, fh, indent=1)
        fh.write("\n")
    return doc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "fixtures", "pcaps",
                                                      "problems"))
    parser.add_argument("scenarios", nargs="*", help=f"default: all of {', '.join(SCENARIOS)}")
    args = parser.parse_args()
    why = available()
    if why:
        print(f"make_problem_fixtures: {why}", file=sys.stderr)
        return 2
    for name in args.scenarios:
        if name not in SCENARIOS:
            print(f"make_problem_fixtures: unknown scenario {name!r}", file=sys.stderr)
            return 2
    os.makedirs(args.out, exist_ok=True)
    lab = NetLab().up()
    try:
        for name in args.scenarios or list(SCENARIOS):
            doc = run_scenario(lab, name, args.out)
            print(f"{name:16} expects {', '.join(e['kind'] for e in doc['expect'])}")
    finally:
        lab.down()
        subprocess.run(["sync"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
