"""The original mOS midstat table, once a second, and the --summary table."""

from __future__ import annotations

from collections.abc import Iterable

ADDR_WIDTH = 21
STATE_WIDTH = 12


def midstat_table(connections: Iterable[dict]) -> list[str]:
    """Header + one line per open connection (connection dicts as --json writes them), as the original prints
    them; IPv6 endpoints widen the columns."""
    rows = []
    width = ADDR_WIDTH
    for conn in connections:
        if conn["ended"] is not None:
            continue
        client, server = conn["client"], conn["server"]
        width = max(width, len(client), len(server))
        rows.append((conn["shard"], client, conn["client_state"], server, conn["server_state"]))
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


def summary_table(connections: Iterable[dict]) -> list[str]:
    """Every connection of the run, one line each, like Zeek's conn.log or tshark's conversation table."""
    rows = []
    for c in connections:
        rtt = None
        if c["rtt_client_ms"] is not None and c["rtt_server_ms"] is not None:
            rtt = c["rtt_client_ms"] + c["rtt_server_ms"]
        rows.append((
            str(c["conn"]), f"{c['first']:.6f}", f"{c['last'] - c['first']:.6f}", c["client"], c["server"],
            ".".join(str(v) for v in c["vlan"]) or "-", c["client_state"], c["server_state"], c["zeek_state"],
            c["history"] or "-", str(c["packets_c2s"]), str(c["packets_s2c"]), str(c["bytes_c2s"]),
            str(c["bytes_s2c"]), "-" if rtt is None else f"{rtt:.3f}", c["ended"] or "-",
        ))
    names = [name for name, _ in SUMMARY_COLUMNS]
    widths = [max([len(name)] + [len(row[i]) for row in rows]) for i, name in enumerate(names)]

    def line(values: Iterable[str]) -> str:
        cells = [f"{v:{align}{w}}" for v, (_, align), w in zip(values, SUMMARY_COLUMNS, widths, strict=True)]
        return "  ".join(cells).rstrip()

    return [line(names)] + [line(row) for row in rows]
