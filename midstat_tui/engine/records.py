"""Connection records as the faces show them: addresses as text and the JSON field names of the output formats.

`row_record` is the one definition of a connection record's fields, names and units (bytes, seconds, milliseconds):
`--json`, `--summary --json` (through `connection_dict`) and the TUI's CSV and JSON exports all write it."""

from __future__ import annotations

import json
import math
import re
import socket
from typing import NamedTuple

from midstat_tui.decode.segment import flags_text
from midstat_tui.tcp import zeek
from midstat_tui.tcp.connection import DIR_NAMES, SIDE_NAMES, Connection
from midstat_tui.tcp.states import NAMES


def format_addr(addr: bytes) -> str:
    if len(addr) == 4:
        return socket.inet_ntop(socket.AF_INET, addr)
    return socket.inet_ntop(socket.AF_INET6, addr)


def format_endpoint(addr: bytes, port: int) -> str:
    if len(addr) == 4:
        return f"{socket.inet_ntop(socket.AF_INET, addr)}:{port}"
    return f"[{socket.inet_ntop(socket.AF_INET6, addr)}]:{port}"


class ConnRow(NamedTuple):
    """One connection as it was at a snapshot: what the TUI shows, sorts and filters (immutable, cheap to keep)."""

    id: int
    shard: int
    c_addr: bytes
    c_port: int
    s_addr: bytes
    s_port: int
    vlan: tuple[int, ...]
    cstate: int
    sstate: int
    first: float
    last: float
    packets_c2s: int
    packets_s2c: int
    bytes_c2s: int             # IP bytes
    bytes_s2c: int
    retrans_packets_c2s: int   # retransmitted segments (retrans_bytes_*: their payload bytes)
    retrans_packets_s2c: int
    retrans_packets: int       # both directions
    rtt_s: float               # the whole handshake RTT, client leg + server leg, seconds; -1.0 when unknown
    zeek_state: str
    history: str
    midstream: bool
    ended: str | None
    rst_alerts: int = 0        # RSTs out of window or with an odd TTL/MAC (blind or injected resets)
    # the rest of the record (row_record), raw
    payload_c2s: int = 0
    payload_s2c: int = 0
    retrans_bytes_c2s: int = 0
    retrans_bytes_s2c: int = 0
    ooo_c2s: int = 0
    ooo_s2c: int = 0
    zero_win_c2s: int = 0
    zero_win_s2c: int = 0
    rtt_client: float | None = None
    rtt_server: float | None = None
    rst_by: str | None = None
    suspicious_rst: int = 0
    odd_rst: int = 0
    bad_flags: int = 0
    bad_checksum: int = 0
    end_ts: float | None = None
    transitions: int = 0       # transitions kept + dropped
    # for the problems lens (midstat_tui/problems.py): per side, when it entered its state, since when it
    # advertises a zero window (None: open), its last data and its last packet
    since_c: float = 0.0
    since_s: float = 0.0
    zw_since_c: float | None = None
    zw_since_s: float | None = None
    last_data_c: float = 0.0
    last_data_s: float = 0.0
    last_ts_c: float = 0.0
    last_ts_s: float = 0.0

    @property
    def ended_key(self) -> str:
        return self.ended or ""

    @property
    def client(self) -> str:
        return format_endpoint(self.c_addr, self.c_port)

    @property
    def server(self) -> str:
        return format_endpoint(self.s_addr, self.s_port)


# The field fixes of issue #11 (README, "Changes"): the old name of a record field -> its name now. The values are
# the same; the name says the unit (before, `retrans_c2s` counted bytes in the JSON and segments in the TUI's rows).
RENAMED: dict[str, str] = {
    "retrans_c2s": "retrans_bytes_c2s",
    "retrans_s2c": "retrans_bytes_s2c",
    "retrans_pkts_c2s": "retrans_packets_c2s",
    "retrans_pkts_s2c": "retrans_packets_s2c",
}

class Field(NamedTuple):
    name: str
    unit: str       # what a value counts or measures ("" for text and flags)
    meaning: str


# The one definition of a connection record: every face writes these fields, under these names, in this order and
# these units (`--json`, `--summary --json`, the `end` event's counters, the TUI's CSV and JSON exports; the
# `--summary` table's columns and the TUI's are cells of these). A ConnRow field of the same name holds the same value.
FIELDS: tuple[Field, ...] = (
    Field("conn", "id", "the connection's number: unique in the run, rising as connections start on a shard"),
    Field("client", "address:port", "the client's endpoint ([v6]:port for IPv6)"),
    Field("server", "address:port", "the server's endpoint"),
    Field("vlan", "tags", "the VLAN tags, outermost first"),
    Field("shard", "shard", "the core that tracked it"),
    Field("client_state", "", "the client side's TCP state"),
    Field("server_state", "", "the server side's TCP state"),
    Field("first", "s since the epoch", "time of the first packet"),
    Field("last", "s since the epoch", "time of the last packet"),
    Field("duration", "s", "last - first, rounded to 1 µs"),
    Field("packets_c2s", "packets", "packets client to server"),
    Field("packets_s2c", "packets", "packets server to client"),
    Field("bytes_c2s", "bytes", "IP bytes (headers included) client to server"),
    Field("bytes_s2c", "bytes", "IP bytes server to client"),
    Field("payload_c2s", "bytes", "TCP payload bytes client to server"),
    Field("payload_s2c", "bytes", "TCP payload bytes server to client"),
    Field("retrans_bytes_c2s", "bytes", "payload bytes sent again client to server"),
    Field("retrans_bytes_s2c", "bytes", "payload bytes sent again server to client"),
    Field("retrans_packets_c2s", "packets", "retransmitted segments client to server"),
    Field("retrans_packets_s2c", "packets", "retransmitted segments server to client"),
    Field("ooo_c2s", "packets", "segments out of order client to server"),
    Field("ooo_s2c", "packets", "segments out of order server to client"),
    Field("zero_win_c2s", "packets", "zero-window segments client to server"),
    Field("zero_win_s2c", "packets", "zero-window segments server to client"),
    Field("rtt_client_ms", "ms", "handshake RTT, the client's leg (SYN/ACK to ACK), rounded to 1 µs; null if unknown"),
    Field("rtt_server_ms", "ms", "handshake RTT, the server's leg (SYN to SYN/ACK); null if unknown"),
    Field("rst_by", "", "who reset it: client, server or null"),
    Field("suspicious_rst", "packets", "RSTs out of window (blind resets)"),
    Field("odd_rst", "packets", "RSTs with another TTL or MAC than their sender's"),
    Field("bad_flags", "packets", "segments with an impossible flag combination"),
    Field("bad_checksum", "packets", "segments with a bad checksum"),
    Field("zeek_state", "", "Zeek's conn_state (S0, SF, REJ...)"),
    Field("history", "", "Zeek's history letters"),
    Field("midstream", "", "true if the capture began after its handshake"),
    Field("ended", "", "why it ended (closed, reset, time_wait_expired, idle_timeout, port_reuse, evicted, "
                       "bad_flags) or null"),
    Field("end_ts", "s since the epoch", "when it ended, or null"),
    Field("transitions", "transitions", "state changes of both sides"),
)
RECORD_KEYS: tuple[str, ...] = tuple(f.name for f in FIELDS)
# Optional fields (issue #12): present only when known, right after "server" (`--json`, `--summary --json`,
# `--events`, the TUI's exports); the host names learned from the traffic (engine.names), never from a query.
NAME_FIELDS: tuple[Field, ...] = (
    Field("client_name", "", "the client's host name, learned from DNS answers, TLS SNI or HTTP Host; absent if "
                             "unknown"),
    Field("server_name", "", "the server's host name, learned likewise; absent if unknown"),
)


_make_row = tuple.__new__  # every field given in order: skips NamedTuple's argument parsing (row_of is per row)


def row_of(conn: Connection) -> ConnRow:
    c, s = conn.c, conn.s
    rtt = -1.0
    if conn.rtt_client is not None and conn.rtt_server is not None:
        rtt = conn.rtt_client + conn.rtt_server
    suspicious, odd = conn.suspicious_rst, conn.odd_rst
    return _make_row(ConnRow, (conn.id, conn.shard, conn.c_addr, conn.c_port, conn.s_addr, conn.s_port, conn.vlan,
                   c.state, s.state, conn.first, conn.last, c.packets, s.packets, c.ip_bytes, s.ip_bytes,
                   c.retrans, s.retrans, c.retrans + s.retrans, rtt, zeek.conn_state(conn), conn.history,
                   conn.midstream, conn.ended, suspicious + odd,
                   c.payload, s.payload, c.retrans_bytes, s.retrans_bytes, c.ooo, s.ooo, c.zero_win, s.zero_win,
                   conn.rtt_client, conn.rtt_server, conn.rst_by, suspicious, odd, conn.bad_flags, conn.bad_checksum,
                   conn.end_ts, conn.transitions_kept + conn.transitions_dropped,
                   c.since, s.since, c.zw_since, s.zw_since, c.last_data_ts, s.last_data_ts, c.last_ts, s.last_ts))


def departed_row(conn: Connection | None, now: float, linger: float) -> ConnRow | None:
    """What a face is told about a connection that left the engine's table: None, unless it was replaced by a new
    incarnation on its tuple (a reused port) before its linger time was over; then its last row, which the face
    keeps until end_ts + linger, as it would have stayed in the table (ConnView does that)."""
    if conn is None or conn.ended is None or conn.ended == "evicted" or conn.end_ts is None:
        return None
    return row_of(conn) if conn.end_ts + linger > now else None


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 3)


def identity(conn: Connection) -> dict:
    """The fields every event line carries."""
    return {
        "conn": conn.id,
        "client": format_endpoint(conn.c_addr, conn.c_port),
        "server": format_endpoint(conn.s_addr, conn.s_port),
        "vlan": list(conn.vlan),
        "shard": conn.shard,
        "client_state": NAMES[conn.c.state],
        "server_state": NAMES[conn.s.state],
    }


def row_record(row: ConnRow) -> dict:
    """One connection record, every field but the state history: what `--json`, `--summary --json` and the TUI's
    exports write, under these names and in these units (bytes, seconds since the epoch and seconds, ms)."""
    rtt_client, rtt_server = row.rtt_client, row.rtt_server
    return {
        "conn": row.id,
        "client": row.client,
        "server": row.server,
        "vlan": list(row.vlan),
        "shard": row.shard,
        "client_state": NAMES[row.cstate],
        "server_state": NAMES[row.sstate],
        # the counters (row_counters): from here to history
        "first": row.first,
        "last": row.last,
        "duration": round(row.last - row.first, 6),
        "packets_c2s": row.packets_c2s,
        "packets_s2c": row.packets_s2c,
        "bytes_c2s": row.bytes_c2s,
        "bytes_s2c": row.bytes_s2c,
        "payload_c2s": row.payload_c2s,
        "payload_s2c": row.payload_s2c,
        "retrans_bytes_c2s": row.retrans_bytes_c2s,
        "retrans_bytes_s2c": row.retrans_bytes_s2c,
        "retrans_packets_c2s": row.retrans_packets_c2s,
        "retrans_packets_s2c": row.retrans_packets_s2c,
        "ooo_c2s": row.ooo_c2s,
        "ooo_s2c": row.ooo_s2c,
        "zero_win_c2s": row.zero_win_c2s,
        "zero_win_s2c": row.zero_win_s2c,
        "rtt_client_ms": None if rtt_client is None else round(rtt_client * 1000.0, 3),
        "rtt_server_ms": None if rtt_server is None else round(rtt_server * 1000.0, 3),
        "rst_by": row.rst_by,
        "suspicious_rst": row.suspicious_rst,
        "odd_rst": row.odd_rst,
        "bad_flags": row.bad_flags,
        "bad_checksum": row.bad_checksum,
        "zeek_state": row.zeek_state,
        "history": row.history,
        "midstream": row.midstream,
        "ended": row.ended,
        "end_ts": row.end_ts,
        "transitions": row.transitions,
    }


_COUNTERS = slice(7, -4)  # the record's fields from "first" to "history"


def row_counters(row: ConnRow) -> dict:
    """A record's counters (the `end` event's, the flow screen's): raw numbers, bytes, seconds, milliseconds."""
    return dict(list(row_record(row).items())[_COUNTERS])


def counters(conn: Connection) -> dict:
    return row_counters(row_of(conn))


def connection_dict(conn: Connection) -> dict:
    """One connection as `--json` and `--summary --json` write it (everything but the state history)."""
    return row_record(row_of(conn))


# the JSON of the outputs: compact separators, made once (json.dumps with arguments builds an encoder per call)
encode_json = json.JSONEncoder(separators=(",", ":")).encode

try:
    from midstat_tui._core import Connection as _CompiledConnection
    from midstat_tui._core import record_json as _record_json
except ImportError:  # no compiled core: the Python encoder writes every record
    _CompiledConnection = _record_json = None  # type: ignore[assignment,misc]


def record_text(conn: Connection) -> str:
    """`encode_json(connection_dict(conn))`, the record as `--json` and `--summary --json` write it; the compiled
    core writes it straight from its C record (benchmarks/RESULTS.md: about 10x faster), the same bytes."""
    if conn.__class__ is _CompiledConnection:
        text = _record_json(conn, zeek.conn_state(conn))
        if text is not None:
            return text
    return encode_json(row_record(row_of(conn)))


def endpoint_host(endpoint: str) -> str:
    """The address text of an endpoint as the records write it (`a.b.c.d:port`, `[v6]:port`)."""
    host = endpoint.rpartition(":")[0]
    return host[1:-1] if host.startswith("[") else host


def names_of(client: str, server: str, names, first: float) -> dict:
    """{"client_name": ..., "server_name": ...} for the endpoints of the connection whose first packet was at
    `first` that have a name in `names` (an engine.names.NameMap: the name a client used for that connection); the
    unknown ones left out."""
    c_host, _, c_port = client.rpartition(":")
    s_host, _, s_port = server.rpartition(":")
    client_name, server_name = names.conn_names(c_host.strip("[]"), int(c_port), s_host.strip("[]"), int(s_port),
                                                first)
    out = {}
    if client_name is not None:
        out["client_name"] = client_name
    if server_name is not None:
        out["server_name"] = server_name
    return out


def named_record(record: dict, names) -> dict:
    """A record or event line with the optional name fields after "server", when `names` knows either side."""
    if not names or "server" not in record:
        return record
    # an event line has no "first": named as of its moment (a start event's is the first packet's)
    found = names_of(record["client"], record["server"], names, record.get("first", record.get("ts", math.inf)))
    if not found:
        return record
    out = {}
    for key, value in record.items():
        out[key] = value
        if key == "server":
            out.update(found)
    return out


# the start of every record's JSON text: its number and endpoints (engine.records.record_text writes them first)
_ENDPOINTS = re.compile(r'\{"conn":-?\d+,"client":"([^"]*)","server":"([^"]*)"')
_FIRST = re.compile(r',"first":([-+.0-9eE]+)')


def named_text(text: str, names) -> str:
    """A record's JSON text (record_text) with the optional name fields after "server", as named_record."""
    if not names:
        return text
    m = _ENDPOINTS.match(text)
    if m is None:
        return text
    first = _FIRST.search(text, m.end())
    found = names_of(m.group(1), m.group(2), names, float(first.group(1)) if first else math.inf)
    if not found:
        return text
    at = m.end()
    return text[:at] + "," + encode_json(found)[1:-1] + text[at:]


def transition_dict(entry: tuple) -> dict:
    ts, side, old, new, direction, flags, seq, ack, length = entry
    return {
        "ts": ts,
        "side": SIDE_NAMES[side],
        "from": NAMES[old],
        "to": NAMES[new],
        "packet": {
            "dir": DIR_NAMES[direction],
            "flags": "ICMP" if flags < 0 else flags_text(flags),
            "seq": seq,
            "ack": ack,
            "len": length,
        },
    }
