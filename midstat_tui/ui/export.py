"""Write the current view (filtered, sorted) to CSV or JSON: to a temporary file, then renamed into place, never
over an existing file. No Textual import: the app calls it and shows the result."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
import time

from midstat_tui.columns import Column, plain_text_export_fields
from midstat_tui.engine.views import ConnRow


def _free_name(folder: str, stem: str, ext: str) -> str:
    path = os.path.join(folder, f"{stem}.{ext}")
    n = 1
    while os.path.exists(path):
        path = os.path.join(folder, f"{stem}-{n}.{ext}")
        n += 1
    return path


def export_rows(rows: list[ConnRow], columns: list[Column], now: float, fmt: str, folder: str = ".",
                stem: str | None = None) -> str:
    stem = stem or time.strftime("midstat-%Y%m%d-%H%M%S")
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow([c.title for c in columns])
        for row in rows:
            writer.writerow([c.text(row, now) for c in columns])
        data = buf.getvalue()
    elif fmt == "json":
        data = json.dumps([plain_text_export_fields(r) for r in rows], indent=1) + "\n"
    else:
        raise ValueError(f"unknown export format {fmt!r}")
    fd, tmp = tempfile.mkstemp(prefix=".midstat-export-", dir=folder)
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            fh.write(data)
        path = _free_name(folder, stem, fmt)
        os.link(tmp, path)  # fails rather than overwrite, even if the name was taken a moment ago
    finally:
        os.unlink(tmp)
    return path
