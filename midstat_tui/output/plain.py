"""The original mOS midstat table, once a second, and the --summary table."""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterable, Iterator

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
    ("client_state", "<"), ("server_state", "<"), ("zeek_state", "<"), ("history", "<"), ("packets_c2s", ">"),
    ("packets_s2c", ">"), ("bytes_c2s", ">"), ("bytes_s2c", ">"), ("rtt_ms", ">"), ("ended", "<"),
)


SPILL_ROWS = 20_000  # --summary table rows held in memory (about 1 KB each); past that, in an unlinked temporary file


def summary_row(c: dict) -> list[str]:
    """One connection's cells of the --summary table."""
    rtt = None
    if c["rtt_client_ms"] is not None and c["rtt_server_ms"] is not None:
        rtt = c["rtt_client_ms"] + c["rtt_server_ms"]
    return [
        str(c["conn"]), f"{c['first']:.6f}", f"{c['last'] - c['first']:.6f}", c["client"], c["server"],
        ".".join(str(v) for v in c["vlan"]) or "-", c["client_state"], c["server_state"], c["zeek_state"],
        c["history"] or "-", str(c["packets_c2s"]), str(c["packets_s2c"]), str(c["bytes_c2s"]),
        str(c["bytes_s2c"]), "-" if rtt is None else f"{rtt:.3f}", c["ended"] or "-",
    ]


def summary_lines(connections: Iterable[dict]) -> Iterator[str]:
    """Every connection of the run, one line each, like Zeek's conn.log or tshark's conversation table. The
    columns are as wide as their widest cell, so every row is seen before the first line: past SPILL_ROWS rows
    they wait in an unlinked temporary file, not in memory (a flood's million connections)."""
    names = [name for name, _ in SUMMARY_COLUMNS]
    widths = [len(name) for name in names]
    held: list[list[str]] = []
    with contextlib.ExitStack() as stack:
        spill = None
        for c in connections:
            row = summary_row(c)
            widths = [w if w >= len(v) else len(v) for w, v in zip(widths, row, strict=True)]
            if spill is None:
                held.append(row)
                if len(held) > SPILL_ROWS:
                    spill = stack.enter_context(tempfile.TemporaryFile("w+", encoding="utf-8"))
                    spill.writelines(json.dumps(r) + "\n" for r in held)
                    held = []
            else:
                spill.write(json.dumps(row) + "\n")
        formats = [f"{{:{align}{w}}}" for (_, align), w in zip(SUMMARY_COLUMNS, widths, strict=True)]

        def line(values: list[str]) -> str:
            return "  ".join(f.format(v) for f, v in zip(formats, values, strict=True)).rstrip()

        yield line(names)
        if spill is not None:
            spill.seek(0)
            for text in spill:
                yield line(json.loads(text))
        for row in held:
            yield line(row)
