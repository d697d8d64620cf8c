"""Reference outputs of other tools for the public captures in ../shared/pcaps, and midstat's agreement with them.

Each reference is read from the other tool's own output format (SOURCES.md says how), matched to midstat's
connections by 4-tuple (+VLAN where the tool keys by it), and compared field by field.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from midstat_tui.engine.records import format_addr
from midstat_tui.tcp import zeek
from midstat_tui.tcp.tracker import TrackerConfig
from tests.helpers import SHARED, replay


@dataclass
class RefConn:
    orig: tuple[str, int]
    resp: tuple[str, int]
    pkts: tuple[int, int] | None = None
    ip_bytes: tuple[int, int] | None = None
    conn_state: str | None = None
    history: str | None = None
    vlan: tuple[int, ...] | None = None   # None: the tool does not key by VLAN


@dataclass
class Reference:
    name: str
    tool: str
    trace: str
    conns: list[RefConn]
    checksums: bool = True
    oriented: bool = True  # does the tool's orig/src mean the initiator (client)?
    zeek_timers: bool = False  # run midstat with Zeek's 5-minute inactivity timeout and no linger


ZEEK_INACTIVITY = 300.0


@dataclass
class Agreement:
    reference: Reference
    ours: int = 0
    matched: int = 0
    pkts: int = 0
    pkts_total: int = 0
    ip_bytes: int = 0
    ip_bytes_total: int = 0
    conn_state: int = 0
    conn_state_total: int = 0
    history: int = 0
    history_total: int = 0
    oriented: int = 0          # midstat's client is the tool's originator
    oriented_total: int = 0
    differences: list[str] = field(default_factory=list)


# -- readers ------------------------------------------------------------------------------------------------------
def zeek_log(path: Path) -> list[RefConn]:
    """A Zeek conn.log (with #fields) or a zeek-cut excerpt (plain header line); TCP rows only."""
    fields: list[str] | None = None
    rows = []
    for line in path.read_text().splitlines():
        if line.startswith("#fields"):
            fields = line.split("\t")[1:]
            continue
        if line.startswith("#"):
            continue
        parts = line.split("\t")
        if fields is None and "id.orig_h" in parts:
            fields = parts
            continue
        if fields is None and len(parts) >= 5 and parts[4] == "tcp":
            # a header-less zeek-cut excerpt: orig_h orig_p resp_h resp_p proto ...
            rows.append(RefConn(orig=(parts[0], int(parts[1])), resp=(parts[2], int(parts[3]))))
            continue
        if fields is None:
            continue
        rec = dict(zip(fields, parts, strict=False))
        if rec.get("proto", "tcp") != "tcp":
            continue
        vlan = None
        if "id.ctx.vlan" in rec:
            vlan = tuple(int(v) for v in (rec["id.ctx.vlan"], rec.get("id.ctx.inner_vlan", "-")) if v != "-")

        def pair(a: str, b: str, rec=rec) -> tuple[int, int] | None:
            return (int(rec[a]), int(rec[b])) if a in rec and b in rec else None

        rows.append(RefConn(
            orig=(rec["id.orig_h"], int(rec["id.orig_p"])), resp=(rec["id.resp_h"], int(rec["id.resp_p"])),
            pkts=pair("orig_pkts", "resp_pkts"), ip_bytes=pair("orig_ip_bytes", "resp_ip_bytes"),
            conn_state=rec.get("conn_state"), history=rec.get("history"), vlan=vlan))
    return rows


def arkime_test(path: Path) -> list[RefConn]:
    doc = json.loads(path.read_text())
    rows = []
    for session in doc.get("sessions3", []):
        body = session["body"]
        if body.get("ipProtocol") != 6:
            continue
        src, dst = body["source"], body["destination"]
        vlan = tuple(body["network"]["vlan"]["id"]) if "vlan" in body.get("network", {}) else ()
        rows.append(RefConn(orig=(src["ip"], src["port"]), resp=(dst["ip"], dst["port"]),
                            pkts=(src["packets"], dst["packets"]), vlan=vlan))
    return rows


_NDPI = re.compile(r"\tTCP (\S+):(\d+) <?-> (\S+):(\d+) .*?\[(\d+) pkts/\d+ bytes (?:<->|->|<-) (\d+) pkts/\d+ bytes\]")


def _strip(host: str) -> str:
    return host[1:-1] if host.startswith("[") else host


def ndpi_out(path: Path) -> list[RefConn]:
    rows = []
    for line in path.read_text().splitlines():
        m = _NDPI.search(line)
        if m:
            a, ap, b, bp, pa, pb = m.groups()
            rows.append(RefConn(orig=(_strip(a), int(ap)), resp=(_strip(b), int(bp)), pkts=(int(pa), int(pb))))
    return rows


def suricata_flows(path: Path) -> list[RefConn]:
    doc = yaml.safe_load(path.read_text())
    rows = []
    for check in doc.get("checks", []):
        match = check.get("filter", {}).get("match", {})
        if match.get("event_type") != "flow" or str(match.get("proto", "TCP")).upper() != "TCP":
            continue
        if "flow.pkts_toserver" not in match:
            continue
        src = (_expand(str(match.get("src_ip", ""))), int(match.get("src_port", 0)))
        dst = (_expand(str(match.get("dest_ip", ""))), int(match.get("dest_port", 0)))
        rows.append(RefConn(orig=src, resp=dst, pkts=(match["flow.pkts_toserver"], match["flow.pkts_toclient"])))
    return rows


def _expand(addr: str) -> str:
    """Suricata writes IPv6 fully expanded; midstat the short form."""
    if ":" in addr:
        import ipaddress
        return str(ipaddress.IPv6Address(addr))
    return addr


# -- the catalogue --------------------------------------------------------------------------------------------------
@functools.cache
def catalogue() -> list[Reference]:
    z = "zeek/Baseline/"
    t = "zeek/Traces/"
    zeek_refs = [
        ("core.tcp.rxmit-history/conn-2.log", "wikipedia.pcap", False),
        ("core.tcp.rxmit-history/conn-1.log", "tcp/retransmit-fast009.pcap", False),
        ("scripts.base.protocols.ssh.basic/conn.log", "ssh/ssh.pcap", True),
        ("scripts.base.protocols.ssh.half-duplex-client/conn.log", "ssh/ssh.client-side-half-duplex.pcap", True),
        ("scripts.base.protocols.ssh.half-duplex-server/conn.log", "ssh/ssh.server-side-half-duplex.pcap", True),
        ("core.tcp.missing-syn/conn.log", "tcp/missing-syn.pcap", False),
        ("core.tcp.flip-without-syn/conn.log", "tcp/http-on-irc-port-missing-syn.pcapng", True),
        ("core.conn-size-flip/conn.log.one-sided", "tcp/one-sided-2745.pcap", False),
        ("core.conn-size-flip/conn.log.ctu", "tcp/ctu-64702-888.pcap", False),
        ("core.tcp.bad-checksum-syn/conn.log", "tcp/syn-bad.pcap", True),
        ("core.tcp.miss-end-data/conn.log", "tcp/miss_end_data.pcap", True),
        ("scripts.policy.frameworks.conn_key.vlan_fivetuple-2/conn.log.cut", "vlan-collisions.pcap", True),
        ("core.vlan-mpls/conn.log", "mixed-vlan-mpls.pcap", False),
        ("scripts.base.protocols.ftp.ftp-ipv6/conn.log", "ftp/ipv6.pcap", True),
        ("scripts.base.protocols.ftp.ftp-ipv4/conn.log", "ftp/ipv4.pcap", True),
        ("scripts.base.protocols.irc.starttls/conn.log", "tls/irc-starttls.pcap", False),
        ("scripts.base.protocols.irc.basic/conn.log", "irc-dcc-send.pcapng", True),
        ("scripts.base.protocols.pop3.basic/conn.log", "pop3/pop3.pcap", True),
        ("core.tcp-padding/conn.log", "tcp-http-with-padding.pcap", False),
        ("core.pcapng-pktsrc/conn.log", "pcapng-multi-interface.pcapng", True),
        ("core.expire-all-timers/conn-all.log", "tcp/retransmit-timeout.pcapng", False),
        ("scripts.policy.protocols.conn.community-id-logging-flipped/conn.log.cut", "tcp/handshake-reorder.pcap",
         False),
    ]
    refs = []
    for baseline, trace, checksums in zeek_refs:
        path = SHARED / (z + baseline)
        refs.append(Reference(baseline, "Zeek", t + trace, zeek_log(path), checksums=checksums))
        if baseline.endswith("conn-all.log"):
            refs.append(Reference(baseline + " (Zeek's timers)", "Zeek", t + trace, zeek_log(path),
                                  checksums=checksums, zeek_timers=True))
    # conn_state-RST-behavior: one line per trace, "history, conn_state"
    out = (SHARED / (z + "scripts.base.protocols.conn.conn_state-RST-behavior/out")).read_text().splitlines()
    lines = [line for line in out if not line.startswith("#")]
    for trace, line in zip(("single-rst", "syn-then-rst", "syn-then-ack-then-rst", "syn-then-stuff-then-rst"),
                           lines, strict=True):
        history, state = (x.strip() for x in line.split(","))
        refs.append(Reference(f"conn_state-RST-behavior ({trace})", "Zeek", f"{t}tcp/{trace}.pcap",
                              [RefConn(orig=("", 0), resp=("", 0), conn_state=state, history=history)],
                              checksums=False))
    for name in ("tcp_handshake_synthetic", "no-syn-ack", "wireshark-retrans", "twovlan", "http-syn-ack",
                 "long-session"):
        refs.append(Reference(f"{name}.test", "Arkime", f"arkime/tests/pcap/{name}.pcap",
                              arkime_test(SHARED / f"arkime/tests/pcap/{name}.test"), checksums=False))
    for name in ("synscan.pcap", "reddit.pcap", "KakaoTalk_chat.pcap", "alexa-app.pcapng", "1kxun.pcap"):
        refs.append(Reference(f"{name}.out", "nDPI", f"ndpi/tests/cfgs/default/pcap/{name}",
                              ndpi_out(SHARED / f"ndpi/tests/cfgs/default/result/{name}.out"), checksums=False,
                              oriented=False))
    for name, pcap in (("bug-6733-syn-packet-flow-output", "input.pcap"),
                       ("bug-2491-02", "simple_http_download.onesided.nosyn.pcap"),
                       ("bug-2646-01", "input.pcap"), ("bug-814", "input.pcap"),
                       ("community-id-ipv6", "input.pcap")):
        refs.append(Reference(f"{name}/test.yaml", "Suricata", f"suricata-verify/tests/{name}/{pcap}",
                              suricata_flows(SHARED / f"suricata-verify/tests/{name}/test.yaml"), checksums=False))
    return refs


# -- comparison -----------------------------------------------------------------------------------------------------
@functools.cache
def compare_cached(name: str) -> Agreement:
    return compare(next(ref for ref in catalogue() if ref.name == name))


def compare(ref: Reference) -> Agreement:
    config = None
    if ref.zeek_timers:
        config = TrackerConfig(linger=0.0)
        config.idle_timeouts = {state: ZEEK_INACTIVITY for state in config.idle_timeouts}
    _, _, started = replay(SHARED / ref.trace, checksums=ref.checksums, config=config)
    agreement = Agreement(ref, ours=len(started))
    pool = _index(started)
    for row in ref.conns:
        conn, flipped = _take(pool, row)
        label = f"{row.orig[0]}:{row.orig[1]} -> {row.resp[0]}:{row.resp[1]}"
        if conn is None:
            agreement.differences.append(f"{label}: no midstat connection")
            continue
        agreement.matched += 1
        if ref.oriented and row.orig != ("", 0):
            agreement.oriented_total += 1
            if flipped:
                agreement.differences.append(f"{label}: midstat's client is the {ref.tool} responder")
            else:
                agreement.oriented += 1
        def pair(c2s: tuple[int, int], flipped: bool = flipped) -> tuple[int, int]:
            return c2s[::-1] if flipped else c2s

        checks = (
            ("pkts", "packets", row.pkts, pair((conn.c.packets, conn.s.packets))),
            ("ip_bytes", "IP bytes", row.ip_bytes, pair((conn.c.ip_bytes, conn.s.ip_bytes))),
            ("conn_state", "conn_state", row.conn_state, zeek.conn_state(conn)),
            ("history", "history", row.history, conn.history),
        )
        for attr, what, want, got in checks:
            if want is None:
                continue
            setattr(agreement, attr + "_total", getattr(agreement, attr + "_total") + 1)
            if got == want:
                setattr(agreement, attr, getattr(agreement, attr) + 1)
            else:
                agreement.differences.append(f"{label}: {what} {want}, midstat {got}")
    if len(ref.conns) != len(started):
        agreement.differences.append(f"connections: {ref.tool} {len(ref.conns)}, midstat {len(started)}")
    return agreement


def _take(pool: dict, row: RefConn):
    """The first unmatched midstat connection on the row's tuple; and whether its client is the row's responder."""
    if row.orig == ("", 0):  # single-connection reference without addresses
        for conns in pool.values():
            if conns:
                return conns.pop(0), False
        return None, False
    for key, flipped in (((row.orig, row.resp), False), ((row.resp, row.orig), True)):
        for i, conn in enumerate(pool.get(key, ())):
            if row.vlan is None or tuple(conn.vlan) == row.vlan:
                return pool[key].pop(i), flipped
    return None, False


def _index(conns: list) -> dict:
    pool: dict = {}
    for conn in conns:
        key = ((format_addr(conn.c_addr), conn.c_port), (format_addr(conn.s_addr), conn.s_port))
        pool.setdefault(key, []).append(conn)
    return pool


def markdown(agreements: list[Agreement]) -> str:
    def cell(n: int, total: int) -> str:
        return "–" if total == 0 else f"{n}/{total}"

    lines = [
        "| reference | tool | trace | tool's TCP conns | midstat's | matched | client = orig | packets | IP bytes "
        "| conn_state | history |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for a in agreements:
        r = a.reference
        lines.append(f"| `{r.name}` | {r.tool} | `{r.trace}` | {len(r.conns)} | {a.ours} | "
                     f"{cell(a.matched, len(r.conns))} | {cell(a.oriented, a.oriented_total)} | "
                     f"{cell(a.pkts, a.pkts_total)} | "
                     f"{cell(a.ip_bytes, a.ip_bytes_total)} | {cell(a.conn_state, a.conn_state_total)} | "
                     f"{cell(a.history, a.history_total)} |")

    def total(attr: str) -> int:
        return sum(getattr(a, attr) for a in agreements)

    lines.append("")
    lines.append(
        f"Totals: {len(agreements)} references over {len({a.reference.trace for a in agreements})} captures; "
        f"{total('matched')} of {sum(len(a.reference.conns) for a in agreements)} reference connections matched "
        f"to a midstat connection; client = originator {total('oriented')}/{total('oriented_total')}; "
        f"packets {total('pkts')}/{total('pkts_total')}; IP bytes {total('ip_bytes')}/{total('ip_bytes_total')}; "
        f"conn_state {total('conn_state')}/{total('conn_state_total')}; "
        f"history {total('history')}/{total('history_total')}.")
    return "\n".join(lines)
