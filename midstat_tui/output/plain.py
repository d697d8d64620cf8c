"""The original mOS midstat table, once a second, and the --summary table."""

from __future__ import annotations

import contextlib
import tempfile
from array import array
from collections.abc import Iterable, Iterator
from itertools import islice

from midstat_tui.engine.records import connection_dict
from midstat_tui.tcp import zeek
from midstat_tui.tcp.connection import Connection

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


_CHUNK = 4096  # rows measured at a time
SPILL_ROWS = 20_000  # --summary table rows held in memory (some 200 bytes each); past that, in an unlinked temp file


def summary_row(c: dict) -> list[str]:
    """One connection's cells of the --summary table, from its record (engine.records.row_record)."""
    rtt = None
    if c["rtt_client_ms"] is not None and c["rtt_server_ms"] is not None:
        rtt = c["rtt_client_ms"] + c["rtt_server_ms"]
    return [
        str(c["conn"]), f"{c['first']:.6f}", f"{c['last'] - c['first']:.6f}", c["client"], c["server"],
        ".".join(str(v) for v in c["vlan"]) or "-", c["client_state"], c["server_state"], c["zeek_state"],
        c["history"] or "-", str(c["packets_c2s"]), str(c["packets_s2c"]), str(c["bytes_c2s"]),
        str(c["bytes_s2c"]), "-" if rtt is None else f"{rtt:.3f}", c["ended"] or "-",
    ]


try:
    from midstat_tui._core import Connection as _CompiledConnection
    from midstat_tui._core import lay_out as _lay_out
    from midstat_tui._core import measure_cells as _measure_cells
    from midstat_tui._core import summary_cells as _summary_cells
except ImportError:
    _CompiledConnection = _summary_cells = _lay_out = _measure_cells = None  # type: ignore[assignment,misc]


def table_cells(conn: Connection) -> str:
    """`summary_row(connection_dict(conn))` joined by tabs (no cell holds one): what a shard keeps of a connection
    for the --summary table; the compiled core writes it straight from its C record, the same text."""
    if conn.__class__ is _CompiledConnection:
        text = _summary_cells(conn, zeek.conn_state(conn))
        if text is not None:
            return text
    return "\t".join(summary_row(connection_dict(conn)))


def summary_lines(rows: Iterable[str]) -> Iterator[str]:
    """Every connection of the run, one line each (its cells as `table_cells` gives them), like Zeek's conn.log or
    tshark's conversation table. The columns are as wide as their widest cell, so every row is seen before the
    first line: past SPILL_ROWS rows they wait in an unlinked temporary file, not in memory (a flood's million
    connections). The compiled core measures and lays out each row (_core.measure_cells, lay_out); without it,
    rows are measured a chunk at a time (split, zip, max) and laid out by one % format."""
    names = [name for name, _ in SUMMARY_COLUMNS]
    widths = array("q", (len(name) for name in names))
    held: list[str] = []
    rows = iter(rows)
    with contextlib.ExitStack() as stack:
        spill = None
        while chunk := list(islice(rows, _CHUNK)):
            if _measure_cells is not None:
                for row in chunk:
                    _measure_cells(row, widths)
            else:  # (every row has every cell: strict would only slow the transposition down)
                for i, column in enumerate(zip(*[row.split("\t") for row in chunk], strict=False)):
                    widths[i] = max(widths[i], max(map(len, column)))
            if spill is None:
                held.extend(chunk)
                if len(held) > SPILL_ROWS:
                    spill = stack.enter_context(tempfile.TemporaryFile("w+", encoding="utf-8"))
                    spill.write("\n".join(held) + "\n")
                    held = []
            else:
                spill.write("\n".join(chunk) + "\n")
        form = "  ".join(f"%{'' if align == '>' else '-'}{w}s"
                         for (_, align), w in zip(SUMMARY_COLUMNS, widths, strict=True))
        sizes, right = widths.tobytes(), bytes(align == ">" for _, align in SUMMARY_COLUMNS)

        def line(row: str) -> str:
            if _lay_out is not None:
                text = _lay_out(row, sizes, right)
                if text is not None:
                    return text
            return (form % tuple(row.split("\t"))).rstrip()

        yield line("\t".join(names))
        if spill is not None:
            spill.seek(0)
            for text in spill:
                yield line(text[:-1])
        for row in held:
            yield line(row)
