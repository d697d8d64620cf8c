"""--events: one JSON object per line for every start, state change and end, in packet-time order."""

from __future__ import annotations

from typing import TextIO

from midstat_tui.engine.records import counters, encode_json, identity, transition_dict
from midstat_tui.tcp.connection import Connection
from midstat_tui.tcp.states import NAMES


def event_record(kind: str, conn: Connection, change: tuple | None, states: tuple[int, int] | None) -> dict:
    """One --events line as a dict: the connection, the states right after the event, and what the kind adds."""
    line = identity(conn)
    if states is not None:
        line["client_state"] = NAMES[states[0]]
        line["server_state"] = NAMES[states[1]]
    if kind == "start":
        return {"ts": conn.first, "event": "start", **line, "midstream": conn.midstream}
    if kind == "state":
        detail = transition_dict(change)  # type: ignore[arg-type]
        return {"ts": detail.pop("ts"), "event": "state", **line, **detail}
    return {"ts": conn.end_ts, "event": "end", **line, "reason": conn.ended, **counters(conn)}


def write_event(out: TextIO, record: dict) -> None:
    out.write(encode_json(record) + "\n")


class EventWriter:
    """A tracker event sink that writes JSON lines to a stream."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.count = 0

    def __call__(self, kind: str, conn: Connection, change: tuple | None,
                 states: tuple[int, int] | None) -> None:
        write_event(self.out, event_record(kind, conn, change, states))
        self.count += 1
