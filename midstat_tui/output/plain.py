"""The original mOS midstat table, once a second, and the --summary table."""

from __future__ import annotations

from collections.abc import Iterable

from midstat_tui.engine.views import format_endpoint
from midstat_tui.tcp import zeek
from midstat_tui.tcp.connection import Connection
from midstat_tui.tcp.states import NAMES

ADDR_WIDTH = 21
STATE_WIDTH = 12


def midstat_table(connections: Iterable[Connection]) -> list[str]:
    """Header + one line per open connection, as the original prints them (IPv6 endpoints widen the columns)."""
    rows = []
    width = ADDR_WIDTH
    for conn in connections:
        if conn.ended is not None:
            continue
        client = format_endpoint(conn.c_addr, conn.c_port)
        server = format_endpoint(conn.s_addr, conn.s_port)
        width = max(width, len(client), len(server))
        rows.append((conn.shard, client, NAMES[conn.c.state], server, NAMES[conn.s.state]))
    header = (f"{'Proto':<6}{'CPU':<4}{'Client Address':<{width}} {'Client State':<{STATE_WIDTH}} "
              f"{'Server Address':<{width}} Server State")
    lines = [header]
    for shard, client, cstate, server, sstate in rows:
        lines.append(f"{'tcp':<6}{shard:<4}{client:<{width}} {cstate:<{STATE_WIDTH}} {server:<{width}} {sstate}")
    return lines


SUMMARY_COLUMNS = (
    ("conn", ">"), ("first", ">"), ("duration", ">"), ("client", "<"), ("server", "<"), ("vlan", "<"),
    ("client_state", "<"), ("server_state", "<"), ("zeek", "<"), ("history", "<"), ("pkts_c2s", ">"),
    ("pkts_s2c", ">"), ("bytes_c2s", ">"), ("bytes_s2c", ">"), ("rtt_ms", ">"), ("ended", "<"),
)


def summary_table(connections: Iterable[Connection]) -> list[str]:
    """Every connection of the run, one line each, like Zeek's conn.log or tshark's conversation table."""
    rows = []
    for conn in connections:
        rtt = None
        if conn.rtt_client is not None and conn.rtt_server is not None:
            rtt = (conn.rtt_client + conn.rtt_server) * 1000.0
        rows.append((
            str(conn.id), f"{conn.first:.6f}", f"{conn.last - conn.first:.6f}",
            format_endpoint(conn.c_addr, conn.c_port), format_endpoint(conn.s_addr, conn.s_port),
            ".".join(str(v) for v in conn.vlan) or "-",
            NAMES[conn.c.state], NAMES[conn.s.state], zeek.conn_state(conn), conn.history or "-",
            str(conn.c.packets), str(conn.s.packets), str(conn.c.ip_bytes), str(conn.s.ip_bytes),
            "-" if rtt is None else f"{rtt:.3f}", conn.ended or "-",
        ))
    names = [name for name, _ in SUMMARY_COLUMNS]
    widths = [max([len(name)] + [len(row[i]) for row in rows]) for i, name in enumerate(names)]

    def line(values: Iterable[str]) -> str:
        cells = [f"{v:{align}{w}}" for v, (_, align), w in zip(values, SUMMARY_COLUMNS, widths, strict=True)]
        return "  ".join(cells).rstrip()

    return [line(names)] + [line(row) for row in rows]
