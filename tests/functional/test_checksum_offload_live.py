"""Live on a host's own interface with transmit checksum offload on (issue #9 §3): the host's outgoing packets are
captured before the NIC fills in their checksums. With default flags midstat must still see every connection from
its first packet, count each direction's packets as tcpdump on the same interface does, and see the normal close;
headless on one core and two, as nobody (the default drop) and as root, and in the TUI.

Needs root (network namespaces) and ethtool; skipped elsewhere with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
from collections import Counter

import dpkt
import pytest

from tests.helpers import ROOT, nobody_uid, uids
from tests.lab import listen, start_live, stop
from tests.terminal import tui

sys.path.insert(0, str(ROOT / "scripts"))
from netlab import SERVER4, NetLab, available, end, endpoint, process_tree  # noqa: E402

CLIENT_IF = "c0"
CONNECTIONS = 20

pytestmark = pytest.mark.skipif(available() is not None or shutil.which("ethtool") is None,
                                reason=f"network lab: {available() or 'needs ethtool'}")


@pytest.fixture(scope="module")
def lab():
    """The lab, with the client's interface offloading its checksums as an ordinary host's NIC does."""
    net = NetLab().up()  # a pid-based prefix: runs of several checkouts at once do not collide
    net.ns(net.client, "ethtool", "-K", CLIENT_IF, "tx", "on")
    assert "tx-checksumming: on" in net.ns(net.client, "ethtool", "-k", CLIENT_IF)
    yield net
    net.down()






def _talk(lab: NetLab, port: int, count: int = CONNECTIONS) -> list[str]:
    """`count` connections with data both ways, each closed normally (the client first, then the server); returns
    the clients' endpoints."""
    listener = listen(lab, port, 64)
    clients = []
    for i in range(count):
        client = lab.socket(lab.client)
        client.connect((SERVER4, port))
        server, _ = listener.accept()
        clients.append(endpoint(client.getsockname()))
        for _ in range(3):
            client.sendall(b"q" * (200 + i))
            server.recv(65536)
            server.sendall(b"a" * (1000 + i))
            got = 0
            while got < 1000 + i:
                got += len(client.recv(65536))
        end("client closes", client, server)
    listener.close()
    return clients


def _checksum_right(ip: dpkt.ip.IP) -> bool:
    """The TCP checksum, summed as RFC 1071 says: over the pseudo-header and the segment, it folds to 0xFFFF."""
    segment = bytes(ip)[ip.hl * 4:ip.len]
    data = ip.src + ip.dst + bytes((0, 6)) + len(segment).to_bytes(2, "big") + segment
    data += b"\0" * (len(data) % 2)
    total = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total == 0xFFFF


def _tcpdump_counts(path: str) -> Counter:
    """Packets per (client endpoint, direction) in tcpdump's capture of the same interface, and how many of them
    had a checksum that does not verify ("unfilled")."""
    counts: Counter = Counter()
    with open(path, "rb") as fh:
        for _, frame in dpkt.pcap.Reader(fh):
            ip = dpkt.ethernet.Ethernet(frame).data
            if not isinstance(ip, dpkt.ip.IP) or not isinstance(ip.data, dpkt.tcp.TCP):
                continue
            if not _checksum_right(ip):
                counts["unfilled"] += 1
            src = f"{socket.inet_ntoa(ip.src)}:{ip.data.sport}"
            dst = f"{socket.inet_ntoa(ip.dst)}:{ip.data.dport}"
            if dst.startswith(SERVER4 + ":"):
                counts[(src, "c2s")] += 1
            else:
                counts[(dst, "s2c")] += 1
    return counts


def _capture_both(lab: NetLab, tmp_path, port: int, *args: str) -> tuple[dict, Counter, list[str]]:
    """midstat (--summary --json plus `args`) and tcpdump on the client's interface while the connections run."""
    pcap = str(tmp_path / "tcpdump.pcap")
    with lab.capture(pcap, iface=CLIENT_IF, ns=lab.client):
        proc = start_live(lab, "--summary", "--json", *args, ns=lab.client, iface=CLIENT_IF)
        clients = _talk(lab, port)
        time.sleep(0.5)
        doc = json.loads(stop(proc))
    return doc, _tcpdump_counts(pcap), clients


def _assert_all_seen(doc: dict, counts: Counter, clients: list[str]) -> None:
    conns = {c["client"]: c for c in doc["connections"]}
    for client in clients:
        conn = conns.get(client)
        assert conn is not None, (client, sorted(conns))
        assert not conn["midstream"], conn
        assert (conn["packets_c2s"], conn["packets_s2c"]) == (counts[(client, "c2s")], counts[(client, "s2c")])
        # the normal close, as the kernels went through it: the client in TIME_WAIT, the server closed
        assert (conn["client_state"], conn["server_state"], conn["zeek_state"]) == ("TIME_WAIT", "CLOSED", "SF")
        assert conn["bad_checksum"] == 0
    stats = doc["stats"]
    assert stats["bad_checksum"] == 0
    # the offload was real (the host's own packets came with unfilled checksums) and each of them was taken
    assert counts["unfilled"] > 0 and stats["offloaded_checksum"] == counts["unfilled"]
    assert stats["checksum"]["mode"] == "auto" and stats["checksum"]["tx_offload"] is True
    assert "10.231.1.1" in stats["checksum"]["host"]
    assert any("tracked; --checksum verify drops them" in hint for hint in stats["hints"])
    assert stats["checksum"]["virtual_link"] is True  # c0 is a veth: no device behind it


@pytest.mark.parametrize("cores,user", [("1", None), ("2", None), ("1", "root"), ("2", "root")])
def test_every_connection_with_default_flags(lab, tmp_path, cores, user):
    port = 7400 + int(cores) * 10 + (user is not None)
    extra = ("--user", user) if user else ()
    doc, counts, clients = _capture_both(lab, tmp_path, port, "--cores", cores, *extra)
    _assert_all_seen(doc, counts, clients)


def test_verify_drops_the_hosts_own_packets_and_says_so(lab, tmp_path):
    """The control: with --checksum verify (midstat before this change) the same traffic loses the client's
    packets, and the status lines say why and which flag helps."""
    doc, counts, clients = _capture_both(lab, tmp_path, 7450, "--checksum", "verify", "--cores", "1")
    stats = doc["stats"]
    assert stats["bad_checksum"] > 0 and stats["offloaded_checksum"] == 0
    assert stats["bad_checksum_from"].get("10.231.1.1") == stats["bad_checksum"]
    assert any("sent by this host (10.231.1.1): checksum offload; --checksum auto" in h for h in stats["hints"])
    conns = {c["client"]: c for c in doc["connections"]}
    assert any(conns[c]["packets_c2s"] != counts[(c, "c2s")] for c in clients if c in conns)


def test_plain_status_lines_count_and_hint(lab):
    proc = start_live(lab, "--plain", "--cores", "2", ns=lab.client, iface=CLIENT_IF)
    _talk(lab, 7460, 4)
    time.sleep(1.5)  # a snapshot on the clock
    lines = stop(proc).decode().splitlines()
    assert any(line.startswith("# packets: ") and "offloaded checksum (tracked)" in line for line in lines), lines
    assert any(line.startswith("# hint: ") and "left unfilled on c0, a virtual link" in line for line in lines)


@pytest.mark.skipif(nobody_uid() is None, reason="no 'nobody' account")
def test_the_addresses_are_read_before_root_is_given_up(lab):
    """Default user: every process is nobody once the handles are open, and the host's addresses were read."""
    proc = start_live(lab, "--summary", "--json", "--cores", "2", ns=lab.client, iface=CLIENT_IF)
    pids = process_tree(proc.pid)
    assert {tuple(uids(p)) for p in pids} == {(nobody_uid(),) * 4}
    clients = _talk(lab, 7470, 3)
    time.sleep(0.5)
    doc = json.loads(stop(proc))
    assert doc["stats"]["checksum"]["host"] and doc["stats"]["offloaded_checksum"] > 0
    assert {c["client"] for c in doc["connections"]} >= set(clients)


@pytest.mark.parametrize("cores", ["1", "2"])
def test_the_tui_shows_the_connections_from_their_start(lab, cores):
    with tui("-i", CLIENT_IF, "--cores", cores, prefix=("ip", "netns", "exec", lab.client)) as term:
        term.wait_for(b"live")
        clients = _talk(lab, 7480 + int(cores), 4)
        for client in clients:
            term.wait_for(client.split(":")[1].encode())
        os.write(term.master, b"\r")  # the flow screen of the first row: its handshake and no bad checksum
        term.wait_for(b"SYN_SENT")
        term.wait_for(b"bad csum 0")
        assert term.quit() == 0
        term.assert_restored()


@pytest.fixture
def offloading_lab():
    """Every stack of the lab leaves its checksums to the 'hardware', as veth pairs between containers do: the
    server's packets reach the client's interface unfilled too."""
    net = NetLab().up()
    for ns, dev in ((net.client, CLIENT_IF), (net.server, "s0"), (net.router, "rc"), (net.router, "rs")):
        net.ns(ns, "ethtool", "-K", dev, "tx", "on")
    yield net
    net.down()


@pytest.mark.parametrize("cores,user", [("1", None), ("2", None), ("2", "root")])
def test_a_virtual_link_where_every_stack_offloads(offloading_lab, tmp_path, cores, user):
    extra = ("--user", user) if user else ()
    doc, counts, clients = _capture_both(offloading_lab, tmp_path, 7480 + int(cores), "--cores", cores, *extra)
    conns = {c["client"]: c for c in doc["connections"]}
    for client in clients:
        conn = conns[client]
        assert (conn["packets_c2s"], conn["packets_s2c"]) == (counts[(client, "c2s")], counts[(client, "s2c")])
        assert (conn["client_state"], conn["server_state"], conn["zeek_state"]) == ("TIME_WAIT", "CLOSED", "SF")
    stats = doc["stats"]
    assert stats["bad_checksum"] == 0 and stats["checksum"]["virtual_link"] is True
    # both directions came unfilled, and all of them were taken
    assert counts["unfilled"] > 2 * len(clients) and stats["offloaded_checksum"] == counts["unfilled"]
