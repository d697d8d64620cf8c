"""The `midstat` command as users run it: output formats and every error path (real processes, real files)."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
import subprocess

import pytest

from tests.helpers import FIXTURES, midstat, shared

CLOSE = FIXTURES / "close_client_first.pcap"
V6 = FIXTURES / "ipv6_close.pcap"


def _checkpoint(name: str, label: str) -> float:
    doc = json.loads((FIXTURES / f"{name}.json").read_text())
    return next(cp["ts"] for cp in doc["checkpoints"] if cp["label"] == label)


def _one_line_error(proc: subprocess.CompletedProcess, status: int = 2) -> str:
    err = proc.stderr.decode()
    assert proc.returncode == status, (proc.returncode, err)
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line]
    assert len(lines) == 1, err
    assert lines[0].startswith("midstat: ")
    return lines[0]


# -- output formats -------------------------------------------------------------------------------------------------
def test_plain_is_the_original_midstat_table():
    ts = _checkpoint("close_client_first", "client closed")
    proc = midstat("-r", str(CLOSE), "--plain", "--at", repr(ts))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.decode().splitlines()
    assert lines[0] == "Proto CPU Client Address        Client State Server Address        Server State"
    assert len(lines) == 2
    row = lines[1]
    assert row.startswith("tcp   ") and row[6] in "0123456789" and row[10:].startswith("10.231.1.1:")
    # columns as the original: 6 + 4 + 21 + 1 + 12 + 1 + 21 + 1
    assert row[10:31].rstrip().startswith("10.231.1.1:") and row[31] == " "
    assert row[32:44] == "FIN_WAIT_2  "
    assert row[45:66].rstrip() == "10.231.2.1:5001"
    assert row[67:] == "CLOSE_WAIT"


def test_plain_prints_a_table_per_second_of_packet_time():
    proc = midstat("-r", str(shared("zeek/Traces/ssh/ssh.pcap")), "--plain")
    assert proc.returncode == 0
    text = proc.stdout.decode()
    assert text.count("Proto CPU Client Address") >= 20
    assert "TIME_WAIT    131.159.21.1:22       CLOSED" in text


def test_plain_says_when_the_table_bound_evicted_connections():
    proc = midstat("-r", str(FIXTURES / "mixed_traffic.pcap"), "--plain", "--max-conns", "5", "--cores", "1")
    assert proc.returncode == 0
    status = [line for line in proc.stdout.decode().splitlines() if line.startswith("# table full")]
    assert status, proc.stdout.decode()[-500:]
    evicted = int(status[-1].split()[3])
    summary = json.loads(midstat("-r", str(FIXTURES / "mixed_traffic.pcap"), "--summary", "--json",
                                 "--max-conns", "5", "--cores", "1").stdout)
    assert evicted == summary["stats"]["evicted"] > 0


def test_ipv6_endpoints_widen_the_columns():
    ts = _checkpoint("ipv6_close", "established")
    lines = midstat("-r", str(V6), "--plain", "--at", repr(ts)).stdout.decode().splitlines()
    header, row = lines
    client = row.split()[2]
    assert client.startswith("[fd31:1::1]:")
    width = header.index("Client State") - header.index("Client Address")
    assert width == max(22, len(client) + 1, len(row.split()[4]) + 1)
    assert row[header.index("Client State"):].startswith("ESTABLISHED")
    assert row[header.index("Server State"):] == "ESTABLISHED"


def test_events_are_json_lines_in_packet_time_order():
    proc = midstat("-r", str(CLOSE), "--events")
    assert proc.returncode == 0
    events = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert [e["event"] for e in events][0] == "start"
    times = [e["ts"] for e in events]
    assert times == sorted(times)
    common = {"ts", "event", "conn", "client", "server", "vlan", "shard", "client_state", "server_state"}
    for e in events:
        assert common <= set(e)
        if e["event"] == "start":
            assert isinstance(e["midstream"], bool)
        if e["event"] == "state":
            assert e["side"] in ("client", "server")
            assert set(e["packet"]) == {"dir", "flags", "seq", "ack", "len"}
    moves = [(e["side"], e["from"], e["to"]) for e in events if e["event"] == "state"]
    assert moves[:4] == [("client", "CLOSED", "SYN_SENT"), ("server", "CLOSED", "SYN_RCVD"),
                         ("client", "SYN_SENT", "ESTABLISHED"), ("server", "SYN_RCVD", "ESTABLISHED")]
    first = next(e for e in events if e["event"] == "state")
    assert first["packet"]["flags"] == "S" and first["packet"]["dir"] == "c2s"
    # the connection is in TIME_WAIT at the end of the file: no end event
    assert not any(e["event"] == "end" for e in events)


def test_events_end_carries_reason_and_counters():
    proc = midstat("-r", str(FIXTURES / "reset_by_server.pcap"), "--events")
    end = [json.loads(line) for line in proc.stdout.decode().splitlines() if '"end"' in line][0]
    assert end["reason"] == "reset"
    assert end["rst_by"] == "server"
    assert end["packets_c2s"] > 0 and end["packets_s2c"] > 0
    assert (end["client_state"], end["server_state"]) == ("CLOSED", "CLOSED")


FIELDS = {"conn", "shard", "client", "server", "vlan", "client_state", "server_state", "first", "last",
          "packets_c2s", "packets_s2c", "bytes_c2s", "bytes_s2c", "payload_c2s", "payload_s2c", "retrans_bytes_c2s",
          "retrans_bytes_s2c", "rtt_client_ms", "rtt_server_ms", "zeek_state", "history", "midstream", "ended"}


def test_json_snapshots_every_second_and_at_the_end():
    proc = midstat("-r", str(shared("zeek/Traces/ssh/ssh.pcap")), "--json")
    snaps = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert len(snaps) >= 20
    assert [s["ts"] for s in snaps] == sorted(s["ts"] for s in snaps)
    for snap in snaps:
        assert set(snap) == {"ts", "stats", "connections"}
        for conn in snap["connections"]:
            assert set(conn) >= FIELDS
    stats = snaps[-1]["stats"]
    for key in ("packets", "tcp_packets", "bytes", "non_tcp", "malformed", "active", "started", "ended", "evicted"):
        assert key in stats
    summary = json.loads(midstat("-r", str(shared("zeek/Traces/ssh/ssh.pcap")), "--summary", "--json").stdout)
    counted = sum(c["packets_c2s"] + c["packets_s2c"] + c["bad_checksum"] for c in summary["connections"])
    assert counted == summary["stats"]["tcp_packets"] == stats["tcp_packets"]


def test_at_offset_from_the_first_packet():
    doc = json.loads(midstat("-r", str(CLOSE), "--at", "+0.05").stdout)
    assert [(c["client_state"], c["server_state"]) for c in doc["connections"]] == [("ESTABLISHED", "ESTABLISHED")]


def test_summary_lists_every_connection_of_the_run():
    path = shared("zeek/Traces/pop3/pop3.pcap")
    table = midstat("-r", str(path), "--summary").stdout.decode().splitlines()
    assert table[0].split()[:5] == ["conn", "first", "duration", "client", "server"]
    assert len(table) == 1 + 11
    doc = json.loads(midstat("-r", str(path), "--summary", "--json").stdout)
    assert len(doc["connections"]) == 11
    assert sorted({c["zeek_state"] for c in doc["connections"]}) == ["REJ", "SF"]


def test_match_filters_every_headless_output():
    path = str(shared("zeek/Traces/pop3/pop3.pcap"))
    doc = json.loads(midstat("-r", path, "--summary", "--json", "--match", "zeek REJ").stdout)
    assert len(doc["connections"]) == 6 and {c["zeek_state"] for c in doc["connections"]} == {"REJ"}
    events = [json.loads(x) for x in midstat("-r", path, "--events", "--match", "sport 26383").stdout.splitlines()]
    assert events and all(e["client"].endswith(":26383") for e in events)


def test_invalid_match_says_where():
    line = _one_line_error(midstat("-r", str(CLOSE), "--plain", "--match", "dport 80 and state NOPE"))
    assert "not a TCP state" in line and "column 20" in line


def test_gzip_and_stdin_read_the_same(tmp_path):
    plain = midstat("-r", str(CLOSE), "--events", "--cores", "1").stdout
    gz = tmp_path / "close.pcap.gz"
    gz.write_bytes(gzip.compress(CLOSE.read_bytes()))
    assert midstat("-r", str(gz), "--events", "--cores", "1").stdout == plain
    assert midstat("-r", "-", "--events", "--cores", "1", stdin=CLOSE.read_bytes()).stdout == plain


@pytest.mark.parametrize("rel", ["zeek/Traces/irc-dcc-send.pcapng", "tcpdump/tests/tcp-handshake-nano.pcap",
                                 "lwerdna-filesamples/simple_http_sll2.pcap", "zeek/Traces/rotation.pcap"])
def test_reads_pcapng_nanosecond_sll2_and_raw_ip(rel):
    proc = midstat("-r", str(shared(rel)), "--summary", "--json", "--no-checksum")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["connections"]


def test_capture_filter_on_a_file():
    doc = json.loads(midstat("-r", str(shared("zeek/Traces/ssh/ssh.pcap")), "-f", "port 2200", "--summary",
                             "--json").stdout)
    assert [c["server"].endswith(":2200") for c in doc["connections"]] == [True]


def test_a_closed_pipe_is_not_an_error():
    import sys

    proc = subprocess.run(f"{sys.executable} -m midstat_tui -r {shared('zeek/Traces/ssh/ssh.pcap')} --plain | head -1",
                          shell=True, capture_output=True, timeout=60, executable="/bin/bash",
                          env={**os.environ, "PYTHONPATH": str(FIXTURES.parent.parent)})
    assert proc.stdout.decode().startswith("Proto CPU")
    assert proc.stderr == b""


# -- errors -------------------------------------------------------------------------------------------------------
def test_missing_file():
    assert "no such file" in _one_line_error(midstat("-r", "/nonexistent/x.pcap", "--plain"))


def test_directory(tmp_path):
    assert "directory" in _one_line_error(midstat("-r", str(tmp_path), "--plain"))


def test_empty_file(tmp_path):
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    assert "empty" in _one_line_error(midstat("-r", str(empty), "--plain"))


def test_not_a_capture(tmp_path):
    junk = tmp_path / "notes.txt"
    junk.write_text("this is not a capture file\n" * 10)
    assert "not a pcap or pcapng capture" in _one_line_error(midstat("-r", str(junk), "--plain"))


def test_unsupported_link_type():
    line = _one_line_error(midstat("-r", str(shared("zeek/Traces/llc.pcap")), "--plain"))
    assert "unsupported link type FDDI" in line


def test_truncated_capture_reports_everything_before_the_cut(tmp_path):
    data = shared("zeek/Traces/ssh/ssh.pcap").read_bytes()
    cut_at = len(data) - 700
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[:cut_at])
    whole_records = _records_before(data, cut_at)
    proc = midstat("-r", str(cut), "--summary", "--json")
    warning = _one_line_error(proc, status=1)
    assert "cut off after packet" in warning
    whole = json.loads(midstat("-r", str(shared("zeek/Traces/ssh/ssh.pcap")), "--summary", "--json").stdout)
    part = json.loads(proc.stdout)
    assert part["stats"]["packets"] == whole_records < whole["stats"]["packets"]
    assert whole_records > 512  # more than one batch: the batch that met the damage is re-read, not lost


def _records_before(data: bytes, cut_at: int) -> int:
    """How many pcap records lie wholly before byte `cut_at` (classic pcap, little-endian)."""
    import struct

    offset, count = 24, 0
    while offset + 16 <= cut_at:
        caplen = struct.unpack_from("<I", data, offset + 8)[0]
        if offset + 16 + caplen > cut_at:
            break
        offset += 16 + caplen
        count += 1
    return count


def test_invalid_bpf_says_where():
    line = _one_line_error(midstat("-r", str(CLOSE), "-f", "tcp port port", "--plain"))
    assert "invalid capture filter" in line and "syntax error" in line


def test_invalid_timeout_option():
    assert "STATE=SECONDS" in _one_line_error(midstat("-r", str(CLOSE), "--plain", "--timeout", "bogus=1"))


def test_unknown_interface():
    assert "no such interface" in _one_line_error(midstat("-i", "nosuchif0", "--plain"))


NO_CAPS = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--"]


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to drop capabilities")
def test_no_permission_to_capture():
    """root without CAP_NET_RAW (capabilities dropped from the bounding set) cannot open a capture."""
    proc = subprocess.run([*NO_CAPS, *midstat_argv("-i", "lo", "--plain")], capture_output=True, timeout=60)
    assert "CAP_NET_RAW" in _one_line_error(proc)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to drop capabilities")
def test_unreadable_file(tmp_path):
    secret = tmp_path / "secret.pcap"
    shutil.copy(CLOSE, secret)
    os.chown(secret, 65534, 65534)
    secret.chmod(0o000)
    proc = subprocess.run([*NO_CAPS, *midstat_argv("-r", str(secret), "--plain")], capture_output=True,
                          timeout=60)
    assert "permission denied" in _one_line_error(proc)


def midstat_argv(*args: str) -> list[str]:
    import sys

    return [sys.executable, "-m", "midstat_tui", *args]


@pytest.fixture(scope="module")
def big_capture(tmp_path_factory):
    """600,000 synthetic packets: several seconds of work on either core count."""
    import sys

    from tests.helpers import ROOT

    big = tmp_path_factory.mktemp("big") / "big.pcap"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "synth.py"), str(big), "--packets", "600000",
                    "--conns", "30000"], check=True, capture_output=True)
    return big


def _read_so_far(pid: int, path) -> int:
    """How far into `path` the process of `pid`'s tree that has read most of it is (its file offset, from /proc;
    a process that ends while it is looked at is passed over)."""
    import os

    from scripts.netlab import process_tree

    furthest = 0
    for proc in process_tree(pid):
        try:
            fds = os.listdir(f"/proc/{proc}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{proc}/fd/{fd}") != str(path):
                    continue
                with open(f"/proc/{proc}/fdinfo/{fd}") as fh:
                    info = fh.read()
            except OSError:
                continue
            furthest = max(furthest, int(info.split("pos:")[1].split()[0]))
    return furthest


def _sigterm_once_read(path, share: float, *options: str) -> dict:
    """`midstat -r path --summary --json` stopped with SIGTERM once `share` of the file has been read (by any of
    its processes, whatever the speed): exit 0, no traceback, no process left; returns the JSON it printed."""
    import signal
    import sys
    import time

    from scripts.netlab import process_tree
    from tests.helpers import ROOT

    proc = subprocess.Popen([sys.executable, "-m", "midstat_tui", "-r", str(path), "--summary", "--json", *options],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while (_read_so_far(proc.pid, path) < path.stat().st_size * share and proc.poll() is None
               and time.monotonic() < deadline):
            time.sleep(0.002)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # a failure above: nothing of this run may be left for the next test to find
            for pid in process_tree(proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, err
    assert b"Traceback" not in err
    left = subprocess.run(["pgrep", "-f", str(path)], capture_output=True, text=True).stdout.split()
    assert not left, "a worker outlived the run"
    return json.loads(out)


@pytest.mark.parametrize("cores", ["1", "2"])
def test_sigterm_mid_file_prints_the_summary_so_far(big_capture, cores):
    """A long run stopped with SIGTERM (or Ctrl-C) still prints what it tracked, and exits 0: on several cores
    core 0 asks every shard for what it has and merges that, leaving no worker behind."""
    doc = _sigterm_once_read(big_capture, 0.1, "--cores", cores, "--user", "root")  # mid-file for sure
    assert 0 < doc["stats"]["packets"] < 600000
    assert doc["connections"]
    if cores == "2":
        assert {c["shard"] for c in doc["connections"]} == {0, 1}


@pytest.mark.parametrize("cores", ["1", "2"])
def test_sigterm_while_a_root_only_file_is_copied_for_the_user(big_capture, cores):
    """The file is in a folder only root may enter, so it is copied for the unprivileged user first (each shard
    copies its own): a SIGTERM during that copy still ends the run cleanly, with a valid (maybe empty) report,
    exit 0 and no worker left (core 0, already unprivileged, may not signal a shard that is still root)."""
    from tests.helpers import nobody_uid

    if nobody_uid() is None:
        pytest.skip("no unprivileged account to drop to")
    assert big_capture.parent.stat().st_mode & 0o077 == 0  # pytest's tmp folders: root only
    doc = _sigterm_once_read(big_capture, 0.01, "--cores", cores)
    assert doc["stats"]["packets"] < 600000


def test_version_says_which_engine_runs():
    import os
    import sys

    from tests.helpers import ROOT

    for env, expected in (({}, "(compiled core)"), ({"MIDSTAT_PURE_PYTHON": "1"}, "MIDSTAT_PURE_PYTHON is set")):
        proc = subprocess.run([sys.executable, "-m", "midstat_tui", "--version"], capture_output=True, text=True,
                              cwd=ROOT, env={**os.environ, **env})
        assert proc.returncode == 0 and expected in proc.stdout, proc.stdout
