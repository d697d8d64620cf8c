#!/usr/bin/env python3
"""Regenerate fixtures/pcaps/: real Linux TCP between network namespaces, captured on the router.

Each scenario writes NAME.pcap (tcpdump on the router's client-facing interface) and NAME.json: at quiet moments,
what `ss` said in the client and the server namespace about each connection (a socket that is gone is CLOSED),
with the wall-clock time of that moment, which is the capture's time too. tests/functional/test_fixtures_vs_kernel.py
replays each capture up to each moment and asserts that midstat's two states equal the kernels'.

Run as root:  python3 scripts/make_fixtures.py [--out fixtures/pcaps] [SCENARIO ...]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import contextlib

from netlab import (  # noqa: E402
    CLIENT4,
    CLIENT_CLOSES,
    CLIENT_RESETS,
    ROUTER_CLIENT_IF,
    SERVER4,
    SERVER6,
    SERVER_CLOSES,
    SERVER_RESETS,
    NetLab,
    abort,
    available,
    end,
    endpoint,
)

SETTLE = 0.4  # seconds to let a step's packets cross before asking the kernels


class Recorder:
    def __init__(self, lab: NetLab) -> None:
        self.lab = lab
        self.checkpoints: list[dict] = []

    def checkpoint(self, label: str, conns: list[tuple[str, str]]) -> None:
        time.sleep(SETTLE)
        cli = self.lab.ss_states(self.lab.client)
        srv = self.lab.ss_states(self.lab.server)
        ts = time.time()
        rows = []
        for client, server in conns:
            rows.append({
                "client": client,
                "server": server,
                "client_state": cli.get((client, server), "CLOSED"),
                "server_state": srv.get((server, client), "CLOSED"),
            })
        self.checkpoints.append({"label": label, "ts": ts, "connections": rows})


def _pair(lab: NetLab, port: int, family: int = socket.AF_INET, server_ip: str = SERVER4):
    """A listening server, a connected client and the accepted server socket; plus the (client, server) names."""
    listener = lab.socket(lab.server, family)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((server_ip, port))
    listener.listen(8)
    client = lab.socket(lab.client, family)
    client.settimeout(5)
    client.connect((server_ip, port))
    conn, _ = listener.accept()
    listener.close()
    names = (endpoint(client.getsockname()), endpoint(client.getpeername()))
    return client, conn, names


def _exchange(a: socket.socket, b: socket.socket, size: int = 2000) -> None:
    a.sendall(b"q" * size)
    _recv_exact(b, size)
    b.sendall(b"r" * size)
    _recv_exact(a, size)


def _recv_exact(sock: socket.socket, size: int) -> None:
    got = 0
    if sock.gettimeout() is None or sock.gettimeout() < 10:
        sock.settimeout(10)
    while got < size:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("peer closed early")
        got += len(chunk)


def _router_rule(lab: NetLab, table: str, rule: str) -> None:
    """An nftables rule on the router's forward path (after the capture point on its client-facing side)."""
    text = (f"table inet {table} {{\n  chain forward {{\n"
            f"    type filter hook forward priority 0; policy accept;\n    {rule}\n  }}\n}}\n")
    lab.ns(lab.router, "nft", "-f", "-", input_text=text)


def _orderly_close(lab: NetLab, rec: Recorder, port: int, first: str, family: int = socket.AF_INET,
                   server_ip: str = SERVER4) -> None:
    client, server, names = _pair(lab, port, family, server_ip)
    _exchange(client, server)
    rec.checkpoint("established", [names])
    order = [("client", client), ("server", server)]
    if first == "server":
        order.reverse()
    for who, sock in order:
        sock.close()
        rec.checkpoint(f"{who} closed", [names])


def _reset(lab: NetLab, rec: Recorder, port: int, by: str) -> None:
    client, server, names = _pair(lab, port)
    _exchange(client, server)
    rec.checkpoint("established", [names])
    aborter, other = (client, server) if by == "client" else (server, client)
    abort(aborter)
    rec.checkpoint(f"{by} reset", [names])
    other.close()


def close_client_first(lab: NetLab, rec: Recorder) -> None:
    _orderly_close(lab, rec, 5001, "client")


def close_server_first(lab: NetLab, rec: Recorder) -> None:
    _orderly_close(lab, rec, 5002, "server")


def reset_by_client(lab: NetLab, rec: Recorder) -> None:
    _reset(lab, rec, 5003, "client")


def reset_by_server(lab: NetLab, rec: Recorder) -> None:
    _reset(lab, rec, 5004, "server")


def refused(lab: NetLab, rec: Recorder) -> None:
    client = lab.socket(lab.client)
    client.bind((CLIENT4, 40999))
    try:
        client.connect((SERVER4, 5999))
        raise RuntimeError("connect to a closed port succeeded")
    except ConnectionRefusedError:
        pass
    rec.checkpoint("refused", [(f"{CLIENT4}:40999", f"{SERVER4}:5999")])
    client.close()


def half_close(lab: NetLab, rec: Recorder) -> None:
    client, server, names = _pair(lab, 5005)
    _exchange(client, server)
    client.shutdown(socket.SHUT_WR)
    rec.checkpoint("client shut down writing", [names])
    server.sendall(b"s" * 50000)  # the server keeps sending into the half-closed connection
    _recv_exact(client, 50000)
    rec.checkpoint("server still sending", [names])
    server.close()
    rec.checkpoint("server closed", [names])
    client.close()


def simultaneous_close(lab: NetLab, rec: Recorder) -> None:
    """Both FINs are held at the router, then released together: they cross, both sides go CLOSING."""
    client, server, names = _pair(lab, 5006)
    _exchange(client, server)
    rec.checkpoint("established", [names])
    _router_rule(lab, "hold", "tcp flags & fin == fin drop")
    client.shutdown(socket.SHUT_WR)
    server.shutdown(socket.SHUT_WR)
    time.sleep(0.05)
    lab.ns(lab.router, "nft", "delete", "table", "inet", "hold")
    time.sleep(1.5)  # both retransmit their FIN (RTO ~200 ms, then doubling); the retransmissions cross
    rec.checkpoint("both closed", [names])
    client.close()
    server.close()


def ipv6_close(lab: NetLab, rec: Recorder) -> None:
    _orderly_close(lab, rec, 5007, "client", socket.AF_INET6, SERVER6)


def vlan_close(lab: NetLab, rec: Recorder) -> None:
    """The client link carries 802.1Q tags (VLAN 100); the router's capture sees tagged frames."""
    lab.tag_client_link(100)
    try:
        _orderly_close(lab, rec, 5011, "server")
    finally:
        lab.untag_client_link()


def unreachable(lab: NetLab, rec: Recorder) -> None:
    """A SYN to a host that does not answer ARP: SYN_SENT, then the router's ICMP unreachable aborts it."""
    client = lab.socket(lab.client)
    client.bind((CLIENT4, 41999))
    client.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        client.connect(("10.231.2.77", 5008))
    names = (f"{CLIENT4}:41999", "10.231.2.77:5008")
    rec.checkpoint("syn sent", [names])
    deadline = time.time() + 10
    while time.time() < deadline and names[0] in {k[0] for k in lab.ss_states(lab.client)}:
        time.sleep(0.2)
    rec.checkpoint("host unreachable", [names])
    client.close()


def midstream(lab: NetLab, rec: Recorder, start_capture: Callable[[], None]) -> None:
    client, server, names = _pair(lab, 5009)
    _exchange(client, server)
    start_capture()
    _exchange(client, server)
    rec.checkpoint("picked up mid-stream", [names])
    server.close()
    rec.checkpoint("server closed", [names])
    client.close()
    rec.checkpoint("client closed", [names])


def lossy_transfer(lab: NetLab, rec: Recorder) -> None:
    """About 5% of the client's segments are dropped by the router after the capture saw them."""
    client, server, names = _pair(lab, 5010)
    _router_rule(lab, "lossy", "tcp dport 5010 numgen random mod 20 == 0 drop")
    client.settimeout(60)  # loss recovery can back off for seconds
    payload = b"x" * 300_000
    server.settimeout(60)
    # the server reads while the client sends: 300 KB may not fit the sockets' buffers at once (a loaded machine,
    # windows shrunk by the loss), and a send waiting for a reader that waits for the send ended never would
    failed: list[BaseException] = []

    def read_all() -> None:
        try:
            _recv_exact(server, len(payload))  # keeps the 60 s timeout
        except BaseException as exc:  # noqa: BLE001 - said below, in this thread
            failed.append(exc)

    reader = threading.Thread(target=read_all)
    reader.start()
    client.sendall(payload)
    reader.join(timeout=70)
    if reader.is_alive() or failed:
        raise RuntimeError(f"the server did not get the transfer: {failed or 'still reading'}")
    server.sendall(b"done")
    _recv_exact(client, 4)
    lab.ns(lab.router, "nft", "delete", "table", "inet", "lossy")
    rec.checkpoint("transfer done", [names])
    client.close()
    rec.checkpoint("client closed", [names])
    server.close()
    rec.checkpoint("server closed", [names])


def mixed_traffic(lab: NetLab, rec: Recorder) -> None:
    """Two dozen connections of every kind over a few seconds (the TUI's tests browse this one)."""
    held = []
    names = []
    for i in range(18):
        family, server_ip, port = ((socket.AF_INET6, SERVER6, 6002) if i % 5 == 4 else
                                   (socket.AF_INET, SERVER4, 6001))
        client, server, pair = _pair(lab, port, family, server_ip)
        names.append(pair)
        _exchange(client, server, 500 + 100 * i)
        kind = i % 6
        if kind == 0:
            held.append((client, server))           # stays established
        elif kind == 5:
            client.shutdown(socket.SHUT_WR)         # half-closed, server still open
            held.append((client, server))
        else:
            end((CLIENT_CLOSES, SERVER_CLOSES, CLIENT_RESETS, SERVER_RESETS)[kind - 1], client, server)
        time.sleep(0.1)
    for i in range(3):
        refused_client = lab.socket(lab.client)
        refused_client.bind((CLIENT4, 42000 + i))
        with contextlib.suppress(ConnectionRefusedError):
            refused_client.connect((SERVER4, 6999))
        refused_client.close()
        names.append((f"{CLIENT4}:{42000 + i}", f"{SERVER4}:6999"))
    rec.checkpoint("all kinds", names)
    for client, server in held:
        client.close()
        server.close()


SCENARIOS: dict[str, Callable] = {
    "close_client_first": close_client_first,
    "close_server_first": close_server_first,
    "reset_by_client": reset_by_client,
    "reset_by_server": reset_by_server,
    "refused": refused,
    "half_close": half_close,
    "simultaneous_close": simultaneous_close,
    "ipv6_close": ipv6_close,
    "vlan_close": vlan_close,
    "unreachable": unreachable,
    "midstream": midstream,
    "lossy_transfer": lossy_transfer,
    "mixed_traffic": mixed_traffic,
}


def run_scenario(lab: NetLab, name: str, out_dir: str) -> dict:
    pcap = os.path.join(out_dir, f"{name}.pcap")
    rec = Recorder(lab)
    func = SCENARIOS[name]
    if name == "midstream":
        holder: list = []

        def start_capture() -> None:
            cm = lab.capture(pcap, ROUTER_CLIENT_IF)
            cm.__enter__()
            holder.append(cm)

        try:
            func(lab, rec, start_capture)
        finally:
            for cm in holder:
                cm.__exit__(None, None, None)
    else:
        with lab.capture(pcap, ROUTER_CLIENT_IF):
            func(lab, rec)
    doc = {
        "scenario": name,
        "pcap": f"{name}.pcap",
        "made_by": "scripts/make_fixtures.py: real Linux TCP between network namespaces, captured on the router",
        "kernel": os.uname().release,
        "checkpoints": rec.checkpoints,
    }
    with open(os.path.join(out_dir, f"{name}.json"), "w") as fh:
        json.dump(doc, fh, indent=1)
        fh.write("\n")
    return doc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "fixtures", "pcaps"))
    parser.add_argument("scenarios", nargs="*", help=f"default: all of {', '.join(SCENARIOS)}")
    args = parser.parse_args()
    why = available()
    if why:
        print(f"make_fixtures: {why}", file=sys.stderr)
        return 2
    names = args.scenarios or list(SCENARIOS)
    for name in names:
        if name not in SCENARIOS:
            print(f"make_fixtures: unknown scenario {name!r}", file=sys.stderr)
            return 2
    os.makedirs(args.out, exist_ok=True)
    lab = NetLab().up()
    try:
        for name in names:
            doc = run_scenario(lab, name, args.out)
            for cp in doc["checkpoints"]:
                states = "; ".join(f"{c['client_state']}/{c['server_state']}" for c in cp["connections"])
                print(f"{name:20} {cp['label']:28} {states}")
    finally:
        lab.down()
        subprocess.run(["sync"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
