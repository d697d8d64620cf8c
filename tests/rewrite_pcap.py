"""Kernel-made fixture captures made into other ones with dpkt: the same conversation between other addresses and
ports (checksums made again), or played twice on one tuple (a port reuse)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import dpkt

from tests.helpers import FIXTURES

# one conversation each (a handshake, data, a close), IPv4 and IPv6
TEMPLATES = {4: FIXTURES / "close_client_first.pcap", 6: FIXTURES / "ipv6_close.pcap"}


def _packets(path: Path) -> tuple[list[tuple[float, bytes]], int]:
    with open(path, "rb") as fh:
        reader = dpkt.pcap.Reader(fh)
        return [(ts, bytes(frame)) for ts, frame in reader], reader.datalink()


def readdressed(out: Path, client: str, c_port: int, server: str, s_port: int) -> Path:
    """The fixture conversation of the addresses' family, between client:c_port and server:s_port."""
    c, s = ipaddress.ip_address(client), ipaddress.ip_address(server)
    assert c.version == s.version
    packets, link = _packets(TEMPLATES[c.version])
    first_src = None
    with open(out, "wb") as fh:
        writer = dpkt.pcap.Writer(fh, linktype=link)
        for ts, frame in packets:
            eth = dpkt.ethernet.Ethernet(frame)
            ip = eth.data
            tcp = ip.data
            first_src = first_src or ip.src
            if ip.src == first_src:
                ip.src, ip.dst, tcp.sport, tcp.dport = c.packed, s.packed, c_port, s_port
            else:
                ip.src, ip.dst, tcp.sport, tcp.dport = s.packed, c.packed, s_port, c_port
            tcp.sum = 0
            if c.version == 4:
                ip.sum = 0
            writer.writepkt(bytes(eth), ts)
    return out


def played_again(packets: list[tuple[float, bytes]], after: float) -> list[tuple[float, bytes]]:
    """A conversation played again on its tuple `after` seconds later, with other ISNs (checksums left to be made
    again): the second incarnation of a port reuse."""
    again = []
    client = None
    for ts, frame in packets:
        eth = dpkt.ethernet.Ethernet(frame)
        tcp = eth.data.data
        client = client or tcp.sport
        if tcp.sport == client:
            tcp.seq = (tcp.seq + 1_000_000) & 0xFFFFFFFF
        elif tcp.flags & dpkt.tcp.TH_ACK:
            tcp.ack = (tcp.ack + 1_000_000) & 0xFFFFFFFF
        tcp.sum = 0
        eth.data.sum = 0
        again.append((ts + after, bytes(eth)))
    return again


def port_reuse(out: Path, again_after: float = 5.0) -> tuple[Path, list[float]]:
    """close_client_first's conversation, then again on the same tuple `again_after` seconds later with other ISNs:
    two incarnations. Also returns each one's first packet time."""
    packets, link = _packets(FIXTURES / "close_client_first.pcap")
    with open(out, "wb") as fh:
        writer = dpkt.pcap.Writer(fh, snaplen=65535, linktype=link)
        for ts, frame in packets + played_again(packets, again_after):
            writer.writepkt(frame, ts)
    return out, [packets[0][0], packets[0][0] + again_after]
