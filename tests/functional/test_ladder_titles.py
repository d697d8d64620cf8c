"""#13's leftovers, headless: every line of `--ladder` within 80 columns whatever the addresses (the title wrapped,
the endpoints' labels on lines of their own, nothing cut), each ladder's title saying when its incarnation started
(a reused port's two incarnations told apart), `--absolute-seq` without `--ladder` refused, `--write`'s count in
words that agree with it."""

from __future__ import annotations

import ipaddress
import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from midstat_tui.engine.flow_packets import FlowReader, FlowRef
from midstat_tui.engine.records import format_endpoint
from midstat_tui.output.ladder import ladder, ladder_text
from tests.helpers import FIXTURES, midstat
from tests.rewrite_pcap import port_reuse, readdressed

LONG_V6 = ("2001:db8:1234:5678:9abc:def0:1234:5678", "2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff")


def _check_lines(text: str, endpoints: list[str]) -> None:
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80, [line for line in lines if len(line) > 80]
    title = " ".join(line[1:].strip() for line in lines if line.startswith("#"))
    for endpoint in endpoints:
        assert endpoint in title  # whole, on one line of the title
        assert any(f"client {endpoint}" in line or f"server {endpoint}" in line for line in lines)


@pytest.mark.parametrize("plain", [False, True])
def test_long_ipv6_ladder_fits_80_columns(tmp_path, plain):
    path = readdressed(tmp_path / "long6.pcap", LONG_V6[0], 65535, LONG_V6[1], 65534)
    proc = midstat("-r", str(path), "--ladder", *(["--plain"] if plain else []))
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout.decode()
    ends = [f"[{LONG_V6[0]}]:65535", f"[{LONG_V6[1]}]:65534"]
    _check_lines(text, ends)
    lines = text.splitlines()
    assert lines[0] == f"# {ends[0]} ->" and lines[1].startswith(f"#   {ends[1]}, 15 packets")
    labels = [line for line in lines if "client [" in line or "server [" in line]
    assert len(labels) == 2 and labels[0].index("client") == 21  # the client's from its column
    assert labels[1].endswith(f"server {ends[1]}")               # the server's up to its column
    if plain:
        assert text.isascii()


_V4 = st.ip_addresses(v=4).map(str)
_V6 = st.ip_addresses(v=6).map(str).filter(lambda a: ipaddress.ip_address(a).ipv4_mapped is None)
_PORT = st.integers(1, 65535)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pair=st.one_of(st.tuples(_V4, _V4), st.tuples(_V6, _V6)), c_port=_PORT, s_port=_PORT,
       width=st.sampled_from([64, 80, 81, 100, 160]))
def test_every_ladder_line_fits_for_any_address(tmp_path, pair, c_port, s_port, width):
    client, server = pair
    if client == server and c_port == s_port:
        return
    path = readdressed(tmp_path / "x.pcap", client, c_port, server, s_port)
    reader = FlowReader(str(path))
    try:
        (row,) = reader.select(None)
        flow = reader.flow(FlowRef.of(row))
    finally:
        reader.close()
    ends = [format_endpoint(row.c_addr, row.c_port), format_endpoint(row.s_addr, row.s_port)]
    for plain in (False, True):
        text = ladder_text(flow, width=width, plain=plain, row=row, origin=reader.first_ts)
        assert max(len(line) for line in text.splitlines()) <= width - 1
        if width == 80:
            _check_lines(text, ends)
    # the TUI's ladder at any width it draws (LadderView: at least 64)
    lines = ladder(flow, width=width)
    assert max(len(line.text) for line in lines) <= width - 1
    heads = " ".join(line.text for line in lines if line.kind == "head")
    assert f"client {ends[0]}" in heads and f"server {ends[1]}" in heads


def _utc(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(int(ts))) + f".{round(ts % 1 * 1e6):06d}Z"


def test_port_reuse_ladders_say_when_each_started(tmp_path):
    path, starts = port_reuse(tmp_path / "reuse.pcap", again_after=5.0)
    proc = midstat("-r", str(path), "--ladder")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout.decode()
    said = re.findall(r"started (\S+ \S+) \(\+(\d+\.\d+) s into the capture\)", text)
    assert said == [(_utc(starts[0]), "0.000000"), (_utc(starts[1]), "5.000000")]
    # the same tuple in both titles: the start is what tells them apart
    tuples = re.findall(r"^# (\S+ -> \S+),", text, re.M)
    assert len(tuples) == 2 and tuples[0] == tuples[1]


def test_start_is_the_first_packet_as_tshark_reads_it():
    import shutil
    import subprocess

    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.skip("tshark is not installed (scripts/install.sh --test)")
    capture = FIXTURES / "mixed_traffic.pcap"
    proc = midstat("-r", str(capture), "--ladder", "--match", "zeek REJ")
    said = re.findall(r"^# (\S+) -> (\S+),.*\n#   started \S+ \S+ \(\+(\d+\.\d+) s", proc.stdout.decode(), re.M)
    assert len(said) == 3
    for client, _, offset in said:
        port = client.rsplit(":", 1)[1]
        first = subprocess.run([tshark, "-r", str(capture), "-Y", f"tcp.port == {port}", "-T", "fields",
                                "-e", "frame.time_relative"], capture_output=True, text=True,
                               check=True).stdout.split()[0]
        assert abs(float(first) - float(offset)) < 1e-6, (client, first, offset)


@pytest.mark.parametrize("extra", [["--summary"], ["--plain"], ["--json"], []])
def test_absolute_seq_without_ladder_is_refused(extra):
    proc = midstat("-r", str(FIXTURES / "close_client_first.pcap"), "--absolute-seq", *extra)
    assert proc.returncode == 2
    err = proc.stderr.decode()
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "--absolute-seq is for --ladder" in err and proc.stdout == b""


def test_write_of_several_connections_says_connections(tmp_path):
    out = tmp_path / "out.pcap"
    proc = midstat("-r", str(FIXTURES / "mixed_traffic.pcap"), "--write", str(out), "--match", "zeek REJ")
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"wrote \d+ packets of 3 connections to ", proc.stderr.decode()), proc.stderr


def test_write_of_one_connection_says_connection(tmp_path):
    out = tmp_path / "out.pcap"
    proc = midstat("-r", str(FIXTURES / "reset_by_client.pcap"), "--write", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "wrote 12 packets of 1 connection to " in proc.stderr.decode()
