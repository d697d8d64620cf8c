"""Host names learned from the traffic (issue #12): the DNS/SNI/HTTP parsers, the bounded map, the learner on the
shared captures checked against tshark's (and dpkt's) reading of the same fields, the compiled loop's hand-over
against the Python path, and the filter term `name`."""

from __future__ import annotations

import contextlib
import shutil
import socket
import struct
import subprocess

import dpkt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from midstat_tui.capture.files import FileSource
from midstat_tui.decode import names as parse
from midstat_tui.engine.names import PER_ADDRESS, NameLearner, NameLookup, NameMap
from midstat_tui.engine.pipeline import Engine, run_file
from midstat_tui.engine.records import ConnRow, named_record, named_text, record_text
from midstat_tui.query import QueryError, compile_query
from midstat_tui.tcp.connection import _core
from tests.helpers import FIXTURES, shared

ALEXA = shared("ndpi/tests/cfgs/default/pcap/alexa-app.pcapng")        # DNS, SNI and HTTP
REDDIT = shared("ndpi/tests/cfgs/default/pcap/reddit.pcap")            # IPv6 SNI
KAKAO = shared("ndpi/tests/cfgs/default/pcap/KakaoTalk_chat.pcap")     # Linux cooked (SLL): DNS, SNI, HTTP
SMTP = shared("zeek/Traces/smtp.pcap")                                  # DNS, and a STARTTLS ClientHello
WIKIPEDIA = shared("zeek/Traces/wikipedia.pcap")                        # DNS with CNAME chains, HTTP
KANKAN = shared("ndpi/tests/cfgs/default/pcap/1kxun.pcap")              # HTTP requests cut over segments
OPENJDK = shared("zeek/Traces/tls/openjdk-25.0.2-zeek.org.pcap")       # SLL2, one ClientHello
NAMED = [ALEXA, REDDIT, KAKAO, SMTP, WIKIPEDIA, KANKAN, OPENJDK]
# the captures where every name tshark reads is in a connection's first data segment
WHOLE = [ALEXA, REDDIT, KAKAO, SMTP, OPENJDK]

needs_shared = pytest.mark.skipif(not ALEXA.exists(), reason="the shared captures are not here (MIDSTAT_SHARED)")
needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="needs tshark")


# -- parsers ------------------------------------------------------------------------------------------------------
def _dns_response(qname: str, answers: list[tuple[str, int, bytes]], flags: int = 0x8180) -> bytes:
    def name(text: str) -> bytes:
        return b"".join(bytes((len(p),)) + p.encode() for p in text.split(".")) + b"\0"

    msg = struct.pack("!HHHHHH", 7, flags, 1, len(answers), 0, 0) + name(qname) + struct.pack("!HH", 1, 1)
    for owner, rtype, rdata in answers:
        msg += name(owner) + struct.pack("!HHIH", rtype, 1, 60, len(rdata)) + rdata
    return msg


def _cname(target: str) -> bytes:
    return b"".join(bytes((len(p),)) + p.encode() for p in target.split(".")) + b"\0"


def test_dns_cname_chain_names_the_addresses_with_the_asked_name():
    msg = _dns_response("www.Example.com", [("www.example.com", 5, _cname("edge.cdn.net")),
                                            ("edge.cdn.net", 5, _cname("e1.cdn.net")),
                                            ("e1.cdn.net", 1, bytes([192, 0, 2, 7])),
                                            ("e1.cdn.net", 28, socket.inet_pton(socket.AF_INET6, "2001:db8::7")),
                                            ("other.org", 1, bytes([192, 0, 2, 9]))])
    assert parse.dns_answers(msg) == [(bytes([192, 0, 2, 7]), "www.example.com"),
                                      (socket.inet_pton(socket.AF_INET6, "2001:db8::7"), "www.example.com"),
                                      (bytes([192, 0, 2, 9]), "other.org")]


def test_dns_queries_and_errors_teach_nothing():
    answer = [("a.example", 1, bytes(4))]
    assert parse.dns_answers(_dns_response("a.example", answer, flags=0x0100)) == []   # a query
    assert parse.dns_answers(_dns_response("a.example", answer, flags=0x8183)) == []   # NXDOMAIN


def test_dns_pointer_loop_and_cut_messages_are_malformed():
    loop = struct.pack("!HHHHHH", 1, 0x8180, 1, 0, 0, 0) + b"\xc0\x0c" + struct.pack("!HH", 1, 1)
    with pytest.raises(parse.Malformed):
        parse.dns_answers(loop)
    whole = _dns_response("a.example", [("a.example", 1, bytes(4))])
    for cut in range(len(whole)):
        try:
            parse.dns_answers(whole[:cut])
        except parse.Malformed:
            continue


def _client_hello(server_name: bytes | None) -> bytes:
    exts = b""
    if server_name is not None:
        entry = b"\0" + struct.pack("!H", len(server_name)) + server_name
        body = struct.pack("!H", len(entry)) + entry
        exts += struct.pack("!HH", 0, len(body)) + body
    exts = struct.pack("!HH", 0x0017, 0) + exts  # another extension first
    hello = b"\x03\x03" + bytes(32) + b"\x00" + struct.pack("!H", 2) + b"\x13\x01" + b"\x01\x00"
    hello += struct.pack("!H", len(exts)) + exts
    hs = b"\x01" + len(hello).to_bytes(3, "big") + hello
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def test_sni_and_host():
    assert parse.tls_sni(_client_hello(b"Api.Example.COM")) == "api.example.com"
    assert parse.tls_sni(_client_hello(None)) is None
    assert parse.tls_sni(_client_hello(b"192.0.2.1")) is None  # an address is no name
    assert parse.http_host(b"GET / HTTP/1.1\r\nUser-Agent: x\r\nhost:  Www.Example.org:8080\r\n\r\n") == \
        "www.example.org"
    assert parse.http_host(b"GET / HTTP/1.1\r\nHost: [2001:db8::1]:80\r\n\r\n") is None
    assert parse.http_host(b"HTTP/1.1 200 OK\r\nHost: x.example\r\n\r\n") is None  # a response


def test_sni_that_contradicts_itself_is_malformed():
    hello = bytearray(_client_hello(b"a.example"))
    # the server_name list claims more bytes than its extension holds
    at = hello.index(b"a.example") - 5
    hello[at:at + 2] = struct.pack("!H", 200)
    with pytest.raises(parse.Malformed):
        parse.tls_sni(bytes(hello))


REAL_DNS = _dns_response("www.example.com", [("www.example.com", 5, _cname("e.cdn.net")),
                                             ("e.cdn.net", 1, bytes([192, 0, 2, 1]))])
REAL_HELLO = _client_hello(b"www.example.com")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300), st.integers(0, 299), st.binary(min_size=1, max_size=4))
def test_parsers_never_raise_anything_but_malformed(noise, at, patch):
    """Random bytes, and real messages damaged at a random place: a result or Malformed, never another
    exception; the learner counts the malformed ones and goes on."""
    for data in (noise, _damaged(REAL_DNS, at, patch), _damaged(REAL_HELLO, at, patch)):
        for parser in (parse.dns_answers, parse.tls_sni, parse.http_host):
            with contextlib.suppress(parse.Malformed):
                parser(data)
    learner = NameLearner(1)
    frame = _udp_frame(_damaged(REAL_DNS, at, patch))
    learner.udp(0.0, frame)
    learner.payload(0.0, bytes(4), 40000, bytes(4), 443, _damaged(REAL_HELLO, at, patch))
    learner.payload(0.0, bytes(4), 40000, bytes(4), 443, b"\x16\x03\x01" + noise)
    learner.tcp(0.0, noise)
    learner.udp(0.0, noise)
    assert learner.malformed + learner.dns + learner.sni <= 3


def _damaged(data: bytes, at: int, patch: bytes) -> bytes:
    at %= len(data)
    return data[:at] + patch + data[at + len(patch):]


def _udp_frame(dns: bytes, src: str = "192.0.2.53", dst: str = "192.0.2.10") -> bytes:
    udp = dpkt.udp.UDP(sport=53, dport=40000, data=dns)
    udp.ulen = len(udp)
    ip = dpkt.ip.IP(src=socket.inet_aton(src), dst=socket.inet_aton(dst), p=17, data=udp)
    ip.len = len(ip)
    return bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=0x0800, data=ip))


def test_learner_counts_malformed_and_learns_the_rest():
    learner = NameLearner(1)
    told: list = []
    learner.on_learn = lambda ts, pairs: told.append((ts, pairs))
    learner.udp(5.0, _udp_frame(REAL_DNS))
    bad = struct.pack("!HHHHHH", 1, 0x8180, 1, 0, 0, 0) + b"\xc0\x0c"
    learner.udp(6.0, _udp_frame(bad))
    assert told == [(5.0, [(5.0, "192.0.2.10", "192.0.2.1", "www.example.com")])]
    assert learner.stats() == {"dns": 1, "sni": 0, "http": 0, "malformed": 1, "known": 1}


def test_name_map_is_bounded_and_keeps_the_latest():
    known = NameMap(bound=3)
    for i in range(5):
        known.learn(f"10.0.0.{i}", f"h{i}.example")
    assert known.get("10.0.0.0") is None and known.get("10.0.0.4") == "h4.example"
    known.learn("10.0.0.2", "renamed.example")  # learning again makes it the newest
    known.learn("10.0.0.9", "h9.example")
    assert known.get("10.0.0.2") == "renamed.example" and known.get("10.0.0.3") is None
    # each key keeps the PER_ADDRESS latest by packet time, whatever order they came in
    entries = [(float(t), "10.1.0.1", "192.0.2.80", f"n{t}.example") for t in range(PER_ADDRESS + 3)]
    forward, backward = NameMap(), NameMap()
    forward.merge(entries)
    backward.merge(entries[::-1])
    assert sorted(forward.items()) == sorted(backward.items()) == sorted(entries[-PER_ADDRESS:])


def test_a_name_belongs_to_the_connection():
    """The name a client used: its own SNI, else the DNS answer it got before its first packet, else one any
    client got by then; never a name learned after the connection began; the same in any order learned."""
    c1, c2, s = "10.1.0.1", "10.1.0.2", "192.0.2.80"
    entries = [
        (10.0, c1, s, "a.example"),                    # c1 resolves a.example -> s
        (11.0, c2, s, "b.example"),                    # c2 resolves b.example -> s (a shared CDN address)
        (20.0, c1, s, "c.example"),                    # later, c1 resolves c.example -> s
        (12.5, c1, 40001, s, 443, "sni.example"),      # c1's connection from port 40001 says SNI sni.example
    ]
    for order in (entries, entries[::-1]):
        known = NameMap()
        known.merge(order)
        assert known.server_name(c1, 40000, s, 443, 12.0) == "a.example"   # not b (c2's), not c (later)
        assert known.server_name(c2, 40000, s, 443, 12.0) == "b.example"
        assert known.server_name(c1, 40001, s, 443, 12.0) == "sni.example"
        assert known.server_name(c1, 40001, s, 443, 13.0) == "a.example"   # a reused tuple: the SNI was before it
        assert known.server_name(c1, 40000, s, 443, 25.0) == "c.example"
        assert known.server_name("10.1.0.3", 40000, s, 443, 10.5) == "a.example"  # no answer of its own: any
        assert known.server_name(c1, 40000, s, 443, 9.0) is None             # before any answer
        assert known.client_name(s, 10.5) == "a.example" and known.client_name(c1, 30.0) is None


# -- the shared captures against tshark ---------------------------------------------------------------------------
def _pairs(entries) -> list[tuple[str, str]]:
    """(address, name) of each entry a learner reports: a DNS answer's address, a connection's server."""
    return [(e[2], e[3]) if len(e) == 4 else (e[3], e[5]) for e in entries]


def _learned(path, compiled: bool | None = None) -> tuple[set, NameLearner]:
    source = FileSource(str(path))
    engine = Engine(source.datalink, verify_checksums=False, compiled=compiled)
    pairs: set = set()
    engine.names.on_learn = lambda ts, found: pairs.update(_pairs(found))  # type: ignore[union-attr]
    run_file(engine, source.batches())
    source.close()
    return pairs, engine.names  # type: ignore[return-value]


def _tshark(path, display: str, *fields: str) -> list[list[str]]:
    args = ["tshark", "-r", str(path), "-Y", display, "-T", "fields", "-E", "separator=|"]
    for f in fields:
        args += ["-e", f]
    out = subprocess.run(args, capture_output=True, text=True, timeout=120, check=True).stdout
    return [line.split("|") for line in out.splitlines()]


def _tshark_names(path) -> tuple[set, set, set]:
    """(server, SNI), (server, Host) and (address, asked name) pairs as tshark reads them; its DNS addresses
    include the additional section's (name servers'), so those pairs are a superset of the answers'."""
    # (an address given as a server name is no name: midstat leaves it out)
    sni = {(d4 or d6, parse.clean_name(name.encode())) for d4, d6, name in
           _tshark(path, "tls.handshake.type == 1", "ip.dst", "ipv6.dst", "tls.handshake.extensions_server_name")
           if name and parse.clean_name(name.encode())}
    http = set()
    for d4, d6, host in _tshark(path, "http.request", "ip.dst", "ipv6.dst", "http.host"):
        name = parse.clean_name(host.rsplit(":", 1)[0].encode()) if host and not host.startswith("[") else None
        if name:
            http.add((d4 or d6, name))
    dns = set()
    for q, a, aaaa in _tshark(path, "dns.flags.response == 1 && dns.flags.rcode == 0 && udp.srcport == 53",
                              "dns.qry.name", "dns.a", "dns.aaaa"):
        for addr in [x for x in (a + "," + aaaa).split(",") if x]:
            dns.add((addr, q.lower().rstrip(".")))
    return sni, http, dns


@needs_shared
@needs_tshark
@pytest.mark.parametrize("path", NAMED, ids=lambda p: p.name)
def test_every_name_learned_is_one_tshark_reads(path):
    learned, learner = _learned(path)
    sni, http, dns = _tshark_names(path)
    assert learned, "the capture holds names"
    assert learned <= sni | http | dns
    assert learner.malformed == 0
    # SNI: each ClientHello tshark sees is one midstat learns from (a ClientHello fits its first segment)
    assert {p for p in learned if p in sni} == sni


@needs_shared
@needs_tshark
@pytest.mark.parametrize("path", WHOLE, ids=lambda p: p.name)
def test_every_name_tshark_reads_is_learned(path):
    """Where each request's Host is in the connection's first data segment, nothing is missed."""
    learned, _ = _learned(path)
    sni, http, dns = _tshark_names(path)
    assert sni | http <= learned
    assert {name for _, name in dns} <= {name for _, name in learned}


@needs_shared
@pytest.mark.parametrize("path", [WIKIPEDIA, ALEXA, KAKAO], ids=lambda p: p.name)
def test_dns_answers_as_dpkt_reads_them(path):
    """Every A/AAAA record of every answer section (dpkt's reading) is learned, under the asked name when the
    CNAME chain leads from it to the record."""
    source = FileSource(str(path))
    learner = NameLearner(source.datalink)
    told: list = []
    learner.on_learn = lambda ts, pairs: told.extend(_pairs(pairs))
    expected = []
    for batch in source.batches():
        for ts, frame in batch:
            found = parse.udp_dns_payload(source.datalink, frame)
            if found is None:
                continue
            learner.udp(ts, frame)
            msg = dpkt.dns.DNS(found[0])
            if msg.qr != dpkt.dns.DNS_R or msg.rcode != 0:
                continue
            cnames = {rr.name.lower(): rr.cname.lower() for rr in msg.an if rr.type == dpkt.dns.DNS_CNAME}
            for rr in msg.an:
                if rr.type not in (dpkt.dns.DNS_A, dpkt.dns.DNS_AAAA):
                    continue
                name = rr.name.lower()
                for q in msg.qd:
                    hop, seen = q.name.lower(), 0
                    while hop != name and hop in cnames and seen < 8:
                        hop, seen = cnames[hop], seen + 1
                    if hop == name:
                        name = q.name.lower()
                        break
                addr = socket.inet_ntop(socket.AF_INET, rr.ip) if rr.type == dpkt.dns.DNS_A else \
                    socket.inet_ntop(socket.AF_INET6, rr.ip6)
                expected.append((addr, name))
    source.close()
    assert expected
    assert told == expected and learner.dns == len(expected) and learner.malformed == 0


@needs_shared
@pytest.mark.skipif(_core is None, reason="needs the compiled core")
@pytest.mark.parametrize("path", [ALEXA, REDDIT, KAKAO, KANKAN], ids=lambda p: p.name)
def test_compiled_loop_hands_over_what_the_python_path_learns(path):
    compiled, c_learner = _learned(path, compiled=True)
    python, p_learner = _learned(path, compiled=False)
    assert compiled == python
    assert (c_learner.dns, c_learner.sni, c_learner.http) == (p_learner.dns, p_learner.sni, p_learner.http)


def test_a_capture_without_names_learns_none():
    pairs, learner = _learned(FIXTURES / "lossy_transfer.pcap")
    assert pairs == set() and learner.stats()["known"] == 0


# -- records and the filter term ----------------------------------------------------------------------------------
@needs_shared
def test_records_gain_the_names_after_server():
    source = FileSource(str(OPENJDK))
    engine = Engine(source.datalink)
    run_file(engine, source.batches())
    conn = next(iter(engine.tracker.table.values()))
    known = engine.names.known  # type: ignore[union-attr]
    text = named_text(record_text(conn), known)
    assert '"server":"192.0.78.150:443","server_name":"zeek.org","vlan":' in text
    assert "client_name" not in text
    client = record_text(conn).split('"client":"')[1].split('"')[0]
    record = named_record({"conn": 1, "client": client, "server": "192.0.78.150:443", "first": conn.first}, known)
    assert list(record) == ["conn", "client", "server", "server_name", "first"]
    # another client's connection to that address: the SNI was not its own, and no DNS answer named the address
    other = named_record({"conn": 2, "client": "[2001:db8::1]:5", "server": "192.0.78.150:443", "x": 1}, known)
    assert "server_name" not in other
    assert named_text(record_text(conn), NameMap()) == record_text(conn)


def test_name_term_suffix_and_glob():
    known = NameMap()
    known.learn("192.0.2.1", "www.example.com")
    known.learn("192.0.2.2", "badexample.com")
    known.learn("2001:db8::3", "api.example.org")
    lookup = NameLookup(known)

    def conn(server: str) -> ConnRow:
        family = socket.AF_INET6 if ":" in server else socket.AF_INET
        return ConnRow(1, 0, socket.inet_pton(family, "192.0.2.200" if family == socket.AF_INET else "2001:db8::9"),
                       40000, socket.inet_pton(family, server), 443, (), 4, 4, 0.0, 1.0, 1, 1, 60, 60, 0, 0, 0, -1.0,
                       "S1", "Sh", False, None)

    rows = {s: conn(s) for s in ("192.0.2.1", "192.0.2.2", "2001:db8::3", "192.0.2.4")}

    def matching(query: str) -> set[str]:
        pred = compile_query(query, names=lookup)
        return {s for s, r in rows.items() if pred(r)}

    assert matching("name example.com") == {"192.0.2.1"}           # not badexample.com: a suffix at a dot
    assert matching("name EXAMPLE.com.") == {"192.0.2.1"}
    assert matching("name www.example.com") == {"192.0.2.1"}
    assert matching("name *example.*") == {"192.0.2.1", "192.0.2.2", "2001:db8::3"}
    assert matching("name .org") == matching('name "example.org"') == {"2001:db8::3"}  # as people type them
    with pytest.raises(QueryError, match="never closes") as bad:
        compile_query("name [a-", names=lookup)
    assert bad.value.position == 5
    assert matching("not name example.org") == {"192.0.2.1", "192.0.2.2", "192.0.2.4"}
    assert compile_query("name example.com")(rows["192.0.2.1"]) is False  # no names given: nothing is named
    with pytest.raises(QueryError):
        compile_query("name", names=lookup)
    known.learn("192.0.2.4", "late.example.com")  # learned after the filter was made: it sees it
    assert matching("name example.com") == {"192.0.2.1", "192.0.2.4"}


def test_host_name_of_an_address_dns_first_then_a_connections_own_and_bounded():
    from midstat_tui.engine.names import NameMap

    known = NameMap(bound=2)
    known.learn_conn(1.0, "10.0.0.9", 40000, "10.0.0.1", 443, "sni.example.org")
    assert known.host_name("10.0.0.1") == "sni.example.org"
    known.learn_dns(2.0, "10.0.0.9", "10.0.0.1", "dns.example.org")
    assert known.host_name("10.0.0.1") == "dns.example.org"  # an answer names the address itself
    for i in range(2, 5):  # more servers than the bound: the oldest one's name leaves
        known.learn_conn(3.0, "10.0.0.9", 40000 + i, f"10.0.0.{i}", 443, f"s{i}.example.org")
    assert known.host_name("10.0.0.2") is None and known.host_name("10.0.0.4") == "s4.example.org"
