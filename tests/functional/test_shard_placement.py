"""Every shard sees what one core sees (issue #10): the shard of a packet is decided from the decoded connection key,
so on any number of cores a capture gives what it gives on one, for every link type and encapsulation, whatever
differs between the directions (IPv6 extension headers, MPLS one way, ICMP errors quoting IPv4 options, raw IP).

The comparison runs in process (run_shard on one core, run_sharded with forked workers on several) for every capture
in fixtures/pcaps and the shared captures, and through the real command for the generated asymmetric ones, pipes
and FIFOs, and a damaged capture (whose warning must name the packet tcpdump names)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from midstat_tui.capture.files import FileSource
from midstat_tui.engine.headless import Job, Sink, run_shard, run_sharded
from midstat_tui.engine.placement import Placer
from midstat_tui.errors import MidstatError
from midstat_tui.tcp.tracker import TrackerConfig
from tests.asymmetric import KINDS, write
from tests.helpers import FIXTURES, SHARED, apply_pulled, midstat, nobody_uid, uids

CAPTURES = sorted(FIXTURES.glob("*.pcap")) + sorted(
    p for p in SHARED.rglob("*") if p.suffix in (".pcap", ".pcapng", ".gz", ".cap"))
SAME = ("client", "server", "vlan", "client_state", "server_state", "first", "last", "packets_c2s", "packets_s2c",
        "bytes_c2s", "bytes_s2c", "retrans_bytes_c2s", "retrans_bytes_s2c", "zeek_state", "history", "midstream",
        "ended")
STATS = ("packets", "tcp_packets", "bytes", "non_tcp", "fragments", "malformed", "bad_checksum", "icmp_errors",
         "started", "ended", "midstream", "end_reasons")


class _Collect(Sink):
    def __init__(self) -> None:
        self.result: tuple | None = None

    def last(self, ts, stats, conns, everything, warning) -> None:
        # --summary --json: (first packet, id, the record's JSON text) per connection
        self.result = (stats, [json.loads(text) for _, _, text in everything], warning)


def _facts(conns: list[dict]) -> Counter:
    return Counter(tuple(json.dumps(c[k]) for k in SAME) for c in conns)


def _run(path: Path, cores: int) -> tuple[dict, list[dict], str | None]:
    job = Job(str(path), None, TrackerConfig(), summary=True, summary_json=True)
    sink = _Collect()
    if cores == 1:
        run_shard(job, 0, 1, sink)
    else:
        run_sharded(job, cores, sink)
    assert sink.result is not None
    return sink.result


@pytest.fixture(scope="module")
def asymmetric(tmp_path_factory) -> dict[str, Path]:
    where = tmp_path_factory.mktemp("asymmetric")
    return {kind: write(where / f"{kind}.pcap", kind) for kind in KINDS}


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_every_capture_is_the_same_on_one_core_and_two(path):
    try:
        FileSource(str(path)).close()
    except Exception as exc:  # noqa: BLE001 - a capture libpcap itself refuses is no shard matter
        pytest.skip(str(exc))
    try:
        one_stats, one, one_warning = _run(path, 1)
    except MidstatError as exc:  # a link type midstat does not read: the same one-line error on two cores
        with pytest.raises(MidstatError) as two_exc:
            _run(path, 2)
        assert str(two_exc.value) == str(exc)
        return
    two_stats, two, two_warning = _run(path, 2)
    assert _facts(two) == _facts(one)
    assert {k: two_stats[k] for k in STATS} == {k: one_stats[k] for k in STATS}
    assert two_warning == one_warning


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("cores", [2, 3])
def test_asymmetric_encapsulation_is_the_same_on_several_cores(asymmetric, kind, cores):
    def summary(n: int) -> dict:
        proc = midstat("-r", str(asymmetric[kind]), "--summary", "--json", "--cores", str(n))
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    one, many = summary(1), summary(cores)
    assert len(one["connections"]) == 40
    expected = ("CLOSED", "CLOSED") if kind == "icmp_options" else ("TIME_WAIT", "CLOSED")
    assert {(c["client_state"], c["server_state"]) for c in one["connections"]} == {expected}
    assert _facts(many["connections"]) == _facts(one["connections"])
    assert many["stats"]["packets"] == one["stats"]["packets"]
    assert len({c["shard"] for c in many["connections"]}) == cores  # the work is actually spread


def test_both_directions_and_the_quoting_icmp_error_are_placed_together(asymmetric):
    """Placer, packet by packet: every packet of a conversation (whatever its headers) on the shard of its SYN."""
    for kind in KINDS:
        source = FileSource(str(asymmetric[kind]))
        batch = [p for b in source.batches() for p in b]
        placer = Placer(source.datalink, 3)
        marks = placer.marks(batch)
        per = 2 if kind == "icmp_options" else 8
        groups = [set(marks[i:i + per]) for i in range(0, len(batch), per)]
        assert all(len(g) == 1 for g in groups), kind
        assert len(set().union(*groups)) == 3, kind


def _cut(src: Path, dst: Path, fraction: float) -> None:
    data = src.read_bytes()
    dst.write_bytes(data[:int(len(data) * fraction)])


def test_a_damaged_captures_warning_counts_every_packet_on_two_cores(tmp_path):
    if shutil.which("tcpdump") is None:
        pytest.skip("tcpdump is not installed")
    damaged = tmp_path / "cut.pcap"
    _cut(FIXTURES / "mixed_traffic.pcap", damaged, 0.6)
    tcpdump = subprocess.run(["tcpdump", "-nr", str(damaged)], capture_output=True, text=True)
    read = len(tcpdump.stdout.splitlines())
    assert read > 100 and "truncated" in tcpdump.stderr.lower()
    for cores in ("1", "2"):
        proc = midstat("-r", str(damaged), "--summary", "--json", "--cores", cores)
        assert proc.returncode == 1, proc.stderr
        assert f"cut off after packet {read}:" in proc.stderr.decode(), proc.stderr
        assert json.loads(proc.stdout)["stats"]["packets"] == read


def _summary_of(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize("cores", ["1", "2"])
def test_standard_input_and_process_substitution_read_once(cores):
    """`-r /dev/stdin` and `-r <(cat x)` are pipes: the gzip sniff must not eat the magic, and several shards get
    their packets from core 0, which reads the pipe once."""
    path = FIXTURES / "mixed_traffic.pcap"
    expected = _facts(_summary_of(midstat("-r", str(path), "--summary", "--json", "--cores", "1"))["connections"])
    piped = _summary_of(midstat("-r", "/dev/stdin", "--summary", "--json", "--cores", cores,
                                stdin=path.read_bytes()))
    assert _facts(piped["connections"]) == expected
    dash = _summary_of(midstat("-r", "-", "--summary", "--json", "--cores", cores, stdin=path.read_bytes()))
    assert _facts(dash["connections"]) == expected
    substituted = subprocess.run(
        ["bash", "-c", f'exec "$0" -m midstat_tui -r <(cat {path}) --summary --json --cores {cores}',
         sys.executable],
        capture_output=True, timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert _facts(_summary_of(substituted)["connections"]) == expected


def test_a_named_fifo_on_two_cores_is_read_once(tmp_path, asymmetric):
    fifo = tmp_path / "capture.fifo"
    os.mkfifo(fifo)
    data = asymmetric["mpls"].read_bytes()

    def feed() -> None:
        with open(fifo, "wb") as fh:
            fh.write(data)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    proc = midstat("-r", str(fifo), "--summary", "--json", "--cores", "2", timeout=60)
    writer.join(timeout=5)
    doc = _summary_of(proc)
    one = _summary_of(midstat("-r", str(asymmetric["mpls"]), "--summary", "--json", "--cores", "1"))
    assert _facts(doc["connections"]) == _facts(one["connections"])
    assert len({c["shard"] for c in doc["connections"]}) == 2


def test_the_at_offset_of_a_pipe_is_from_its_first_packet():
    path = FIXTURES / "mixed_traffic.pcap"
    one = _summary_of(midstat("-r", str(path), "--summary", "--json", "--at", "+2", "--cores", "1"))
    two = _summary_of(midstat("-r", "-", "--summary", "--json", "--at", "+2", "--cores", "2", stdin=path.read_bytes()))
    assert _facts(two["connections"]) == _facts(one["connections"])


@pytest.mark.parametrize("kind", ["mpls", "icmp_options"])
def test_the_tuis_sharded_replay_of_asymmetric_traffic_matches_one_core_and_seeks_back(asymmetric, kind):
    """The TUI's file shards (a Session each on its share) place packets as the headless ones do; seeking back
    re-reads the share from a checkpoint, counting the share's packets."""
    from midstat_tui.engine.shard_sessions import ShardedFileSession
    from tests.functional.test_cores import _pull_until, _rows_facts
    from tests.unit.test_session import _reference_rows

    path = asymmetric[kind]
    whole = _reference_rows(path, until=None)
    first, last = min(r.first for r in whole.values()), max(r.last for r in whole.values())
    session = ShardedFileSession(Job(str(path), None, TrackerConfig()), 2, speed=0)
    session.start()
    try:
        rows = _pull_until(session, {}, lambda: session.at_end)
        rows = _pull_until(session, rows, lambda: True)
        assert _rows_facts(rows) == _rows_facts(whole)
        assert {r.shard for r in rows.values()} == {0, 1}
        session.toggle_pause()
        target = first + (last - first) * 0.6
        session.seek(target)
        deadline = time.monotonic() + 30
        while not (pulled := session.pull()).reset:
            assert time.monotonic() < deadline, "no reset after the seek"
            time.sleep(0.05)
        assert _rows_facts(apply_pulled({}, pulled)) == _rows_facts(_reference_rows(path, until=target))
    finally:
        session.stop()


@pytest.mark.skipif(os.geteuid() != 0 or nobody_uid() is None, reason="needs root and a 'nobody' account")
def test_every_process_reading_a_fifo_on_two_cores_gives_up_root(tmp_path):
    """Core 0 reads the FIFO (opened as root) and hands the packets out; it and both shards run as nobody."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    from netlab import process_tree

    fifo = tmp_path / "capture.fifo"
    os.mkfifo(fifo)
    data = (SHARED / "zeek" / "Traces" / "ssh" / "ssh.pcap").read_bytes()  # 1,797 packets: the first batch comes early
    proc = subprocess.Popen([sys.executable, "-m", "midstat_tui", "-r", str(fifo), "--summary", "--json", "--cores",
                             "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=Path(__file__).resolve().parents[2])
    try:
        with open(fifo, "wb") as fh:
            fh.write(data[:len(data) * 3 // 4])
            fh.flush()
            deadline = time.monotonic() + 20
            while len(process_tree(proc.pid)) < 3 and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(0.5)
            pids = process_tree(proc.pid)
            assert len(pids) >= 3
            assert {tuple(uids(p)) for p in pids} == {(nobody_uid(),) * 4}
            fh.write(data[len(data) * 3 // 4:])
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert len(json.loads(out)["connections"]) > 5


def test_gzip_on_standard_input_on_two_cores():
    """Compressed standard input is decompressed once (capture.feed) and handed to the shards by core 0."""
    import gzip

    path = FIXTURES / "mixed_traffic.pcap"
    expected = _facts(_summary_of(midstat("-r", str(path), "--summary", "--json", "--cores", "1"))["connections"])
    two = _summary_of(midstat("-r", "-", "--summary", "--json", "--cores", "2",
                              stdin=gzip.compress(path.read_bytes())))
    assert _facts(two["connections"]) == expected
    assert len({c["shard"] for c in two["connections"]}) == 2
