"""Connection records as the faces show them: addresses as text and the JSON field names of the output formats."""

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

    @property
    def ended_key(self) -> str:
        return self.ended or ""

    @property
    def client(self) -> str:
        return format_endpoint(self.c_addr, self.c_port)

    @property
    def server(self) -> str:
        return format_endpoint(self.s_addr, self.s_port)


def row_of(conn: Connection) -> ConnRow:
    c, s = conn.c, conn.s
    rtt = -1.0
    if conn.rtt_client is not None and conn.rtt_server is not None:
        rtt = conn.rtt_client + conn.rtt_server
    return ConnRow(conn.id, conn.shard, conn.c_addr, conn.c_port, conn.s_addr, conn.s_port, conn.vlan,
                   c.state, s.state, conn.first, conn.last, c.packets, s.packets, c.ip_bytes, s.ip_bytes,
                   c.retrans, s.retrans, c.retrans + s.retrans, rtt, zeek.conn_state(conn), conn.history,
                   conn.midstream, conn.ended, conn.suspicious_rst + conn.odd_rst)


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


def counters(conn: Connection) -> dict:
    c, s = conn.c, conn.s
    return {
        "first": conn.first,
        "last": conn.last,
        "duration": round(conn.last - conn.first, 6),
        "packets_c2s": c.packets,
        "packets_s2c": s.packets,
        "bytes_c2s": c.ip_bytes,
        "bytes_s2c": s.ip_bytes,
        "payload_c2s": c.payload,
        "payload_s2c": s.payload,
        "retrans_c2s": c.retrans_bytes,
        "retrans_s2c": s.retrans_bytes,
        "retrans_pkts_c2s": c.retrans,
        "retrans_pkts_s2c": s.retrans,
        "ooo_c2s": c.ooo,
        "ooo_s2c": s.ooo,
        "zero_win_c2s": c.zero_win,
        "zero_win_s2c": s.zero_win,
        "rtt_client_ms": _ms(conn.rtt_client),
        "rtt_server_ms": _ms(conn.rtt_server),
        "rst_by": conn.rst_by,
        "suspicious_rst": conn.suspicious_rst,
        "odd_rst": conn.odd_rst,
        "bad_flags": conn.bad_flags,
        "bad_checksum": conn.bad_checksum,
        "zeek_state": zeek.conn_state(conn),
        "history": conn.history,
    }


def connection_dict(conn: Connection) -> dict:
    """One connection as `--json` and `--summary --json` write it (everything but the state history)."""
    out = identity(conn)
    out.update(counters(conn))
    out["midstream"] = conn.midstream
    out["ended"] = conn.ended
    out["end_ts"] = conn.end_ts
    out["transitions"] = conn.transitions_kept + conn.transitions_dropped
    return out


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
