"""Grouped views: connections gathered by server, server address, client address, side-state pair, VLAN or Zeek
conn_state, with per-group counts. No UI import.

The rows are columns (numpy arrays, one value per connection) and a group code per row; every total is one
`np.bincount` over the codes, so grouping a million connections costs a few passes over arrays, not a million
Python steps. The codes come from an `Interner` (a key's raw value -> a dense int), so the label text of a group
is made once per group, not once per row.

What a connection counts as (each connection in at most one of the first four; `reset` wins):
    reset      an RST was seen on it (`rst_by` set)
    handshake  a side in SYN_SENT or SYN_RCVD
    closing    a side in FIN_WAIT_1, FIN_WAIT_2, CLOSE_WAIT, CLOSING, LAST_ACK or TIME_WAIT
    open       both sides ESTABLISHED, not ended
`midstream` (picked up without its handshake) and `ended` are counted besides.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass

from midstat_tui.engine.records import ConnRow, format_addr, format_endpoint
from midstat_tui.lazy_imports import numpy as np  # loaded on first use (a start without it: issue #11)
from midstat_tui.tcp.states import CLOSING_STATES, ESTABLISHED, HANDSHAKE, NAMES

GROUP_KEYS = ("server", "server-host", "client-host", "states", "vlan", "zeek")
GROUP_TITLES = {"server": "Server", "server-host": "Server host", "client-host": "Client host",
                "states": "Client/Server state", "vlan": "VLAN", "zeek": "Zeek"}
# the per-group numbers, in the order the table and the JSON show them
COUNTS = ("connections", "open", "handshake", "closing", "reset", "midstream", "ended")
TRAFFIC = ("packets_c2s", "packets_s2c", "bytes_c2s", "bytes_s2c")
RATES = ("rate_c2s", "rate_s2c")
FIELDS = (*COUNTS, *TRAFFIC, *RATES)

_STATE_COUNT = len(NAMES)


def state_pair(cstate: int, sstate: int) -> str:
    return f"{NAMES[cstate]}/{NAMES[sstate]}"


def vlan_text(vlan: Iterable[int]) -> str:
    return ".".join(map(str, vlan)) or "-"


class Interner:
    """A key's raw value (bytes, a tuple, a text) -> a dense code, and each code's label as the table shows it."""

    def __init__(self, label: Callable[[Hashable], str]) -> None:
        self.codes: dict[Hashable, int] = {}
        self.labels: list[str] = []
        self.raws: list[Hashable] = []
        self._label = label

    def code(self, raw: Hashable) -> int:
        code = self.codes.get(raw)
        if code is None:
            code = self.codes[raw] = len(self.labels)
            self.labels.append(self._label(raw))
            self.raws.append(raw)
        return code


def _server(raw: Hashable) -> str:
    addr, port = raw  # type: ignore[misc]
    return format_endpoint(addr, port)


def row_interners() -> dict[str, Interner]:
    """One interner per grouping whose key never changes during a connection's life, or (zeek) is a short text;
    `states` needs none: its code is cstate * 11 + sstate."""
    return {"server": Interner(_server), "server-host": Interner(format_addr),  # type: ignore[arg-type]
            "client-host": Interner(format_addr), "vlan": Interner(vlan_text),  # type: ignore[arg-type]
            "zeek": Interner(str)}


def row_raw(key: str, row: ConnRow) -> Hashable:
    """A row's raw key value for an interner."""
    if key == "server":
        return (row.s_addr, row.s_port)
    if key == "server-host":
        return row.s_addr
    if key == "client-host":
        return row.c_addr
    if key == "vlan":
        return row.vlan
    return row.zeek_state


def state_labels() -> list[str]:
    return [state_pair(c, s) for c in range(_STATE_COUNT) for s in range(_STATE_COUNT)]


def state_codes(cstate: np.ndarray, sstate: np.ndarray) -> np.ndarray:
    return cstate.astype(np.int64) * _STATE_COUNT + sstate.astype(np.int64)


@dataclass
class GroupTable:
    """The groups of one grouping, each group i (only the non-empty ones) has the code `codes[i]` in its interner,
    the label `names[codes[i]]` and the numbers `columns[field][i]`; `order` lists them (indices) once sorted."""

    group_by: str
    names: list[str]                  # every key's label, by code (the interner's list: not copied)
    columns: dict[str, np.ndarray]
    codes: np.ndarray                 # each group's code in its interner (to select its connections)
    has_rates: bool
    order: np.ndarray

    def __len__(self) -> int:
        return len(self.codes)

    def label(self, index: int) -> str:
        return self.names[int(self.codes[index])]

    @property
    def labels(self) -> list[str]:
        names = self.names
        return [names[c] for c in self.codes.tolist()]

    def sort(self, field: str = "connections", reverse: bool = True, label_ties: bool = True) -> None:
        """Sort by a field (`key`: by the label text). Ties go in label order (`label_ties`: the result never depends
        on the order the connections came in, 1 core or N), else in code order (cheaper: the TUI, at a million
        groups)."""
        if field == "key" or label_ties:
            names = self.names
            codes = self.codes.tolist()
            base = np.array(sorted(range(len(codes)), key=lambda i: names[codes[i]]), dtype=np.int64)
        else:
            base = np.arange(len(self.codes), dtype=np.int64)
        if field == "key":
            self.order = base[::-1] if reverse else base
            return
        values = self.columns[field][base]
        self.order = base[np.argsort(-values if reverse else values, kind="stable")]

    def value(self, field: str, index: int) -> float | int:
        value = self.columns[field][index]
        return float(value) if field in RATES else int(value)

    def records(self) -> list[dict]:
        """The groups in order, as `--group-by --json` writes them: `key` first, then the counts."""
        fields = FIELDS if self.has_rates else (*COUNTS, *TRAFFIC)
        lists = {f: self.columns[f][self.order].tolist() for f in fields}
        out = []
        for i, index in enumerate(self.order.tolist()):
            record: dict = {"key": self.label(index)}
            for f in fields:
                value = lists[f][i]
                record[f] = round(value, 3) if f in RATES else int(value)
            out.append(record)
        return out


_LUTS: list = []  # (handshake, closing): each state's membership, made on first use (numpy is loaded then)


def _state_luts() -> tuple[np.ndarray, np.ndarray]:
    if not _LUTS:
        for states in (HANDSHAKE, CLOSING_STATES):
            lut = np.zeros(_STATE_COUNT, dtype=bool)
            lut[np.array(sorted(states), dtype=np.int64)] = True
            _LUTS.append(lut)
    return _LUTS[0], _LUTS[1]
OPEN, HANDSHAKE_, CLOSING_, RESET, OTHER = range(5)   # a connection's one category (the first four are counted)


def categorize(cstate: np.ndarray, sstate: np.ndarray, reset: np.ndarray, ended: np.ndarray,
               midstream: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's category (OPEN ... OTHER) and marks (2 if mid-stream, + 1 if ended), as small ints."""
    cstate, sstate = cstate.astype(np.int64), sstate.astype(np.int64)
    reset = reset.astype(bool, copy=False)
    ended = ended.astype(bool, copy=False)
    category = np.full(len(cstate), OTHER, dtype=np.int8)
    category[(cstate == ESTABLISHED) & (sstate == ESTABLISHED) & ~ended] = OPEN
    handshake_lut, closing_lut = _state_luts()
    category[closing_lut[cstate] | closing_lut[sstate]] = CLOSING_
    category[handshake_lut[cstate] | handshake_lut[sstate]] = HANDSHAKE_
    category[reset] = RESET
    marks = (midstream.astype(np.int8) * 2 + ended).astype(np.int8)
    return category, marks


def aggregate(group_by: str, codes: np.ndarray, labels: list[str], cols: dict[str, np.ndarray],
              rates: tuple[np.ndarray, np.ndarray] | None = None, sort: bool = True) -> GroupTable:
    """The groups of the rows whose codes are given; a row coded len(labels) belongs to no group (the view passes
    its whole columns, the rows the filter drops coded so: no gather of every column). `cols` holds, for the same
    rows: cstate, sstate, reset, ended, midstream (0/1), pkts_c2s, pkts_s2c, bytes_c2s, bytes_s2c; or, instead of
    the first five, their `category` and `marks` (categorize) made beforehand."""
    size = len(labels)
    codes = codes.astype(np.int64, copy=False)
    category, marks = cols.get("category"), cols.get("marks")
    if category is None or marks is None:
        category, marks = categorize(cols["cstate"], cols["sstate"], cols["reset"], cols["ended"], cols["midstream"])
    weights = [(name, cols[src]) for name, src in (("packets_c2s", "pkts_c2s"), ("packets_s2c", "pkts_s2c"),
                                                   ("bytes_c2s", "bytes_c2s"), ("bytes_s2c", "bytes_s2c"))]
    if rates is not None:
        weights += [("rate_c2s", rates[0]), ("rate_s2c", rates[1])]
    # the rows of no group (a filter's, the view's free slots): when they are many, the rows of a group are gathered
    # first, so each of the eight counting passes goes over those only (the gather is one pass per column)
    inside = np.flatnonzero(codes != size)
    if len(inside) * 3 < len(codes) * 2:
        codes, category, marks = codes[inside], category[inside], marks[inside]
        weights = [(name, column[inside]) for name, column in weights]
    by_category = np.bincount(codes * 5 + category, minlength=(size + 1) * 5).reshape(-1, 5)[:size]
    count = by_category.sum(axis=1)
    present = np.flatnonzero(count)
    by_category = by_category[present]
    marked = np.flatnonzero(marks)  # mid-stream or ended: counted over those rows only (most are neither)
    by_marks = np.bincount(codes[marked] * 4 + marks[marked], minlength=(size + 1) * 4).reshape(-1, 4)[present]
    columns: dict[str, np.ndarray] = {
        "connections": count[present], "open": by_category[:, OPEN], "handshake": by_category[:, HANDSHAKE_],
        "closing": by_category[:, CLOSING_], "reset": by_category[:, RESET],
        "midstream": by_marks[:, 2] + by_marks[:, 3], "ended": by_marks[:, 1] + by_marks[:, 3]}
    for name, column in weights:
        total = np.bincount(codes, weights=column, minlength=size + 1)[present]
        columns[name] = total if name in RATES else total.astype(np.int64)
    table = GroupTable(group_by, labels, columns, present, rates is not None, np.arange(len(present), dtype=np.int64))
    if sort:
        table.sort()
    return table


# -- from records (the headless outputs' connection dicts, on 1 core or merged from N) ------------------------------
def _host(endpoint: str) -> str:
    host = endpoint.rsplit(":", 1)[0]
    return host[1:-1] if host.startswith("[") else host


_STATE_INDEX = {name: i for i, name in enumerate(NAMES)}


def group_records(group_by: str, records: Iterable[dict]) -> GroupTable:
    """Group connection records (engine.records.row_record's dicts) as the TUI groups its rows."""
    if group_by not in GROUP_KEYS:
        raise ValueError(f"unknown grouping {group_by!r}")
    interner = Interner(str)
    codes: list[int] = []
    fields: dict[str, list] = {k: [] for k in ("cstate", "sstate", "reset", "ended", "midstream", "pkts_c2s",
                                                  "pkts_s2c", "bytes_c2s", "bytes_s2c")}
    for r in records:
        c, s = _STATE_INDEX[r["client_state"]], _STATE_INDEX[r["server_state"]]
        if group_by == "server":
            label = r["server"]
        elif group_by == "server-host":
            label = _host(r["server"])
        elif group_by == "client-host":
            label = _host(r["client"])
        elif group_by == "states":
            label = state_pair(c, s)
        elif group_by == "vlan":
            label = vlan_text(r["vlan"])
        else:
            label = r["zeek_state"]
        codes.append(interner.code(label))
        fields["cstate"].append(c)
        fields["sstate"].append(s)
        fields["reset"].append(r["rst_by"] is not None)
        fields["ended"].append(r["ended"] is not None)
        fields["midstream"].append(bool(r["midstream"]))
        fields["pkts_c2s"].append(r["packets_c2s"])
        fields["pkts_s2c"].append(r["packets_s2c"])
        fields["bytes_c2s"].append(r["bytes_c2s"])
        fields["bytes_s2c"].append(r["bytes_s2c"])
    cols = {k: np.asarray(v, dtype=np.float64 if k.startswith(("pkts", "bytes")) else np.int64)
            for k, v in fields.items()}
    cols["reset"] = cols["reset"].astype(bool)
    cols["ended"] = cols["ended"].astype(bool)
    return aggregate(group_by, np.asarray(codes, dtype=np.int64), interner.labels, cols)


# -- text ----------------------------------------------------------------------------------------------------------
TABLE_COLUMNS = (("connections", "conns"), ("open", "open"), ("handshake", "handshake"), ("closing", "closing"),
                 ("reset", "reset"), ("midstream", "midstream"), ("ended", "ended"), ("packets_c2s", "pkts_c2s"),
                 ("packets_s2c", "pkts_s2c"), ("bytes_c2s", "bytes_c2s"), ("bytes_s2c", "bytes_s2c"))


def group_lines(table: GroupTable) -> list[str]:
    """`--group-by` as text: a header and one line per group, the key first, numbers right-aligned."""
    title = GROUP_TITLES[table.group_by]
    rows = [[r["key"], *(str(r[f]) for f, _ in TABLE_COLUMNS)] for r in table.records()]
    heads = [title, *(h for _, h in TABLE_COLUMNS)]
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(heads)]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = "  ".join(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
        return f"{first}  {rest}".rstrip()

    total = int(table.columns["connections"].sum()) if len(table) else 0
    return [line(heads), *(line(row) for row in rows),
            f"# {len(table)} group{'' if len(table) == 1 else 's'}, {total} connection{'' if total == 1 else 's'}"]
