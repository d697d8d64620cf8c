"""#13 live: `midstat -i IFACE --write FILE.pcap --match EXPR`, headless, on 1 and 2 cores, as root with the default
drop to `nobody` and with `--user root`. Real TCP between the lab's namespaces, captured on the router, with tcpdump
on the same interface at the same time: midstat's file holds, frame for frame, tcpdump's packets of each chosen
connection from the moment it matched (its first packet for a port; the client's FIN for `sstate CLOSE_WAIT`), and
nothing of the others. Needs root; skipped elsewhere with the reason."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dpkt
import pytest

from tests.helpers import FIXTURES, ROOT, midstat, nobody_uid, uids
from tests.lab import (
    CLIENT_CLOSES,
    SERVER4,
    SERVER_CLOSES,
    NetLab,
    available,
    endpoint,
    listen,
    start_live,
    talk,
)

pytestmark = pytest.mark.skipif(available() is not None, reason=f"network lab: {available()}")
TSHARK = shutil.which("tshark")


def _frames(path: Path) -> list[tuple[float, bytes]]:
    with open(path, "rb") as fh:
        reader = dpkt.pcap.Reader(fh)
        assert reader.datalink() == dpkt.pcap.DLT_EN10MB
        return [(ts, bytes(frame)) for ts, frame in reader]


def _ports(frame: bytes) -> tuple[int, int] | None:
    ip = dpkt.ethernet.Ethernet(frame).data
    tcp = getattr(ip, "data", None)
    return (tcp.sport, tcp.dport) if isinstance(tcp, dpkt.tcp.TCP) else None


def _of(frames: list[tuple[float, bytes]], port: int) -> list[tuple[float, bytes]]:
    return [(ts, f) for ts, f in frames if (p := _ports(f)) is not None and port in p]


def _same(ours: list[tuple[float, bytes]], theirs: list[tuple[float, bytes]]) -> None:
    """The same frames, byte for byte, in the same order; the times each capture took them within a millisecond
    (each packet socket dates a frame as it gets it)."""
    assert [f for _, f in ours] == [f for _, f in theirs]
    assert all(abs(a - b) < 1e-3 for (a, _), (b, _) in zip(ours, theirs, strict=True))


def _midstat_pids(proc: subprocess.Popen) -> list[int]:
    """midstat's process and its shard workers."""
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(proc.pid)], capture_output=True, text=True).stdout
    return [proc.pid, *(int(p) for p in out.split())]


def _stop(proc: subprocess.Popen, sig: int = signal.SIGINT) -> str:
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    text = err.decode()
    assert proc.returncode == 0, text
    assert "Traceback" not in text
    return text


@pytest.mark.parametrize("user", [None, "root"])
@pytest.mark.parametrize("cores", ["1", "2"])
def test_live_write_of_a_port_holds_every_packet_of_its_connections(lab: NetLab, tmp_path, cores, user):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)  # only root may make a file here: opened before root is given up
    out = private / "chosen.pcap"
    reference = str(tmp_path / "tcpdump.pcap")
    port, other = 6410 + 2 * int(cores) + (user is not None) * 4, 6430 + int(cores) + (user is not None) * 4
    with lab.capture(reference):
        proc = start_live(lab, "--write", str(out), "--match", f"dport {port}", "--cores", cores,
                          *(["--user", user] if user else []))
        try:
            want = 0 if user == "root" else nobody_uid()
            for pid in _midstat_pids(proc):
                assert set(uids(pid)) == {want}, pid
            chosen = talk(lab, port, 4)
            talk(lab, other, 3)
            chosen += talk(lab, port, 2, closes=lambda i: CLIENT_CLOSES)
            time.sleep(1.5)
            # while it runs: what is flushed already reads as a capture
            if TSHARK:
                read = subprocess.run([TSHARK, "-r", str(out), "-q"], capture_output=True, text=True)
                assert read.returncode == 0, read.stderr
            assert len(_frames(out)) > 0
        finally:
            err = _stop(proc)
    assert out.stat().st_uid == 0  # made by root, before the drop
    ours = _frames(out)
    theirs = _frames(Path(reference))
    _same(ours, _of(theirs, port))
    assert not _of(ours, other)
    assert {endpoint_of(f) for _, f in ours} == {c for c, _ in chosen}
    assert f"wrote {len(ours)} packets of 6 connections to {out}" in err, err
    assert [ts for ts, _ in ours] == sorted(ts for ts, _ in ours)  # time order, across shards too


def endpoint_of(frame: bytes) -> str:
    """The client's endpoint of a frame (the lab's client is 10.231.1.1)."""
    ip = dpkt.ethernet.Ethernet(frame).data
    tcp = ip.data
    if dpkt.utils.inet_to_str(ip.src).startswith("10.231.1."):
        return f"{dpkt.utils.inet_to_str(ip.src)}:{tcp.sport}"
    return f"{dpkt.utils.inet_to_str(ip.dst)}:{tcp.dport}"


@pytest.mark.parametrize("cores", ["1", "2"])
def test_live_write_of_a_state_starts_at_the_packet_that_made_it_match(lab: NetLab, tmp_path, cores):
    """A server that does not close: the client's FIN puts it in CLOSE_WAIT (`sstate CLOSE_WAIT` becomes true at
    that packet); the server then sends more, which the closed client resets. midstat's file starts at that FIN and
    holds the rest; the packets before it are not written."""
    out = tmp_path / "close_wait.pcap"
    reference = str(tmp_path / "tcpdump.pcap")
    port = 6440 + int(cores)
    with lab.capture(reference):
        proc = start_live(lab, "--write", str(out), "--match", "sstate CLOSE_WAIT", "--cores", cores,
                          "--user", "root")
        try:
            # closed by the server first: it never passes CLOSE_WAIT, never chosen
            talk(lab, 6450 + int(cores), 2, closes=lambda i: SERVER_CLOSES)
            listener = listen(lab, port)
            client = lab.socket(lab.client)
            client.connect((SERVER4, port))
            server, _ = listener.accept()
            listener.close()
            name = endpoint(client.getsockname())
            client.sendall(b"before the match" * 40)
            server.recv(65536)
            client.shutdown(2)
            client.close()  # the FIN: the server is in CLOSE_WAIT from here
            time.sleep(0.3)
            server.sendall(b"after it" * 100)  # the client, closed, resets
            time.sleep(0.3)
            server.close()
            time.sleep(1.2)
        finally:
            err = _stop(proc)
    ours = _frames(out)
    theirs = _of(_frames(Path(reference)), port)
    fin = next(i for i, (_, f) in enumerate(theirs)
               if dpkt.ethernet.Ethernet(f).data.data.flags & dpkt.tcp.TH_FIN and endpoint_of(f) == name)
    assert fin > 3  # the handshake and the data came before: not written
    _same(ours, theirs[fin:])
    assert dpkt.ethernet.Ethernet(ours[0][1]).data.data.flags & dpkt.tcp.TH_FIN
    assert any(dpkt.ethernet.Ethernet(f).data.data.flags & dpkt.tcp.TH_RST for _, f in ours)
    assert f"wrote {len(ours)} packets of 1 connection to {out}" in err, err


def test_sigterm_mid_transfer_leaves_a_complete_file(lab: NetLab, tmp_path):
    """SIGTERM while connections are still being made: the file is whole (every record complete, as tcpdump reads
    it) and holds as many packets as the last line says."""
    out = tmp_path / "term.pcap"
    proc = start_live(lab, "--write", str(out), "--match", "dport 6460", "--cores", "2")
    done = threading.Event()

    def busy() -> None:
        while not done.is_set():
            talk(lab, 6460, 3)

    worker = threading.Thread(target=busy, daemon=True)
    worker.start()
    try:
        time.sleep(2.0)
        err = _stop(proc, signal.SIGTERM)
    finally:
        done.set()
        worker.join(timeout=20)
    count = len(_frames(out))  # dpkt reads every record to the end: a short one would raise
    assert count > 20
    assert f"wrote {count} packets of " in err, err
    if shutil.which("tcpdump"):
        read = subprocess.run(["tcpdump", "-nr", str(out)], capture_output=True, text=True)
        assert read.returncode == 0 and "truncated" not in read.stderr, read.stderr
        assert len(read.stdout.splitlines()) == count
    assert os.path.getsize(out) > 24


# -- a replayed capture on a veth pair of its own: the combined outputs, and a lost interface ------------------------
REPLAY_NS = f"mslw{os.getpid() % 10000}"


@pytest.fixture
def veth():
    """A namespace with a veth pair (lwsend -> lwcap); the test may delete lwcap."""
    if shutil.which("tcpreplay") is None:
        pytest.skip("needs tcpreplay")
    run = lambda *cmd: subprocess.run(cmd, capture_output=True, text=True, check=True)  # noqa: E731
    run("ip", "netns", "add", REPLAY_NS)
    try:
        run("ip", "-n", REPLAY_NS, "link", "add", "lwsend", "type", "veth", "peer", "name", "lwcap")
        for dev in ("lwsend", "lwcap", "lo"):
            run("ip", "-n", REPLAY_NS, "link", "set", dev, "up")
        for dev in ("lwsend", "lwcap"):
            subprocess.run(["ip", "netns", "exec", REPLAY_NS, "sysctl", "-qw", f"net.ipv6.conf.{dev}.disable_ipv6=1"],
                           capture_output=True)
        yield REPLAY_NS
    finally:
        subprocess.run(["ip", "netns", "del", REPLAY_NS], capture_output=True)


@pytest.mark.parametrize(("cores", "outputs"), [("1", ["--events"]), ("2", ["--summary", "--json"])])
def test_live_write_goes_with_the_other_outputs_and_survives_a_lost_interface(veth, tmp_path, cores, outputs):
    """mixed_traffic.pcap replayed onto the veth: `--write --match 'dport 6002'` with --events (or --summary --json)
    writes the frames the file mode writes of the same capture, the text output keeps to the same match; then the
    interface is deleted: midstat ends by itself (status 1, the capture's warning), the file complete."""
    capture = FIXTURES / "mixed_traffic.pcap"
    expected = tmp_path / "file_mode.pcap"
    made = midstat("-r", str(capture), "--write", str(expected), "--match", "dport 6002")
    assert made.returncode == 0, made.stderr
    out = tmp_path / "live.pcap"
    proc = subprocess.Popen(["ip", "netns", "exec", veth, sys.executable, "-m", "midstat_tui", "-i", "lwcap",
                             "--cores", cores, "--write", str(out), "--match", "dport 6002", *outputs],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    assert proc.stderr is not None
    line = proc.stderr.readline().decode()
    assert "listening on" in line, line
    try:
        subprocess.run(["ip", "netns", "exec", veth, "tcpreplay", "-i", "lwsend", "--pps=2000", str(capture)],
                       capture_output=True, check=True)
        time.sleep(1.5)
    finally:
        subprocess.run(["ip", "-n", veth, "link", "del", "lwcap"], capture_output=True)
        stdout, stderr = proc.communicate(timeout=30)
    err = stderr.decode()
    assert proc.returncode == 1, err
    assert "capture on lwcap stopped" in err and "Traceback" not in err
    ours = _frames(out)
    assert [f for _, f in ours] == [f for _, f in _frames(expected)]
    assert f"wrote {len(ours)} packets of 3 connections to {out}" in err, err
    text = stdout.decode()
    if "--events" in outputs:
        lines = text.splitlines()
        assert lines and all(":6002" in line for line in lines), text
    else:
        conns = json.loads(text)["connections"]
        assert len(conns) == 3 and all(c["server"].endswith(":6002") for c in conns)


@pytest.mark.parametrize("cores", ["1", "2"])
def test_live_write_to_a_full_device_is_a_one_line_error(veth, cores):
    """The file cannot take the packets (ENOSPC at the first flush): one line, status 2, no traceback, the shards
    gone with it."""
    proc = subprocess.Popen(["ip", "netns", "exec", veth, sys.executable, "-m", "midstat_tui", "-i", "lwcap",
                             "--cores", cores, "--write", "/dev/full", "--user", "root"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    assert proc.stderr is not None
    assert "listening on" in proc.stderr.readline().decode()
    subprocess.run(["ip", "netns", "exec", veth, "tcpreplay", "-i", "lwsend", "--pps=2000",
                    str(FIXTURES / "mixed_traffic.pcap")], capture_output=True, check=True)
    _, stderr = proc.communicate(timeout=30)  # it ends by itself at the first flush
    assert proc.returncode == 2
    assert stderr.decode().strip() == "midstat: --write /dev/full: No space left on device", stderr


def test_live_write_to_a_folder_that_is_not_there_is_refused_before_listening(lab):
    proc = subprocess.run(["ip", "netns", "exec", lab.router, sys.executable, "-m", "midstat_tui", "-i",
                           "rc", "--write", "/nonexistent-dir/x.pcap"], capture_output=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.decode().strip() == "midstat: --write /nonexistent-dir/x.pcap: No such file or directory"
