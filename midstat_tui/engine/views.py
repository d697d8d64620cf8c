"""Connection records as the faces show them: addresses as text and the JSON field names of the output formats.

`row_record` is the one definition of a connection record's fields, names and units (bytes, seconds, milliseconds):
`--json`, `--summary --json` (through `connection_dict`) and the TUI's CSV and JSON exports all write it."""

from __future__ import annotations

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
    pkts_c2s: int
    pkts_s2c: int
    bytes_c2s: int
    bytes_s2c: int
    retrans_c2s: int
    retrans_s2c: int
    retrans: int               # both directions
    rtt: float                 # the whole handshake RTT, client leg + server leg, seconds; -1.0 when unknown
    zeek: str
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
        "packets_c2s": row.pkts_c2s,
        "packets_s2c": row.pkts_s2c,
        "bytes_c2s": row.bytes_c2s,
        "bytes_s2c": row.bytes_s2c,
        "payload_c2s": row.payload_c2s,
        "payload_s2c": row.payload_s2c,
        "retrans_c2s": row.retrans_bytes_c2s,
        "retrans_s2c": row.retrans_bytes_s2c,
        "retrans_pkts_c2s": row.retrans_c2s,
        "retrans_pkts_s2c": row.retrans_s2c,
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
        "zeek_state": row.zeek,
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
