"""Write the current view (filtered, sorted) to CSV or JSON: to a temporary file, then renamed into place, never
over an existing file. No Textual import: the app calls it and shows the result.

Both formats hold the same record as `--summary --json` (engine.records.row_record): its field names, raw numbers in
its units (bytes, seconds since the epoch and seconds, milliseconds). In CSV a VLAN stack reads `100.200`, a missing
value is empty, and true/false are spelled as in JSON."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import pwd
import tempfile
import time
from decimal import Decimal

from midstat_tui.engine.records import NAME_FIELDS, ConnRow, named_record, row_record

_EMPTY = ConnRow(0, 0, bytes(4), 0, bytes(4), 0, (), 0, 0, 0.0, 0.0, 0, 0, 0, 0, 0, 0, 0, -1.0, "", "", False, None)


def cannot_write_in(folder: str) -> str:
    """Why a file cannot be made in `folder`: the user midstat runs as now (root is given up once the capture is
    open), and what to do about it."""
    user = pwd.getpwuid(os.geteuid()).pw_name
    return (f"cannot write in {os.path.abspath(folder)} as {user} (midstat gives up root once the capture is open: "
            "start it in a folder that user may write, or see --user)")


def free_name(folder: str, stem: str, ext: str) -> str:
    """`folder/stem.ext`, or `stem-1.ext`, `stem-2.ext`... when it is taken: an export never overwrites a file."""
    path = os.path.join(folder, f"{stem}.{ext}")
    n = 1
    while os.path.exists(path):
        path = os.path.join(folder, f"{stem}-{n}.{ext}")
        n += 1
    return path


def _csv_value(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ".".join(map(str, value))
    if isinstance(value, float):  # positional, never 1.8e-05: what a spreadsheet or awk reads as a number
        return format(Decimal(repr(value)), "f") if math.isfinite(value) else ""
    return value


def export_rows(rows: list[ConnRow], fmt: str, folder: str = ".", stem: str | None = None, names=None) -> str:
    """`names`: the host names learned (engine.names): each record gains client_name/server_name where known (in
    CSV, both columns, after `server`, for every row once any row has a name; empty where unknown)."""
    stem = stem or time.strftime("midstat-%Y%m%d-%H%M%S")
    records = [named_record(row_record(r), names) for r in rows]
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        fields = list(row_record(_EMPTY))
        if any("client_name" in r or "server_name" in r for r in records):
            at = fields.index("server") + 1
            fields[at:at] = [f.name for f in NAME_FIELDS]
        writer.writerow(fields)
        for record in records:
            writer.writerow([_csv_value(record.get(f)) for f in fields])
        data = buf.getvalue()
    elif fmt == "json":
        data = json.dumps(records, indent=1) + "\n"
    else:
        raise ValueError(f"unknown export format {fmt!r}")
    fd, tmp = tempfile.mkstemp(prefix=".midstat-export-", dir=folder)
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            fh.write(data)
        path = free_name(folder, stem, fmt)
        os.link(tmp, path)  # fails rather than overwrite, even if the name was taken a moment ago
    finally:
        os.unlink(tmp)
    return path
