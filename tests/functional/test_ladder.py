"""#13: a connection's packets re-read from the capture, drawn as a ladder (`--ladder`), and written away (`--write`).

The expected ladders in fixtures/ladder were written by midstat and checked by hand against tshark's reading of the
same kernel-made captures; `test_ladder_numbers_agree_with_tshark` keeps that check running: every arrow's relative
sequence and ACK numbers, payload length, window and dup-ACK / retransmission marks against tshark's."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import dpkt
import pytest

from midstat_tui.engine.flow_packets import DUP_ACK, OOO, RETRANS, FlowReader, FlowRef
from midstat_tui.output.ladder import ladder
from tests.helpers import FIXTURES, ROOT, fixture_packets, midstat, shared

LADDERS = ROOT / "fixtures" / "ladder"
TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (scripts/install.sh --test)")

CASES = [
    ("close_client_first", []),
    ("simultaneous_close", []),
    ("lossy_transfer", []),
    ("reset_by_server", []),
    ("midstream", []),
    ("unreachable", []),
    ("vlan_close", []),
]


@pytest.mark.parametrize(("name", "extra"), CASES + [("ipv6_close", ["--plain"]),
                                                      ("close_server_first", ["--absolute-seq"])])
def test_headless_ladder_is_the_expected_text(name, extra):
    suffix = ".plain" if "--plain" in extra else ".absolute" if "--absolute-seq" in extra else ""
    proc = midstat("-r", str(FIXTURES / f"{name}.pcap"), "--ladder", *extra)
    assert proc.returncode == 0, proc.stderr
    expected = (LADDERS / f"{name}{suffix}.txt").read_text(encoding="utf-8")
    assert proc.stdout.decode() == expected


@pytest.mark.parametrize("name", [n for n, _ in CASES] + ["ipv6_close", "mixed_traffic"])
def test_ladder_fits_80_columns_and_plain_is_ascii(name):
    for extra in ([], ["--plain"], ["--absolute-seq"]):
        proc = midstat("-r", str(FIXTURES / f"{name}.pcap"), "--ladder", *extra)
        assert proc.returncode == 0, proc.stderr
        text = proc.stdout.decode()
        assert max(len(line) for line in text.splitlines()) <= 80
        if extra == ["--plain"]:
            assert text.isascii()


def _tshark_rows(path: Path) -> list[dict]:
    fields = ["tcp.srcport", "tcp.seq", "tcp.ack", "tcp.len", "tcp.window_size_value", "tcp.flags.ack",
              "tcp.analysis.duplicate_ack", "tcp.analysis.retransmission", "tcp.analysis.out_of_order",
              "tcp.analysis.fast_retransmission"]
    out = subprocess.run([TSHARK, "-r", str(path), "-Y", "tcp and not icmp and not icmpv6", "-T", "fields",
                          *sum((["-e", f] for f in fields), [])], capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        values = line.split("\t")
        rows.append(dict(zip(fields, values, strict=True)))
    return rows


def _arrows(flow) -> list[str]:
    """Each packet's label, as drawn (its overflow lines joined), unfolded."""
    labels: dict[int, str] = {}
    for line in ladder(flow, fold=False):
        if line.kind in ("packet", "more") and line.first >= 0:
            inner = line.text[22:78]
            labels[line.first] = labels.get(line.first, "") + " " + inner.strip(" │─<>┼")
    return [labels[i] for i in sorted(labels)]


@needs_tshark
@pytest.mark.parametrize("name", ["lossy_transfer", "midstream", "simultaneous_close", "reset_by_client",
                                  "half_close", "vlan_close", "ipv6_close", "close_server_first"])
def test_ladder_numbers_agree_with_tshark(name):
    path = FIXTURES / f"{name}.pcap"
    reader = FlowReader(str(path))
    (row,) = reader.select(None)
    flow = reader.flow(FlowRef.of(row))
    theirs = _tshark_rows(path)
    tcp_packets = [p for p in flow.packets if hasattr(p.seg, "flags")]
    assert len(tcp_packets) == len(theirs)
    labels = [label for p, label in zip(flow.packets, _arrows(flow), strict=True) if hasattr(p.seg, "flags")]
    resent_ours, resent_theirs, dup_ours, dup_theirs = set(), set(), set(), set()
    for i, (packet, label, t) in enumerate(zip(tcp_packets, labels, theirs, strict=True)):
        assert str(packet.seg.sport) == t["tcp.srcport"]
        fields = dict(re.findall(r"(seq|ack|len|win)=(\d+)", label))
        if "seq" in fields:
            assert fields["seq"] == t["tcp.seq"], (i, label)
        if t["tcp.flags.ack"] in ("1", "True"):
            assert fields["ack"] == t["tcp.ack"], (i, label)
        assert fields.get("len", "0") == t["tcp.len"], (i, label)
        assert fields["win"] == t["tcp.window_size_value"], (i, label)
        if RETRANS in packet.marks or OOO in packet.marks:
            resent_ours.add(i)
        if t["tcp.analysis.retransmission"] or t["tcp.analysis.out_of_order"] or \
                t["tcp.analysis.fast_retransmission"]:
            resent_theirs.add(i)
        if DUP_ACK in packet.marks:
            dup_ours.add(i)
        if t["tcp.analysis.duplicate_ack"]:
            dup_theirs.add(i)
        if RETRANS in packet.marks:
            assert "[retrans]" in label
    assert dup_ours == dup_theirs
    # a retransmitted FIN is one to midstat's counters (and to Linux), not to tshark: compare the data segments
    data = {i for i, p in enumerate(tcp_packets) if p.seg.payload}
    assert resent_ours & data == resent_theirs & data


def test_a_folded_run_says_what_it_holds():
    reader = FlowReader(str(FIXTURES / "lossy_transfer.pcap"))
    (row,) = reader.select(None)
    flow = reader.flow(FlowRef.of(row))
    lines = ladder(flow)
    folds = [line for line in lines if line.kind == "fold"]
    assert len(folds) == 1
    run = flow.packets[folds[0].first:folds[0].last + 1]
    data = [p for p in run if p.seg.payload]
    assert f"{len(data):,} data packets" in folds[0].text
    resent = sum(1 for p in data if RETRANS in p.marks)
    assert f"{resent:,} retransmitted" in " ".join(line.text for line in lines if line.fold == folds[0].first)
    # unfolded: one arrow per packet of the run, under a heading that names the run
    opened = ladder(flow, unfold={folds[0].first})
    assert sum(1 for line in opened if line.kind == "packet") == len(flow.packets)
    assert sum(1 for line in lines if line.kind == "packet") == len(flow.packets) - len(run)


def test_ladder_with_match_picks_connections():
    proc = midstat("-r", str(FIXTURES / "mixed_traffic.pcap"), "--ladder", "--match", "zeek REJ")
    assert proc.returncode == 0, proc.stderr
    titles = [line for line in proc.stdout.decode().splitlines()
              if line.startswith("# ") and not line.startswith("#  ")]  # (not a title's second line)
    assert len(titles) == 3 and all(":6999," in t and "ended: reset" in t for t in titles)


def test_no_match_says_so():
    proc = midstat("-r", str(FIXTURES / "mixed_traffic.pcap"), "--ladder", "--match", "port 1")
    assert proc.returncode == 0
    assert proc.stdout == b""
    assert "no connection matches 'port 1'" in proc.stderr.decode()


@pytest.mark.parametrize(("args", "words"), [
    (["--ladder", "--summary"], "not with --summary"),
    (["--ladder", "--problems"], "not with --problems"),
    (["--write", "/tmp/x.pcap", "--group-by", "server"], "not with --group-by"),
    (["--write", "/tmp/x.pcap", "--summary"], "live, --write goes with the other outputs"),
    (["--write", "/tmp/x.pcap", "--plain"], "not with --plain"),  # (it printed nothing, status 0)
    (["--absolute-seq", "--write", "/tmp/x.pcap"], "--absolute-seq is for --ladder"),
    (["--ladder", "--match", "dport"], "--match"),
    (["--write", "/nonexistent-dir/x.pcap"], "--write /nonexistent-dir/x.pcap: No such file or directory"),
])
def test_bad_combinations_are_one_line_errors(args, words):
    proc = midstat("-r", str(FIXTURES / "mixed_traffic.pcap"), *args)
    assert proc.returncode == 2
    err = proc.stderr.decode()
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and words in err, err


def test_ladder_of_standard_input_is_refused():
    proc = midstat("-r", "-", "--ladder", stdin=(FIXTURES / "refused.pcap").read_bytes())
    assert proc.returncode == 2
    assert "read only once" in proc.stderr.decode()


def test_port_reuse_incarnations_stay_apart(tmp_path):
    """Two incarnations of one tuple (the first one's end, then a new SYN on the same ports): each ladder holds its
    own packets only."""
    from tests.rewrite_pcap import port_reuse

    out, _ = port_reuse(tmp_path / "reuse.pcap")  # the same conversation again, 5 s later, another ISN
    packets = fixture_packets("close_client_first.pcap")
    flows = FlowReader(str(out))
    rows = flows.select(None)
    assert len(rows) == 2
    for row in rows:
        flow = flows.flow(FlowRef.of(row))
        assert len(flow.packets) == len(packets)
        assert all(row.first <= p.ts <= row.last for p in flow.packets)
        assert flow.packets[0].seg.flags & 0x02  # each starts with its own SYN


def _conversations(path: Path) -> dict[tuple[str, str], tuple[int, int, int, int]]:
    """tshark's TCP conversations: (endpoint, endpoint) -> frames and bytes each way."""
    out = subprocess.run([TSHARK, "-r", str(path), "-q", "-z", "conv,tcp"], capture_output=True, text=True,
                         check=True).stdout
    convs = {}
    for line in out.splitlines():
        m = re.match(r"(\S+)\s+<->\s+(\S+)\s+(\d+)\s+([\d,]+) \S+\s+(\d+)\s+([\d,]+) \S+", line)
        if m:
            a, b, f1, b1, f2, b2 = m.groups()
            convs[(a, b)] = (int(f1), int(b1.replace(",", "")), int(f2), int(b2.replace(",", "")))
    return convs


@needs_tshark
@pytest.mark.parametrize(("capture", "match", "count"), [
    ("mixed_traffic.pcap", "zeek RSTO or zeek REJ", 6),
    ("mixed_traffic.pcap", "dport 6002", None),
    ("mixed_traffic.pcap", "sstate time-wait or cstate time-wait", None),
    ("vlan_close.pcap", "vlan 100", 1),
    ("lossy_transfer.pcap", None, 1),
    # a phone's capture: segments sent with checksum offload (bad checksums, never tracked) at a connection's
    # start and end still belong to it
    ("ndpi/tests/cfgs/default/pcap/1kxun.pcap", None, 93),
    ("zeek/Traces/mixed-vlan-mpls.pcap", "port 23", 1),   # under MPLS labels
])
def test_write_has_the_connections_packets_as_tshark_counts_them(tmp_path, capture, match, count):
    path = FIXTURES / capture if "/" not in capture else shared(capture)
    if not path.exists():
        pytest.skip(f"{path} is not here (MIDSTAT_SHARED)")
    out = tmp_path / "out.pcap"
    args = ["-r", str(path), "--write", str(out)] + (["--match", match] if match else [])
    proc = midstat(*args)
    assert proc.returncode == 0, proc.stderr
    written = _conversations(out)
    original = _conversations(path)
    if count is not None:
        assert len(written) == count
    assert written, "nothing written"
    for pair, numbers in written.items():
        assert original[pair] == numbers, pair
    # and nothing else: the --summary of the same match names the same connections
    summary = midstat("-r", str(path), "--summary", "--json", *(["--match", match] if match else []))
    import json

    conns = json.loads(summary.stdout)["connections"]
    assert len(conns) == len(written)
    tcpdump = shutil.which("tcpdump")
    if tcpdump:
        read = subprocess.run([tcpdump, "-nr", str(out)], capture_output=True, text=True)
        assert read.returncode == 0
        assert len(read.stdout.splitlines()) == sum(f1 + f2 for f1, _, f2, _ in written.values())


def test_write_as_root_gives_the_file_to_the_dropped_user(tmp_path):
    import os
    import pwd

    if os.geteuid() != 0:
        pytest.skip("needs root")
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no 'nobody' account")
    out_dir = tmp_path / "root-only"
    out_dir.mkdir(mode=0o700)  # only root may create files here: the file must be opened before the drop
    out = out_dir / "out.pcap"
    proc = midstat("-r", str(FIXTURES / "reset_by_client.pcap"), "--write", str(out), "--user", nobody.pw_name)
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 24
    if TSHARK:
        assert sum(f1 + f2 for f1, _, f2, _ in _conversations(out).values()) == 12


def test_write_to_a_full_device_is_a_one_line_error():
    proc = midstat("-r", str(FIXTURES / "lossy_transfer.pcap"), "--write", "/dev/full")
    assert proc.returncode == 2
    err = proc.stderr.decode()
    assert err.strip() == "midstat: --write /dev/full: No space left on device", err


def test_ladder_of_a_damaged_capture_says_so_and_exits_1(tmp_path):
    data = (FIXTURES / "lossy_transfer.pcap").read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: len(data) * 2 // 3])
    proc = midstat("-r", str(cut), "--ladder", "--plain")
    assert proc.returncode == 1
    err = proc.stderr.decode()
    assert "Traceback" not in err and "warning" in err
    assert proc.stdout.decode().startswith("# 10.231.1.1:36258 -> 10.231.2.1:5010")


def test_a_bad_checksum_packet_is_shown_marked_and_tracked_as_the_tracker_did(tmp_path):
    """The tracker counts a bad-checksum packet on its connection and does not track it: the ladder shows it,
    marked, with the states unmoved; the packets before the connection's first are not its own."""
    import dpkt

    with open(FIXTURES / "reset_by_client.pcap", "rb") as fh:
        reader = dpkt.pcap.Reader(fh)
        packets = [(ts, bytes(frame)) for ts, frame in reader]
        link = reader.datalink()
    rst = next(i for i, (_, frame) in enumerate(packets)
               if isinstance(getattr(dpkt.ethernet.Ethernet(frame).data, "data", None), dpkt.tcp.TCP)
               and dpkt.ethernet.Ethernet(frame).data.data.flags & dpkt.tcp.TH_RST)
    out = tmp_path / "bad.pcap"
    with open(out, "wb") as fh:
        writer = dpkt.pcap.Writer(fh, linktype=link)
        for i, (ts, frame) in enumerate(packets):
            if i == rst:  # the RST, damaged (its TCP checksum): its receiver never sees a valid one
                frame = frame[:50] + bytes([frame[50] ^ 0xFF]) + frame[51:]
            writer.writepkt(frame, ts)
    flows = FlowReader(str(out))
    (row,) = flows.select(None)
    assert row.bad_checksum == 1 and row.ended is None
    flow = flows.flow(FlowRef.of(row))
    last = flow.packets[-1]
    assert "bad_csum" in last.marks and not last.changed
    assert any("[bad csum]" in line.text for line in ladder(flow))


@pytest.mark.parametrize("union_max", [64, 3, 2, 1])
def test_write_prefilters_all_keep_the_same_packets(tmp_path, monkeypatch, union_max):
    """The pre-filter of the second pass (the tuples, their server ports, their server addresses, or none) only
    saves time: the file written is the same byte for byte."""
    from midstat_tui.output import pcap_write

    def written(name: str) -> bytes:
        reader = FlowReader(str(FIXTURES / "mixed_traffic.pcap"))
        rows = reader.select("dport 6001 or dport 6002")
        writer = pcap_write.PcapWriter(pcap_write.open_output(str(tmp_path / name)), reader.datalink)
        count = pcap_write.write_connections(reader, rows, writer)
        writer.close()
        assert count == sum(r.packets_c2s + r.packets_s2c for r in rows)
        return (tmp_path / name).read_bytes()

    reference = written("all.pcap")
    monkeypatch.setattr(pcap_write, "UNION_MAX", union_max)
    assert written("pre.pcap") == reference


@pytest.mark.parametrize("cores", ["1", "2"])
def test_the_tuis_ladder_of_a_file_only_root_may_read(tmp_path, cores):
    """Started as root with the default drop to `nobody`, over a capture only root may read (mode 0600 in a 0700
    folder): a flow screen's ladder reads the file again through the handle opened before root was given up (it
    said the file 'cannot be reopened (standard input)')."""
    import os

    from tests.terminal import _read_until, tui

    if os.geteuid() != 0:
        pytest.skip("needs root")
    folder = tmp_path / "private"
    folder.mkdir(mode=0o700)
    capture = folder / "ro.pcap"
    capture.write_bytes((FIXTURES / "lossy_transfer.pcap").read_bytes())
    capture.chmod(0o600)
    with tui("-r", str(capture), "--cores", cores, "--speed", "0", size=(100, 34)) as term:
        term.wait_for(b"end of the file")
        for _ in range(10):  # Enter on the first connection, once the table has taken the keys' focus
            os.write(term.master, b"\r")
            if b"Ladder" in _read_until(term.master, b"Ladder", 1.0):
                break
        else:
            raise AssertionError("no flow screen")
        os.write(term.master, b"l")
        term.wait_for(b"S seq=0")
        assert term.quit() == 0


@pytest.mark.parametrize("what", [["--ladder"], ["--write", "out.pcap"], ["--summary"], ["--summary", "--cores", "2"]])
def test_a_file_of_bad_checksums_only_says_why_nothing_shows(tmp_path, what):
    """Every TCP packet with a bad checksum (a capture taken on a host with checksum offload): nothing is tracked, and
    the run says why and what tracks them, rather than an empty answer alone."""
    packets, link = _offloaded(FIXTURES / "close_client_first.pcap")
    capture = tmp_path / "offloaded.pcap"
    with open(capture, "wb") as fh:
        writer = dpkt.pcap.Writer(fh, snaplen=65535, linktype=link)
        for ts, frame in packets:
            writer.writepkt(frame, ts)
    args = [a if a != "out.pcap" else str(tmp_path / a) for a in what]
    proc = midstat("-r", str(capture), *args)
    assert proc.returncode == 0
    err = proc.stderr.decode()
    assert "bad checksum not tracked" in err and "--checksum ignore tracks them" in err, err
    again = midstat("-r", str(capture), *args, "--checksum", "ignore")
    assert "bad checksum" not in again.stderr.decode()


def _offloaded(path):
    """A capture's frames with every TCP checksum made wrong (as a sender with checksum offload leaves them)."""
    with open(path, "rb") as fh:
        reader = dpkt.pcap.Reader(fh)
        link = reader.datalink()
        frames = []
        for ts, frame in reader:
            eth = dpkt.ethernet.Ethernet(frame)
            raw = bytearray(bytes(eth))
            offset = len(raw) - len(bytes(eth.data.data))  # the TCP header's start
            raw[offset + 16] ^= 0xFF  # the checksum's first byte
            frames.append((ts, bytes(raw)))
    return frames, link
