"""A tiny three-host network of real Linux stacks: client / router / server network namespaces joined by veth.

    client (c0) ---- (rc) router (rs) ---- (s0) server
    10.231.1.1/24       .254  10.231.2.254     10.231.2.1/24
    fd31:1::1/64                                fd31:2::1/64

Sockets are made inside a namespace by a short-lived thread that enters it with setns(2); the socket stays in
that namespace, so the test drives both ends from one Python process. Needs root (CI runs as root).
Used by scripts/make_fixtures.py and by the end-to-end tests.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

CLONE_NEWNET = 0x40000000

CLIENT4, SERVER4 = "10.231.1.1", "10.231.2.1"
CLIENT6, SERVER6 = "fd31:1::1", "fd31:2::1"
ROUTER_CLIENT_IF = "rc"
ROUTER_SERVER_IF = "rs"


def _run(*args: str, check: bool = True, input_text: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), check=check, capture_output=True, text=True, input=input_text)


def available() -> str | None:
    """None when the lab can be built here, else why not."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("ip", "ss", "tcpdump", "nft"):
        if subprocess.run(["which", tool], capture_output=True).returncode != 0:
            return f"needs {tool}"
    return None


class NetLab:
    def __init__(self, prefix: str | None = None) -> None:
        self.prefix = prefix or f"ms{os.getpid() % 100000}"
        self.client = f"{self.prefix}-cli"
        self.router = f"{self.prefix}-rtr"
        self.server = f"{self.prefix}-srv"
        self._libc = ctypes.CDLL("libc.so.6", use_errno=True)

    # -- building and tearing down ------------------------------------------------------------------------------
    def ns(self, name: str, *cmd: str, check: bool = True, input_text: str | None = None) -> str:
        return _run("ip", "netns", "exec", name, *cmd, check=check, input_text=input_text).stdout

    def up(self) -> NetLab:
        self.down()
        for name in (self.client, self.router, self.server):
            _run("ip", "netns", "add", name)
            self.ns(name, "ip", "link", "set", "dev", "lo", "up")
            self.ns(name, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0")
            self.ns(name, "sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0")
        _run("ip", "link", "add", "name", f"{self.prefix}c", "type", "veth", "peer", "name", f"{self.prefix}r1")
        _run("ip", "link", "add", "name", f"{self.prefix}s", "type", "veth", "peer", "name", f"{self.prefix}r2")
        self._place(f"{self.prefix}c", self.client, "c0")
        self._place(f"{self.prefix}r1", self.router, ROUTER_CLIENT_IF)
        self._place(f"{self.prefix}s", self.server, "s0")
        self._place(f"{self.prefix}r2", self.router, ROUTER_SERVER_IF)
        self._addr(self.client, "c0", f"{CLIENT4}/24", "fd31:1::1/64")
        self._addr(self.router, ROUTER_CLIENT_IF, "10.231.1.254/24", "fd31:1::fe/64")
        self._addr(self.router, ROUTER_SERVER_IF, "10.231.2.254/24", "fd31:2::fe/64")
        self._addr(self.server, "s0", f"{SERVER4}/24", "fd31:2::1/64")
        self.ns(self.client, "ip", "route", "add", "default", "via", "10.231.1.254")
        self.ns(self.client, "ip", "-6", "route", "add", "default", "via", "fd31:1::fe")
        self.ns(self.server, "ip", "route", "add", "default", "via", "10.231.2.254")
        self.ns(self.server, "ip", "-6", "route", "add", "default", "via", "fd31:2::fe")
        self.ns(self.router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self.ns(self.router, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        # no offload: frames on the wire carry real checksums and MTU-sized segments, as on a physical link
        for name, dev in ((self.client, "c0"), (self.server, "s0"), (self.router, ROUTER_CLIENT_IF),
                          (self.router, ROUTER_SERVER_IF)):
            self.ns(name, "ethtool", "-K", dev, "tx", "off", "tso", "off", "gso", "off", "gro", "off",
                    check=False)
        self._wait_reachable()
        return self

    def _place(self, dev: str, ns: str, new_name: str) -> None:
        _run("ip", "link", "set", "dev", dev, "netns", ns)
        self.ns(ns, "ip", "link", "set", "dev", dev, "name", new_name)
        self.ns(ns, "ip", "link", "set", "dev", new_name, "up")

    def _addr(self, ns: str, dev: str, v4: str, v6: str) -> None:
        self.ns(ns, "ip", "addr", "add", v4, "dev", dev)
        self.ns(ns, "ip", "-6", "addr", "add", v6, "dev", dev, "nodad")

    def _wait_reachable(self) -> None:
        """Until a TCP SYN from the client to a closed server port gets its RST back, over IPv4 and IPv6."""
        for _ in range(50):
            if self._refused(socket.AF_INET, SERVER4) and self._refused(socket.AF_INET6, SERVER6):
                return
            time.sleep(0.1)
        raise RuntimeError("the lab's client cannot reach its server")

    def _refused(self, family: int, server: str) -> bool:
        probe = self.socket(self.client, family)
        probe.settimeout(1)
        try:
            probe.connect((server, 9))
        except ConnectionRefusedError:
            return True
        except OSError:
            return False
        finally:
            probe.close()
        return False

    def down(self) -> None:
        for name in (self.client, self.router, self.server):
            _run("ip", "netns", "del", name, check=False)

    # -- an 802.1Q-tagged client link ---------------------------------------------------------------------
    def tag_client_link(self, vid: int) -> None:
        """From now on the client <-> router link carries VLAN `vid` tags (see vlan_bpf.py)."""
        from vlan_bpf import programs

        push, pop = programs(vid)
        for ns, dev in ((self.client, "c0"), (self.router, ROUTER_CLIENT_IF)):
            self.ns(ns, "tc", "qdisc", "add", "dev", dev, "clsact")
            self.ns(ns, "tc", "filter", "add", "dev", dev, "egress", "bpf", "da", "object-pinned", push)
            self.ns(ns, "tc", "filter", "add", "dev", dev, "ingress", "bpf", "da", "object-pinned", pop)

    def untag_client_link(self) -> None:
        for ns, dev in ((self.client, "c0"), (self.router, ROUTER_CLIENT_IF)):
            self.ns(ns, "tc", "qdisc", "del", "dev", dev, "clsact", check=False)

    # -- sockets inside a namespace -----------------------------------------------------------------------------
    def socket(self, ns: str, family: int = socket.AF_INET) -> socket.socket:
        box: dict[str, object] = {}

        def make() -> None:
            try:
                fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
                try:
                    if self._libc.setns(fd, CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), "setns failed")
                finally:
                    os.close(fd)
                box["sock"] = socket.socket(family, socket.SOCK_STREAM)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                box["error"] = exc

        thread = threading.Thread(target=make)
        thread.start()
        thread.join()
        if "error" in box:
            raise box["error"]  # type: ignore[misc]
        return box["sock"]  # type: ignore[return-value]

    # -- what the kernels say -----------------------------------------------------------------------------------
    def ss_states(self, ns: str) -> dict[tuple[str, str], str]:
        """{(local, peer): ss state} for every TCP socket with a peer in the namespace."""
        out = self.ns(ns, "ss", "-tanH")
        states = {}
        for line in out.splitlines():
            parts = line.split()
            if len(parts) < 5 or parts[0] == "LISTEN":
                continue
            states[(_norm(parts[3]), _norm(parts[4]))] = parts[0]
        return states

    @contextlib.contextmanager
    def capture(self, path: str, iface: str = ROUTER_CLIENT_IF, ns: str | None = None,
                direction: str | None = None) -> Iterator[None]:
        """tcpdump on the router while the block runs; the file is complete when the block ends.

        `direction`: "in" or "out" only, as tcpdump -Q takes it (a capture point that misses one leg)."""
        cmd = ["ip", "netns", "exec", ns or self.router, "tcpdump", "-i", iface, "--immediate-mode", "-U", "-Z", "root",
               "-s", "0", "-w", path]
        if direction:
            cmd += ["-Q", direction]
        proc = subprocess.Popen([*cmd, "tcp or icmp or icmp6"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)
        assert proc.stderr is not None
        line = proc.stderr.readline()  # "listening on ..." once the handle is active
        if "listening" not in line:
            proc.kill()
            raise RuntimeError(f"tcpdump did not start: {line.strip()}")
        try:
            yield
        finally:
            time.sleep(0.5)
            proc.terminate()
            proc.wait(timeout=10)


# How a test connection ends (the kernels' states afterwards are what the tests compare with)
CLIENT_CLOSES, SERVER_CLOSES, CLIENT_RESETS, SERVER_RESETS = "client closes", "server closes", "client resets", \
    "server resets"


def abort(sock: socket.socket) -> None:
    """close() with SO_LINGER 0: the kernel sends a RST."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()


def end(how: str, client: socket.socket, server: socket.socket, pause: float = 0.05) -> None:
    """End a connection one of the four ways: an orderly close started by either side, or a reset by either."""
    if how == CLIENT_CLOSES:
        client.close()
        time.sleep(pause)
        server.close()
    elif how == SERVER_CLOSES:
        server.close()
        time.sleep(pause)
        client.close()
    elif how == CLIENT_RESETS:
        abort(client)
        server.close()
    elif how == SERVER_RESETS:
        abort(server)
        client.close()
    else:
        raise ValueError(how)


def _norm(endpoint: str) -> str:
    """ss prints [v6]:port and v4:port (sometimes %iface after the address): normalise to midstat's spelling."""
    addr, _, port = endpoint.rpartition(":")
    addr = addr.split("%")[0]
    if addr.startswith("[") and addr.endswith("]"):
        inner = addr[1:-1]
        if inner.startswith("::ffff:"):
            return f"{inner[7:]}:{port}"
        return f"[{inner}]:{port}"
    return f"{addr}:{port}"


def endpoint(sock_addr: tuple) -> str:
    host, port = sock_addr[0], sock_addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def process_tree(pid: int) -> list[int]:
    """A process and all its descendants (what a command run in the lab became: core 0 and its workers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/stat") as fh:
                children.setdefault(int(fh.read().rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        found.append(todo.pop())
        todo.extend(children.get(found[-1], []))
    return found
