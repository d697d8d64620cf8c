"""The problems lens: which connections look wrong, of what kind, since when, and what that usually means.

No UI import. One row (engine.records.ConnRow) gives its *signals* (`signals`): per kind, since when it applies
(NaN: it does not) and, for the kinds judged on a measure rather than on time, that measure. What is a problem at
a moment `now` is then a comparison with the thresholds, the same for one row (`row_kinds`, for the filter term
`problem KIND`) and for a whole table at once (`detect`, numpy: the TUI keeps every row's signals in a matrix and
redoes only the comparison each second, so a refresh at a million connections stays a few vector operations).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from midstat_tui.engine.records import ConnRow, format_addr
from midstat_tui.lazy_imports import numpy as np  # loaded on first use (a start without it: issue #11)
from midstat_tui.tcp.states import (
    CLOSE_WAIT,
    CLOSED,
    ESTABLISHED,
    FIN_WAIT_2,
    NAMES,
    SYN_SENT,
    TIME_WAIT,
)


@dataclass(frozen=True)
class Kind:
    name: str
    measure: str          # "time": seconds in the condition; "value": a measure of the row; "flag": no threshold
    default: float | None  # the threshold's default (None: a kind without one)
    unit: str             # what the threshold counts
    meaning: str          # what it usually means and what to check


KINDS: tuple[Kind, ...] = (
    Kind("close_wait", "time", 10.0, "seconds",
         "The peer closed but this side's application never did: look for a descriptor leak or a stuck worker "
         "in the process behind this side."),
    Kind("fin_wait_2", "time", 60.0, "seconds",
         "This side closed and the peer acknowledged, but the peer never closed its half: check the peer's "
         "application (or a firewall that dropped its FIN)."),
    Kind("unanswered_syn", "time", 3.0, "seconds",
         "SYNs with no answer: many to one destination mean the service is down or a firewall drops them; many "
         "from one source mean a scan or a flood."),
    Kind("refused", "flag", None, "",
         "The SYN was answered by a RST, or by an ICMP unreachable (port unreachable, administratively "
         "prohibited, no route or host): nothing listens on that port, or a firewall rejects (REJECT), or the "
         "host cannot be reached: check the service, the port the client uses and the firewalls on the path."),
    Kind("reset", "flag", None, "",
         "An established connection was aborted by a RST: check the side that sent it (application abort, "
         "crash, timeout, or a middlebox) at the stage it happened."),
    Kind("suspicious_rst", "flag", None, "",
         "A RST the receiver's stack would not accept, or with another TTL or MAC than its sender's packets: "
         "possibly injected by a middlebox or an attacker."),
    Kind("one_way", "value", 2.0, "seconds",
         "Only one direction of an established flow is seen: asymmetric routing, or the capture point misses "
         "one leg (check the span port or tap)."),
    Kind("retransmissions", "value", 0.05, "share",
         "A large share of the bytes was sent again: loss on the path (check the links, queues and duplex "
         "between the two hosts)."),
    Kind("zero_window", "time", 2.0, "seconds",
         "A receiver advertises a zero window: its application does not read fast enough (check the slow "
         "reader's load, or a blocked consumer)."),
    Kind("half_open", "value", 5.0, "seconds",
         "One side is closed or gone while the other still sends: a crashed or rebooted host, or a NAT or "
         "firewall that dropped the state."),
)
KIND_NAMES = tuple(k.name for k in KINDS)
BY_NAME = {k.name: k for k in KINDS}
INDEX = {name: i for i, name in enumerate(KIND_NAMES)}
COUNT = len(KINDS)
TIME_INDEX = tuple(i for i, k in enumerate(KINDS) if k.measure == "time")
FLAG_INDEX = tuple(i for i, k in enumerate(KINDS) if k.measure == "flag")
VALUE_INDEX = tuple(i for i, k in enumerate(KINDS) if k.measure == "value")
WIDTH = COUNT + len(VALUE_INDEX) + 1  # a row's signals: since per kind, the measures, the end
NONE = (math.nan,) * WIDTH  # the signals of a row with none
DEFAULTS: dict[str, float] = {k.name: k.default for k in KINDS if k.default is not None}

(CLOSE_WAIT_K, FIN_WAIT_2_K, UNANSWERED_SYN_K, REFUSED_K, RESET_K, SUSPICIOUS_K, ONE_WAY_K, RETRANS_K,
 ZERO_WINDOW_K, HALF_OPEN_K) = range(COUNT)

NAN = math.nan
_GONE = (CLOSED, TIME_WAIT)
RESET_STATES = frozenset({"RSTO", "RSTR"})


class ThresholdError(ValueError):
    pass


def parse_threshold(text: str) -> tuple[str, float]:
    """`KIND=VALUE` (seconds, or a share for retransmissions) as (kind, value); ThresholdError says what is wrong."""
    name, sep, value = text.partition("=")
    name = name.strip().lower().replace("-", "_")
    if not sep:
        raise ThresholdError(f"expected KIND=VALUE, e.g. close_wait=30 (kinds: {', '.join(DEFAULTS)})")
    if name not in BY_NAME:
        raise ThresholdError(f"'{name}' is not a problem kind with a threshold ({', '.join(DEFAULTS)})")
    if name not in DEFAULTS:
        raise ThresholdError(f"'{name}' has no threshold (those with one: {', '.join(DEFAULTS)})")
    try:
        number = float(value)
    except ValueError:
        raise ThresholdError(f"'{value}' is not a number") from None
    high = 1.0 if name == "retransmissions" else 1e9
    if not math.isfinite(number) or number < 0 or number > high:
        what = "a share between 0 and 1" if name == "retransmissions" else "seconds, at least 0"
        raise ThresholdError(f"'{value}': expected {what}")
    return name, number


def thresholds_vector(thresholds: dict[str, float] | None = None) -> np.ndarray:
    """One threshold per kind, in KINDS order (flags: 0, they apply whenever their signal is there)."""
    merged = {**DEFAULTS, **(thresholds or {})}
    return np.array([merged.get(name, 0.0) for name in KIND_NAMES], dtype=np.float64)


# -- one row's signals ------------------------------------------------------------------------------------------

def signals(row: ConnRow) -> tuple[float, ...]:
    """WIDTH numbers: per kind since when it applies (NaN: it does not), the measure of each kind judged on one
    (VALUE_INDEX: one_way, retransmissions, half_open), and the time the row ended (NaN: it did not). Depends on
    the row only; the kinds on time are measured at the moment asked. (Once per changed row in the TUI, a million
    times in a flood: the fields are read by one unpacking, and the kinds tested without building lists.)"""
    (_, _, _, _, _, _, _, cs, ss, first, last, pc, ps, _, _, _, _, _, _, zeek, _, _, ended, rst_alerts,
     pay_c, pay_s, again_c, again_s, _, _, _, _, _, _, rst_by, _, _, _, _, end_ts, _,
     since_c, since_s, zw_c, zw_s, data_c, data_s, ts_c, ts_s) = row
    if (cs == ESTABLISHED and ss == ESTABLISHED and ended is None and not rst_alerts and pc and ps
            and not again_c and not again_s and zw_c is None and zw_s is None and data_s <= ts_c
            and data_c <= ts_s):
        return NONE  # the common row, quickly: established both ways, nothing odd, each side answered its peer
    close_wait = fin_wait_2 = unanswered = refused = reset = suspicious = one_way = retrans = zero_window = \
        half_open = one_way_v = retrans_v = half_open_v = NAN
    if cs == CLOSE_WAIT:
        close_wait = since_s if ss == CLOSE_WAIT and since_s < since_c else since_c
    elif ss == CLOSE_WAIT:
        close_wait = since_s
    if cs == FIN_WAIT_2:
        fin_wait_2 = since_s if ss == FIN_WAIT_2 and since_s < since_c else since_c
    elif ss == FIN_WAIT_2:
        fin_wait_2 = since_s
    if cs == SYN_SENT and ps == 0:
        unanswered = first
    if zeek == "REJ" or (cs == CLOSED and ss == CLOSED and ps == 0 and pc and rst_by is None and zeek == "S0"
                         and ended == "closed"):
        # a RST answered the SYN; or, no packet back and the client's side closed with no RST and no FIN: only an
        # ICMP unreachable quoting its SYN does that (tcp.machine.apply_icmp_unreachable)
        refused = end_ts if end_ts is not None else last
    elif rst_by is not None and zeek in RESET_STATES:
        reset = end_ts if end_ts is not None else last
    if rst_alerts:
        suspicious = last
    if (pc == 0) != (ps == 0) and (cs >= ESTABLISHED or ss >= ESTABLISHED):
        one_way = first
        one_way_v = last - first
    share = 0.0
    if pay_c and again_c:
        share = again_c / pay_c
    if pay_s and again_s and again_s / pay_s > share:
        share = again_s / pay_s
    if share > 0.0:
        retrans = first
        retrans_v = share
    if ended is None:
        if zw_c is not None:
            zero_window = zw_s if zw_s is not None and zw_s < zw_c else zw_c
        elif zw_s is not None:
            zero_window = zw_s
    if pc and ps:
        # a side gone (closed, or silent since its last packet) while the other still sent data after that
        best = 0.0
        gone = since_c if cs in _GONE else ts_c
        if data_s - gone > best:
            best = data_s - gone
            half_open = gone
        gone = since_s if ss in _GONE else ts_s
        if data_c - gone > best:
            best = data_c - gone
            half_open = gone
        if best > 0.0:
            half_open_v = best
        else:
            half_open = NAN
    return (close_wait, fin_wait_2, unanswered, refused, reset, suspicious, one_way, retrans, zero_window,
            half_open, one_way_v, retrans_v, half_open_v, NAN if end_ts is None else end_ts)


def detect(matrix: np.ndarray, now: float, thresholds: np.ndarray) -> np.ndarray:
    """Rows of signals (N x WIDTH) -> N x COUNT booleans: which kinds each row shows at `now`. The matrix may hold
    float32 times relative to some base, with `now` relative to the same base (the TUI's, to halve the memory)."""
    since = matrix[:, :COUNT]
    end = matrix[:, WIDTH - 1]
    found = np.zeros(since.shape, dtype=bool, order="F")  # filled a column at a time
    with np.errstate(invalid="ignore"):
        ref = np.where(np.isnan(end), now, end)
        for k in TIME_INDEX:
            found[:, k] = ref - since[:, k] >= thresholds[k]
        for k in FLAG_INDEX:
            found[:, k] = ~np.isnan(since[:, k])
        for column, k in enumerate(VALUE_INDEX, COUNT):
            found[:, k] = matrix[:, column] >= thresholds[k]
    return found


def row_kinds(row: ConnRow, now: float, thresholds: dict[str, float] | None = None) -> list[str]:
    """The kinds one row shows at `now`."""
    found = detect(np.array([signals(row)], dtype=np.float64), now, thresholds_vector(thresholds))[0]
    return [KIND_NAMES[i] for i in np.flatnonzero(found)]


# -- what to say about a row ---------------------------------------------------------------------------------------

def _stage(history: str) -> str:
    """At which stage a reset came, from the Zeek history letters before the first RST."""
    cut = min((i for i in (history.find("R"), history.find("r")) if i >= 0), default=len(history))
    before = history[:cut]
    if "F" in before or "f" in before:
        return "while closing"
    if "D" in before or "d" in before:
        return "mid-transfer, after data"
    return "after the handshake, before any data"


def _side_in(row: ConnRow, state: int) -> str:
    return "client" if row.cstate == state else "server"


def detail(row: ConnRow, kind: str, now: float) -> str:
    """One line about this row's problem of `kind`."""
    ref = row.end_ts if row.end_ts is not None else now
    if kind == "close_wait":
        side = _side_in(row, CLOSE_WAIT)
        since = row.since_c if side == "client" else row.since_s
        return f"the {side} has been in CLOSE_WAIT for {ref - since:.1f} s (its peer closed)"
    if kind == "fin_wait_2":
        side = _side_in(row, FIN_WAIT_2)
        since = row.since_c if side == "client" else row.since_s
        return f"the {side} has been in FIN_WAIT_2 for {ref - since:.1f} s (the peer never closed)"
    if kind == "unanswered_syn":
        return f"{row.packets_c2s} SYN(s) unanswered for {ref - row.first:.1f} s"
    if kind == "refused":
        if row.zeek_state == "REJ":
            return f"SYN to port {row.s_port} answered by a RST"
        return (f"SYN to port {row.s_port} answered by an ICMP unreachable, no TCP answer (a REJECT rule, or no "
                "route or host on the path)")
    if kind == "reset":
        return f"reset by the {row.rst_by} {_stage(row.history)} (history {row.history})"
    if kind == "suspicious_rst":
        parts = []
        if row.suspicious_rst:
            parts.append(f"{row.suspicious_rst} out of window (not obeyed)")
        if row.odd_rst:
            parts.append(f"{row.odd_rst} with another TTL or MAC than the sender's")
        return "RSTs: " + ", ".join(parts)
    if kind == "one_way":
        sender = "client" if row.packets_c2s else "server"
        count = row.packets_c2s or row.packets_s2c
        return f"only the {sender}'s packets are seen ({count} over {row.last - row.first:.1f} s)"
    if kind == "retransmissions":
        parts = []
        for name, payload, again in (("client", row.payload_c2s, row.retrans_bytes_c2s),
                                     ("server", row.payload_s2c, row.retrans_bytes_s2c)):
            if payload and again:
                parts.append(f"the {name} sent {again} of {payload} bytes again ({100.0 * again / payload:.1f}%)")
        return "; ".join(parts)
    if kind == "zero_window":
        sides = [(name, t) for name, t in (("client", row.zw_since_c), ("server", row.zw_since_s)) if t is not None]
        name, t = min(sides, key=lambda item: item[1])
        return f"the {name} has advertised a zero window for {ref - t:.1f} s"
    # half_open
    parts = []
    for name, state, state_since, last_ts, peer, peer_data in (
            ("client", row.cstate, row.since_c, row.last_ts_c, "server", row.last_data_s),
            ("server", row.sstate, row.since_s, row.last_ts_s, "client", row.last_data_c)):
        gone = state_since if state in _GONE else last_ts
        if peer_data - gone > 0:
            how = f"went {NAMES[state]}" if state in _GONE else "fell silent"
            parts.append(f"the {name} {how} and the {peer} still sent data {peer_data - gone:.1f} s later")
    return "; ".join(parts)


# -- the whole table ---------------------------------------------------------------------------------------------

@dataclass
class Problem:
    kind: str
    row: ConnRow
    since: float
    detail: str

    def record(self) -> dict:
        return {"kind": self.kind, "conn": self.row.id, "client": self.row.client, "server": self.row.server,
                "since": self.since, "detail": self.detail}


@dataclass
class Report:
    now: float
    counts: dict[str, int]
    problems: list[Problem]
    syn_by_destination: list[tuple[str, int]]   # unanswered SYNs grouped: (server, connections), most first
    syn_by_source: list[tuple[str, int]]        # (client address, connections), most first

    def document(self) -> dict:
        """What `--problems --json` writes."""
        return {"ts": self.now, "counts": self.counts, "problems": [p.record() for p in self.problems],
                "unanswered_syn": {
                    "by_destination": [{"server": k, "connections": n} for k, n in self.syn_by_destination],
                    "by_source": [{"client": k, "connections": n} for k, n in self.syn_by_source]}}


def matrix_of(rows: list[ConnRow]) -> np.ndarray:
    if not rows:
        return np.zeros((0, WIDTH), dtype=np.float64)
    return np.array([signals(row) for row in rows], dtype=np.float64)


def report(rows: Iterable[ConnRow], now: float, thresholds: dict[str, float] | None = None,
           kinds: Iterable[str] | None = None) -> Report:
    """Every problem of these rows at `now`, ordered by kind (KINDS order), then since, then connection."""
    rows = list(rows)
    matrix = matrix_of(rows)
    found = detect(matrix, now, thresholds_vector(thresholds))
    wanted = set(KIND_NAMES if kinds is None else kinds)
    counts = {name: 0 for name in KIND_NAMES}
    problems: list[Problem] = []
    for k, name in enumerate(KIND_NAMES):
        if name not in wanted:
            continue
        hits = np.flatnonzero(found[:, k])
        counts[name] = len(hits)
        # in an order that does not depend on the shards (connection ids do): since, then the connection
        items = [(float(matrix[i, k]), rows[i]) for i in hits.tolist()]
        items.sort(key=lambda item: (item[0], item[1].first, item[1].c_addr, item[1].c_port, item[1].s_addr,
                                     item[1].s_port, item[1].vlan))
        problems.extend(Problem(name, row, since, detail(row, name, now)) for since, row in items)
    syn_rows = [p.row for p in problems if p.kind == "unanswered_syn"]
    by_dest = Counter(row.server for row in syn_rows)
    by_src = Counter(format_addr(row.c_addr) for row in syn_rows)
    return Report(now, counts, problems, sorted(by_dest.items(), key=lambda kv: (-kv[1], kv[0])),
                  sorted(by_src.items(), key=lambda kv: (-kv[1], kv[0])))


def table_lines(rep: Report) -> list[str]:
    """What `--problems` prints: the counts, then each kind's rows under its one-sentence meaning."""
    total = sum(rep.counts.values())
    lines = [f"# problems: {total}" + ("" if not total else " (" + ", ".join(
        f"{name} {n}" for name, n in rep.counts.items() if n) + ")")]
    for kind in KINDS:
        mine = [p for p in rep.problems if p.kind == kind.name]
        if not mine:
            continue
        lines.append("")
        lines.append(f"{kind.name} ({len(mine)}): {kind.meaning}")
        if kind.name == "unanswered_syn":
            lines.append("  by destination: " + ", ".join(f"{k} {n}" for k, n in rep.syn_by_destination))
            lines.append("  by source: " + ", ".join(f"{k} {n}" for k, n in rep.syn_by_source))
        width_c = max(len(p.row.client) for p in mine)
        width_s = max(len(p.row.server) for p in mine)
        for p in mine:
            lines.append(f"  {p.row.id:>8}  {p.row.client:<{width_c}}  {p.row.server:<{width_s}}  {p.detail}")
    return lines


# -- the filter term `problem KIND` --------------------------------------------------------------------------------

@dataclass
class Lens:
    """The thresholds the filter term `problem KIND` judges with (None: the defaults). The moment is no state of
    the lens: the compiled query takes it at each call (`predicate(row, now)`), and the TUI's view answers the term
    on its columns from its own detection."""

    thresholds: dict[str, float] | None = None

    def has(self, row: ConnRow, kind: str, now: float | None = None) -> bool:
        return row_has(row, INDEX[kind], row.last if now is None else now, {**DEFAULTS, **(self.thresholds or {})})


def row_has(row: ConnRow, k: int, now: float, thresholds: dict[str, float]) -> bool:
    """Does this row show kind number `k` at `now`? (`detect`'s rule, for one row and one kind, in Python.)"""
    sig = signals(row)
    since = sig[k]
    if since != since:
        return False
    kind = KINDS[k]
    if kind.measure == "flag":
        return True
    if kind.measure == "time":
        end = sig[WIDTH - 1]
        return (now if end != end else end) - since >= thresholds[kind.name]
    return sig[COUNT + VALUE_INDEX.index(k)] >= thresholds[kind.name]
