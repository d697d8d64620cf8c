"""--events: one JSON object per line for every start, state change and end, in packet-time order."""

from __future__ import annotations

import json
from typing import TextIO

from midstat_tui.engine.views import counters, identity, transition_dict
from midstat_tui.tcp.connection import Connection
from midstat_tui.tcp.states import NAMES


class EventWriter:
    """A tracker event sink that writes JSON lines to a stream."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.count = 0

    def __call__(self, kind: str, conn: Connection, change: tuple | None,
                 states: tuple[int, int] | None) -> None:
        line = identity(conn)
        if states is not None:
            line["client_state"] = NAMES[states[0]]
            line["server_state"] = NAMES[states[1]]
        if kind == "start":
            record = {"ts": conn.first, "event": "start", **line, "midstream": conn.midstream}
        elif kind == "state":
            detail = transition_dict(change)
            record = {"ts": detail.pop("ts"), "event": "state", **line, **detail}
        else:
            record = {"ts": conn.end_ts, "event": "end", **line, "reason": conn.ended, **counters(conn)}
        self.out.write(json.dumps(record, separators=(",", ":")))
        self.out.write("\n")
        self.count += 1
