"""The connection table's columns: titles, widths, how each cell reads and how each column sorts.

The TUI's table reads them; exports write the raw record instead (engine.records.row_record). No UI import.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from midstat_tui.engine.records import ConnRow
from midstat_tui.tcp.states import NAMES


def human(n: float) -> str:
    """1234 -> 1.2K, 5_600_000 -> 5.6M: four characters or so, for counters in narrow columns."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            value = n / size
            return f"{value:.1f}{unit}" if value < 100 else f"{value:.0f}{unit}"
    return str(int(n))


def duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m{seconds % 60:02.0f}s"
    if seconds < 86400:
        return f"{seconds // 3600:.0f}h{seconds % 3600 // 60:02.0f}m"
    return f"{seconds // 86400:.0f}d{seconds % 86400 // 3600:02.0f}h"


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    width: int
    text: Callable[[ConnRow, float], str]       # (row, now) -> cell text
    fields: tuple[str, ...]                      # the row fields it sorts by (C-speed attrgetter keys)
    right: bool = False                          # right-aligned (numbers)
    default: bool = True                         # shown unless the user hides it
    flip: bool = False                           # ascending on screen is descending in the field (age, idle)
    fit: bool = False                            # as wide as its widest cell (addresses: IPv6 is long)
    per_view: bool = False                       # a number the view keeps per connection (rates), not in the row

    def sort(self, row: ConnRow, now: float) -> tuple:
        return tuple(getattr(row, f) for f in self.fields)


def _addr_key(addr: bytes, port: int) -> tuple:
    return (len(addr), addr, port)


COLUMNS: tuple[Column, ...] = (
    # every width leaves room for the title and the sort arrow
    Column("alert", "!", 2, lambda r, n: "!" if r.rst_alerts else "", ("rst_alerts",), right=True),
    Column("cpu", "CPU", 4, lambda r, n: str(r.shard), ("shard",), right=True),
    # shown by itself as soon as a row carries a VLAN tag: rows that differ only by their VLAN would look the same
    Column("vlan", "VLAN", 6, lambda r, n: ".".join(map(str, r.vlan)) or "-", ("vlan",), default=False),
    Column("client", "Client", 21, lambda r, n: r.client, ("c_addr", "c_port"), fit=True),
    Column("cstate", "Client State", 13, lambda r, n: NAMES[r.cstate], ("cstate",)),
    Column("server", "Server", 21, lambda r, n: r.server, ("s_addr", "s_port"), fit=True),
    Column("sstate", "Server State", 13, lambda r, n: NAMES[r.sstate], ("sstate",)),
    Column("age", "Age", 6, lambda r, n: duration(n - r.first), ("first",), right=True, flip=True),
    Column("idle", "Idle", 6, lambda r, n: duration(n - r.last), ("last",), right=True, flip=True),
    Column("pkts_c2s", "Pkt→", 6, lambda r, n: human(r.packets_c2s), ("packets_c2s",), right=True),
    Column("pkts_s2c", "Pkt←", 6, lambda r, n: human(r.packets_s2c), ("packets_s2c",), right=True),
    Column("bytes_c2s", "Byte→", 6, lambda r, n: human(r.bytes_c2s), ("bytes_c2s",), right=True),
    Column("bytes_s2c", "Byte←", 6, lambda r, n: human(r.bytes_s2c), ("bytes_s2c",), right=True),
    # bytes/s over the last few seconds (view.RATE_WINDOW): sorting on them gives the top talkers
    Column("rate_c2s", "B/s→", 6, lambda r, n: "", ("rate_c2s",), right=True, per_view=True),
    Column("rate_s2c", "B/s←", 6, lambda r, n: "", ("rate_s2c",), right=True, per_view=True),
    Column("rtt", "RTT ms", 7, lambda r, n: "-" if r.rtt_s < 0 else f"{r.rtt_s * 1000:.1f}", ("rtt_s",), right=True),
    Column("zeek", "Zeek", 6, lambda r, n: r.zeek_state, ("zeek_state",)),
    Column("history", "History", 12, lambda r, n: r.history or "-", ("history",), default=False),
    Column("retrans", "Retx", 5, lambda r, n: human(r.retrans_packets), ("retrans_packets",), right=True,
           default=False),
    Column("midstream", "Mid", 4, lambda r, n: "yes" if r.midstream else "", ("midstream",), default=False),
    Column("ended", "Ended", 17, lambda r, n: r.ended or "", ("ended_key",), default=False),
)
BY_KEY = {c.key: c for c in COLUMNS}
