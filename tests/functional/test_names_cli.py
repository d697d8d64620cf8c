"""Host names in the headless outputs (issue #12), on one core and on several: a DNS answer lands on shard 0 (every
non-TCP packet does) while the connection to that address may be tracked on another; core 0 keeps the map, so the
records name it alike on any number of cores."""

from __future__ import annotations

import contextlib
import json
import socket

import dpkt
import pytest

from midstat_tui.capture.files import FileSource
from midstat_tui.engine.names import NameLearner
from midstat_tui.engine.pipeline import Engine, run_file
from tests.helpers import FIXTURES, midstat, shared

ALEXA = shared("ndpi/tests/cfgs/default/pcap/alexa-app.pcapng")
WIKIPEDIA = shared("zeek/Traces/wikipedia.pcap")
KAKAO = shared("ndpi/tests/cfgs/default/pcap/KakaoTalk_chat.pcap")
SMTP = shared("zeek/Traces/smtp.pcap")

pytestmark = pytest.mark.skipif(not ALEXA.exists(), reason="the shared captures are not here (MIDSTAT_SHARED)")


def _summary(path, *args: str) -> list[dict]:
    proc = midstat("-r", str(path), "--summary", "--json", *args)
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout)["connections"]


def _names(records: list[dict]) -> dict[tuple, tuple]:
    return {(r["client"], r["server"], r["first"]): (r.get("client_name"), r.get("server_name")) for r in records}


def _dns_only_servers(path) -> set[str]:
    """Addresses named by a DNS answer and by no connection's own first data (SNI, Host)."""
    source = FileSource(str(path))
    dns = NameLearner(source.datalink)
    for batch in source.batches():
        for ts, frame in batch:
            dns.udp(ts, frame)
    source.close()
    source = FileSource(str(path))
    engine = Engine(source.datalink)
    engine.names.udp = lambda ts, frame: None  # type: ignore[method-assign,union-attr]
    run_file(engine, source.batches())
    source.close()
    own = {e[3] for e in engine.names.known.items() if len(e) == 6}  # type: ignore[union-attr]
    return {e[2] for e in dns.known.items() if len(e) == 4} - own


@pytest.mark.parametrize("cores", ["2", "3"])
def test_names_are_the_same_on_several_cores(cores):
    one = _summary(ALEXA, "--cores", "1")
    many = _summary(ALEXA, "--cores", cores)
    assert _names(many) == _names(one)
    assert sum(1 for r in many if "server_name" in r) > len(many) // 2
    assert {r["shard"] for r in many if "server_name" in r} == set(range(int(cores)))


@pytest.mark.parametrize("path", [KAKAO, SMTP], ids=lambda p: p.name)
@pytest.mark.parametrize("cores", ["2", "3"])
def test_a_dns_answer_names_a_connection_on_another_shard(path, cores):
    """The DNS answer is shard 0's (non-TCP); the connection to the address it names is another shard's."""
    dns_only = _dns_only_servers(path)
    one = _summary(path, "--cores", "1")
    many = _summary(path, "--cores", cores)
    assert _names(many) == _names(one)
    crossed = [r for r in many if r["shard"] != 0 and r["server"].rpartition(":")[0].strip("[]") in dns_only]
    assert crossed and all("server_name" in r for r in crossed)
    # and the shard that tracks it judges `--match name` with that answer, as one core does (no fallback)
    query = f'name "{crossed[0]["server_name"]}"'
    matched = _summary(path, "--cores", cores, "--match", query)
    assert _names(matched) == _names(_summary(path, "--cores", "1", "--match", query))
    assert any(r["shard"] != 0 and r["client"] == crossed[0]["client"] for r in matched)


def test_events_and_snapshots_carry_the_names():
    proc = midstat("-r", str(WIKIPEDIA), "--events", "--cores", "2")
    assert proc.returncode == 0, proc.stderr.decode()
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    ends = [e for e in lines if e["event"] == "end" or e["event"] == "state"]
    assert any(e.get("server_name") == "upload.wikimedia.org" for e in ends)
    for e in lines:  # the optional fields sit right after "server"
        keys = list(e)
        if "server_name" in e:
            assert keys[keys.index("server") + 1] == "server_name"
    proc = midstat("-r", str(WIKIPEDIA), "--json")
    snapshot = json.loads(proc.stdout.splitlines()[-1])
    assert {c.get("server_name") for c in snapshot["connections"]} >= {"upload.wikimedia.org"}


@pytest.mark.parametrize("cores", ["1", "2"])
def test_match_name(cores):
    every = _summary(WIKIPEDIA, "--cores", cores)
    chosen = _summary(WIKIPEDIA, "--cores", cores, "--match", "name wikimedia.org")
    assert chosen and {r["server_name"] for r in chosen} == {"bits.wikimedia.org", "meta.wikimedia.org",
                                                              "upload.wikimedia.org"}
    assert len(chosen) == sum(1 for r in every if r.get("server_name", "").endswith(".wikimedia.org"))
    globbed = _summary(WIKIPEDIA, "--cores", cores, "--match", "name up*.org")
    assert {r["server_name"] for r in globbed} == {"upload.wikimedia.org"}


def test_a_capture_without_names_has_no_name_fields():
    proc = midstat("-r", str(FIXTURES / "lossy_transfer.pcap"), "--summary", "--json", "--cores", "2")
    assert proc.returncode == 0 and b"_name" not in proc.stdout


@pytest.mark.parametrize("path", [KAKAO, WIKIPEDIA], ids=lambda p: p.name)
def test_events_name_alike_on_one_and_two_cores(path):
    """Core 0 gives the names out in packet-time order with the events: each line names what one core knew then."""
    lines = {}
    for cores in ("1", "2"):
        proc = midstat("-r", str(path), "--events", "--cores", cores)
        assert proc.returncode == 0, proc.stderr.decode()
        lines[cores] = sorted((e["ts"], e["event"], e["client"], e["server"], e.get("client_name") or "",
                               e.get("server_name") or "") for e in map(json.loads, proc.stdout.splitlines()))
    assert lines["1"] == lines["2"]
    assert any(line[5] for line in lines["1"])


@pytest.mark.parametrize("path, name", [(shared("ndpi/tests/cfgs/default/pcap/reddit.pcap"), "gateway.reddit.com"),
                                        (SMTP, "mail.patriots.in")])
def test_match_name_on_several_cores_answers_as_one_core(path, name):
    """Every shard learns every DNS answer of its file (shard 0's share too, learned but not reported), so a headless
    --match that uses `name` is judged on each shard as on one core: 2 cores give 1 core's answer, with no fallback
    to one core (it gave half the rows before that fallback)."""
    one = midstat("-r", str(path), "--summary", "--json", "--cores", "1", "--match", f"name {name}")
    two = midstat("-r", str(path), "--summary", "--json", "--cores", "2", "--match", f"name {name}")
    assert one.returncode == two.returncode == 0, two.stderr.decode()
    rows = json.loads(two.stdout)["connections"]
    assert _names(json.loads(one.stdout)["connections"]) == _names(rows) != {}
    assert b"one core" not in two.stderr  # read on two cores: no note, no fallback


def test_match_name_from_a_pipe_on_several_cores_reads_on_one():
    """A once-only stream is handed out by core 0, a packet to one shard: there the fallback stays, said in a note."""
    data = SMTP.read_bytes()
    one = midstat("-r", str(SMTP), "--summary", "--json", "--match", "name mail.patriots.in")
    two = midstat("-r", "-", "--summary", "--json", "--cores", "2", "--match", "name mail.patriots.in", stdin=data)
    assert two.returncode == 0, two.stderr.decode()
    assert _names(json.loads(two.stdout)["connections"]) == _names(json.loads(one.stdout)["connections"]) != {}
    assert b"note: --match uses 'name' on a pipe: read on one core" in two.stderr


def test_each_connection_is_named_by_its_own_host_header():
    """One address, two names (208.80.152.2 serves meta.wikimedia.org and www.wikipedia.org): each connection is
    named by the Host its client sent on it (dpkt's reading of its first request), not by the last name learned for
    the address."""
    hosts: dict[tuple[str, str], str] = {}
    with WIKIPEDIA.open("rb") as f:
        for _, buf in dpkt.pcap.Reader(f):
            ip = dpkt.ethernet.Ethernet(buf).data
            if not isinstance(ip, dpkt.ip.IP) or not isinstance(ip.data, dpkt.tcp.TCP) or not ip.data.data:
                continue
            tcp = ip.data
            key = (f"{socket.inet_ntoa(ip.src)}:{tcp.sport}", f"{socket.inet_ntoa(ip.dst)}:{tcp.dport}")
            if key in hosts or not tcp.data.startswith((b"GET ", b"POST ")):
                continue
            with contextlib.suppress(dpkt.UnpackError):
                hosts[key] = dpkt.http.Request(tcp.data).headers["host"].split(":")[0].lower()
    for cores in ("1", "2"):
        named = {(r["client"], r["server"]): r.get("server_name") for r in _summary(WIKIPEDIA, "--cores", cores)}
        assert {k: named[k] for k in hosts} == hosts
    assert {name for (_, server), name in hosts.items() if server.startswith("208.80.152.2:")} == {
        "meta.wikimedia.org", "www.wikipedia.org"}
