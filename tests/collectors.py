"""Real collectors for the export tests: nfdump's nfcapd on a loopback port, and a plain UDP socket that keeps the
datagrams as they came (for decoders other than nfdump)."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import threading
import time
from collections import defaultdict
from pathlib import Path


def scrape_metrics(port: int, lab=None) -> dict[tuple[str, tuple], float]:
    """midstat's /metrics on 127.0.0.1:`port`, parsed with prometheus_client's own parser: {(sample name, its labels
    sorted): value}. `lab` (a NetLab): scraped from inside its router's namespace, where a live midstat serves."""
    from prometheus_client.parser import text_string_to_metric_families

    if lab is None:
        import urllib.request

        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    else:
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
        assert head.startswith((b"HTTP/1.0 200", b"HTTP/1.1 200")), head[:80]
        text = body.decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def udp_bound(port: int, netns: str | None = None) -> bool:
    """Is a UDP socket bound to `port` (any address) in this network namespace (or in `netns`)?"""
    if netns is None:
        with open("/proc/net/udp") as fh:
            lines = list(fh)
    else:
        lines = subprocess.run(["ip", "netns", "exec", netns, "cat", "/proc/net/udp"], capture_output=True,
                               text=True, check=True).stdout.splitlines()
    return any(line.split()[1].endswith(f":{port:04X}") for line in lines[1:])


class Nfcapd:
    """nfcapd listening on 127.0.0.1:port, writing into `directory`; `flows()` stops it and reads the flows back
    with `nfdump -R DIR -o json`."""

    def __init__(self, directory: Path, netns: str | None = None) -> None:
        """`netns`: run it in that network namespace (on its loopback)."""
        self.directory = directory
        self.port = free_port()
        self.log = directory.parent / f"nfcapd-{self.port}.log"
        self._log = open(self.log, "wb")  # noqa: SIM115 - closed in stop()
        prefix = ["ip", "netns", "exec", netns] if netns else []
        self.proc = subprocess.Popen([*prefix, "nfcapd", "-b", "127.0.0.1", "-p", str(self.port), "-w",
                                      str(directory), "-B", "4194304"], stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while not udp_bound(self.port, netns):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nfcapd did not start: {self.log.read_text()}")
            time.sleep(0.05)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)
        self._log.close()

    def flows(self) -> list[dict]:
        time.sleep(0.5)  # what is still in its socket buffer is dropped if it is stopped at once
        self.stop()
        out = subprocess.run(["nfdump", "-R", str(self.directory), "-o", "json"], capture_output=True, check=True,
                             timeout=60).stdout
        if b"No matching flows" in out:
            return []
        return json.loads(out)


@contextlib.contextmanager
def nfcapd(tmp_path: Path, netns: str | None = None):
    directory = tmp_path / "flows"
    directory.mkdir()
    collector = Nfcapd(directory, netns)
    try:
        yield collector
    finally:
        collector.stop()


class UdpCollector:
    """A UDP socket on loopback keeping every datagram (one IPFIX message each), in a thread."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.datagrams: list[tuple[tuple, bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            self.datagrams.append((peer, data))

    def close(self) -> list[tuple[tuple, bytes]]:
        time.sleep(0.3)
        self._stop.set()
        self._thread.join()
        self.sock.close()
        return self.datagrams


def endpoint(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def nfdump_totals(flows: list[dict]) -> dict[tuple, list[int]]:
    """nfdump's records added up per (client, server, vlan): [packets c2s, packets s2c, bytes c2s, bytes s2c]."""
    totals: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for f in flows:
        src = f.get("src4_addr") or f.get("src6_addr")
        dst = f.get("dst4_addr") or f.get("dst6_addr")
        key = (endpoint(src, f["src_port"]), endpoint(dst, f["dst_port"]), f.get("src_vlan", 0))
        t = totals[key]
        t[0] += f.get("in_packets", 0)
        t[1] += f.get("out_packets", 0)
        t[2] += f.get("in_bytes", 0)
        t[3] += f.get("out_bytes", 0)
    return dict(totals)


def summary_totals(connections: list[dict]) -> dict[tuple, list[int]]:
    """midstat's --summary --json connections, added up the same way (a reused port's incarnations together)."""
    totals: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for c in connections:
        t = totals[(c["client"], c["server"], c["vlan"][0] if c["vlan"] else 0)]
        t[0] += c["packets_c2s"]
        t[1] += c["packets_s2c"]
        t[2] += c["bytes_c2s"]
        t[3] += c["bytes_s2c"]
    return dict(totals)
