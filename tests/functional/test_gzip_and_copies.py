"""Files: gzip streamed, never a temporary file (issue #10). A cut-off .gz is read up to its last whole packet with
a warning; a gzip bomb is refused without filling the disk; Ctrl-C leaves nothing behind; gzip on standard input is
read; a root-only capture is reread (seek, damage recovery) from a descriptor, never copied."""

from __future__ import annotations

import json
import os
import signal
import stat
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from tests.helpers import ROOT, nobody_uid, shared

GZ = shared("zeek/Traces/echo-connections.pcap.gz")


def _run(*args: str, tmpdir: Path, stdin: bytes | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    env.pop("SUDO_USER", None)
    return subprocess.run([sys.executable, "-m", "midstat_tui", *args], capture_output=True, input=stdin,
                          timeout=timeout, cwd=ROOT, env=env)


def _whole_packets(pcap: bytes) -> int:
    """Records lying wholly inside a classic little-endian pcap (an independent count: not libpcap's)."""
    off, count = 24, 0
    while off + 16 <= len(pcap):
        incl = struct.unpack_from("<I", pcap, off + 8)[0]
        if off + 16 + incl > len(pcap):
            break
        off += 16 + incl
        count += 1
    return count


def _decompressible(gz: bytes) -> bytes:
    inflater = zlib.decompressobj(31)
    return inflater.decompress(gz) + inflater.flush()


@pytest.fixture
def tmpdir_private(tmp_path):
    d = tmp_path / "tmp"
    d.mkdir()
    os.chmod(d, 0o1777)
    return d


def _packets(proc: subprocess.CompletedProcess) -> int:
    return json.loads(proc.stdout)["stats"]["packets"]


@pytest.mark.parametrize("cores", ["1", "2"])
@pytest.mark.parametrize("cut", ["half", "last10", "trailer"])
def test_a_cut_gz_is_read_to_its_last_whole_packet_with_a_warning(tmp_path, tmpdir_private, cores, cut):
    raw = GZ.read_bytes()
    damaged = {"half": raw[: len(raw) // 2], "last10": raw[:-10], "trailer": raw[:-8]}[cut]
    path = tmp_path / "cut.pcap.gz"
    path.write_bytes(damaged)
    expected = _whole_packets(_decompressible(damaged))
    assert expected > 40_000
    proc = _run("-r", str(path), "--summary", "--json", "--cores", cores, tmpdir=tmpdir_private)
    assert proc.returncode == 1, proc.stderr
    err = proc.stderr.decode().splitlines()
    assert len(err) == 1 and err[0].startswith("midstat: warning:") and "compressed data ends early" in err[0]
    assert _packets(proc) == expected
    assert list(tmpdir_private.iterdir()) == []


def test_a_whole_gz_has_no_warning_and_matches_the_plain_file(tmp_path, tmpdir_private):
    plain = tmp_path / "plain.pcap"
    plain.write_bytes(_decompressible(GZ.read_bytes()))
    a = _run("-r", str(GZ), "--summary", "--json", "--cores", "1", tmpdir=tmpdir_private)
    b = _run("-r", str(plain), "--summary", "--json", "--cores", "1", tmpdir=tmpdir_private)
    assert a.returncode == b.returncode == 0 and a.stderr == b""
    assert a.stdout == b.stdout


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    """2 GiB of zeros gzipped into about 2 MB (made once: compressing it is most of the test's time)."""
    bomb = tmp_path_factory.mktemp("bomb") / "bomb.gz"
    inflater = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1 << 20)
    with open(bomb, "wb") as fh:
        for _ in range(2048):  # 2 GiB of zeros in about 2 MB
            fh.write(inflater.compress(zeros))
        fh.write(inflater.flush())
    return bomb


@pytest.mark.parametrize("cores", ["1", "2"])
def test_a_gzip_bomb_is_refused_at_once_without_writing_to_disk(bomb, tmpdir_private, cores):
    assert bomb.stat().st_size < 3_000_000
    started = time.monotonic()
    proc = _run("-r", str(bomb), "--summary", "--cores", cores, tmpdir=tmpdir_private, timeout=60)
    assert time.monotonic() - started < 20
    assert proc.returncode == 2
    assert proc.stderr.decode().strip() == f"midstat: {bomb}: not a pcap or pcapng capture (unknown file format)"
    assert list(tmpdir_private.iterdir()) == []


@pytest.mark.parametrize("cores", ["1", "2"])
def test_ctrl_c_while_reading_a_gz_leaves_nothing_behind(tmpdir_private, cores):
    env = {**os.environ, "TMPDIR": str(tmpdir_private)}
    proc = subprocess.Popen([sys.executable, "-m", "midstat_tui", "-r", str(GZ), "--summary", "--json", "--cores",
                             cores], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=env,
                            start_new_session=True)
    time.sleep(0.8)
    os.killpg(proc.pid, signal.SIGINT)  # the terminal's Ctrl-C: the whole process group
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert b"Traceback" not in err
    json.loads(out)  # what was read so far, whole
    assert list(tmpdir_private.iterdir()) == []
    leftovers = subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True).stdout
    assert leftovers == b""  # no feeder or worker left in the session


@pytest.mark.parametrize("payload", ["gz", "cut-gz", "plain"])
def test_gzip_on_standard_input_is_decompressed(tmp_path, tmpdir_private, payload):
    raw = GZ.read_bytes()
    data = {"gz": raw, "cut-gz": raw[: len(raw) // 2], "plain": _decompressible(raw)}[payload]
    by_file = _run("-r", str(GZ), "--summary", "--json", "--cores", "1", tmpdir=tmpdir_private)
    proc = _run("-r", "-", "--summary", "--json", "--cores", "1", stdin=data, tmpdir=tmpdir_private)
    if payload == "cut-gz":
        assert proc.returncode == 1 and "compressed data ends early" in proc.stderr.decode()
        assert _packets(proc) == _whole_packets(_decompressible(data))
    else:
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == by_file.stdout


@pytest.mark.skipif(os.geteuid() != 0 or nobody_uid() is None, reason="needs root and a 'nobody' account")
@pytest.mark.parametrize("cores", ["1", "2"])
@pytest.mark.parametrize("kind", ["pcap", "gz", "cut-pcap"])
def test_a_root_only_capture_is_read_as_nobody_without_a_copy(tmp_path, tmpdir_private, cores, kind):
    """Root-only, the default user (root gives up to nobody): read whole, and a cut-off one recovered (the recovery
    reopens the file as nobody: from the descriptor root opened), with no file in $TMPDIR."""
    raw = GZ.read_bytes()
    plain = _decompressible(raw)
    data = {"pcap": plain, "gz": raw, "cut-pcap": plain[: len(plain) // 2 + 7]}[kind]
    secret = tmp_path / "secret"
    secret.mkdir(mode=0o700)
    path = secret / ("x.pcap.gz" if kind == "gz" else "x.pcap")
    path.write_bytes(data)
    os.chmod(path, stat.S_IRUSR)
    proc = _run("-r", str(path), "--summary", "--json", "--cores", cores, tmpdir=tmpdir_private)
    if kind == "cut-pcap":
        assert proc.returncode == 1 and "cut off" in proc.stderr.decode()
        assert _packets(proc) == _whole_packets(data)
    else:
        assert proc.returncode == 0, proc.stderr
        assert _packets(proc) == _whole_packets(plain)
    assert list(tmpdir_private.iterdir()) == []


@pytest.mark.parametrize("cores", ["1", "2"])
@pytest.mark.parametrize("how", ["/dev/stdin", "process substitution", "named fifo"])
def test_gzip_through_a_pipe_named_by_its_path(tmp_path, how, cores):
    """A pipe named by a path (`-r /dev/stdin`, `-r <(gzip -c x)`, a FIFO) is read once and decompressed like
    `-r -` (it used to say "not a pcap")."""
    import gzip
    import shlex

    from tests.helpers import FIXTURES

    plain = FIXTURES / "mixed_traffic.pcap"
    packed = tmp_path / "mixed.pcap.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    midstat = shlex.join([sys.executable, "-m", "midstat_tui", "--summary", "--json", "--cores", cores])
    if how == "/dev/stdin":
        command = f"cat {shlex.quote(str(packed))} | {midstat} -r /dev/stdin"
    elif how == "process substitution":
        command = f"{midstat} -r <(cat {shlex.quote(str(packed))})"
    else:
        fifo = tmp_path / "fifo"
        os.mkfifo(fifo)
        command = f"cat {shlex.quote(str(packed))} > {shlex.quote(str(fifo))} & {midstat} -r {shlex.quote(str(fifo))}"
    proc = subprocess.run(["bash", "-c", command], capture_output=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    whole = subprocess.run([sys.executable, "-m", "midstat_tui", "-r", str(plain), "--summary", "--json"],
                           capture_output=True, cwd=ROOT, timeout=120)
    got, want = json.loads(proc.stdout), json.loads(whole.stdout)
    assert [c["client"] for c in got["connections"]] == [c["client"] for c in want["connections"]]
    assert got["stats"]["packets"] == want["stats"]["packets"]
