"""A connection's time-sequence picture (tcptrace's graph, in a terminal): bytes sent each way over time, drawn with
braille dots (2 x 4 per character cell), retransmissions and zero-window periods marked, state changes as markers on
the time axis.

Pure: no I/O, no UI. `time_sequence(flow)` gathers the points, `draw(picture, width, height)` returns rows of
(character, kind) cells for a face to colour: kinds are "c2s", "s2c", "retrans", "zero_win", "state", "axis",
"text" and "" (blank).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from midstat_tui.decode.segment import SYN, Segment
from midstat_tui.engine.flow_packets import RETRANS, ZERO_WIN, Flow
from midstat_tui.output.ladder import fit_seconds, human_bytes
from midstat_tui.tcp.states import NAMES

MASK = 0xFFFFFFFF
BRAILLE = 0x2800
# the bit of each dot: (column 0..1, row 0..3) -> bit
_DOT = {(0, 0): 0x01, (0, 1): 0x02, (0, 2): 0x04, (0, 3): 0x40, (1, 0): 0x08, (1, 1): 0x10, (1, 2): 0x20,
        (1, 3): 0x80}
LABEL_W = 9  # the y axis labels


@dataclass
class Picture:
    t0: float
    t1: float
    # per direction (0: client to server, 1: server to client): (time, bytes sent so far: relative end of the data)
    sent: tuple[list[tuple[float, int]], list[tuple[float, int]]] = field(default_factory=lambda: ([], []))
    retrans: list[tuple[float, int, int]] = field(default_factory=list)    # (time, bytes, direction)
    zero_win: list[tuple[float, float, int]] = field(default_factory=list)  # (from, to, advertised by)
    states: list[tuple[float, str]] = field(default_factory=list)          # (time, "client FIN_WAIT_1")
    top: int = 0  # the most bytes either way


def time_sequence(flow: Flow) -> Picture:
    packets = flow.packets
    t0 = packets[0].ts if packets else 0.0
    t1 = packets[-1].ts if packets else 0.0
    pic = Picture(t0, t1)
    base: list[int | None] = [None, None]
    top = 0
    zero_since: list[float | None] = [None, None]
    prev_states = flow.initial
    for p in packets:
        seg = p.seg
        d = 0 if p.from_client else 1
        if p.changed:
            for side, name in ((0, "client"), (1, "server")):
                if p.states[side] != prev_states[side]:
                    pic.states.append((p.ts, f"{name} {NAMES[p.states[side]]}"))
            prev_states = p.states
        if not isinstance(seg, Segment):
            continue
        if base[d] is None:
            base[d] = seg.seq if seg.flags & SYN else (seg.seq - 1) & MASK
        if seg.payload:
            # bytes sent up to this segment's end: its relative end less the sequence number the SYN (or, picked up
            # mid-stream, the base) took
            end = ((seg.seq + seg.payload - base[d]) & MASK) - 1  # type: ignore[operator]
            if end > 0x7FFFFFFF or end < 0:
                end = 0
            pic.sent[d].append((p.ts, end))
            top = max(top, end)
            if RETRANS in p.marks:
                pic.retrans.append((p.ts, end, d))
        if ZERO_WIN in p.marks and zero_since[d] is None:
            zero_since[d] = p.ts
        elif seg.win and zero_since[d] is not None:
            pic.zero_win.append((zero_since[d], p.ts, d))  # type: ignore[arg-type]
            zero_since[d] = None
    for d in (0, 1):
        if zero_since[d] is not None:
            pic.zero_win.append((zero_since[d], t1, d))  # type: ignore[arg-type]
    pic.top = top
    return pic


def data_span(pic: Picture) -> tuple[float, float]:
    """From the first to the last data segment either way (the whole connection when it carried none)."""
    times = [ts for d in (0, 1) for ts, _ in pic.sent[d]]
    if len(times) < 2 or max(times) == min(times):
        return pic.t0, pic.t1
    return min(times), max(times)


def draw(pic: Picture, width: int, height: int, span_of: tuple[float, float] | None = None
         ) -> list[list[tuple[str, str]]]:
    """The picture in `width` x `height` character cells: the plot, the time axis, its times, a legend.
    `span_of`: the time range shown (default: the whole connection); what lies outside is left out."""
    width = max(width, LABEL_W + 12)
    plot_h = max(height - 3, 4)
    plot_w = width - LABEL_W - 1
    dots_w, dots_h = plot_w * 2, plot_h * 4
    start, stop = span_of or (pic.t0, pic.t1)
    span = stop - start or 1.0
    top = pic.top or 1
    bits = [[0] * plot_w for _ in range(plot_h)]
    kind = [[""] * plot_w for _ in range(plot_h)]
    rank = {"": 0, "s2c": 1, "c2s": 2, "retrans": 3}

    def x_of(ts: float) -> int:
        return max(0, min(int((ts - start) / span * (dots_w - 1) + 0.5), dots_w - 1))

    def inside(ts: float) -> bool:
        return start <= ts <= stop

    def dot(ts: float, value: int, what: str) -> None:
        if not inside(ts):
            return
        x = x_of(ts)
        y = dots_h - 1 - min(int(value / top * (dots_h - 1) + 0.5), dots_h - 1)
        row, col = y // 4, x // 2
        bits[row][col] |= _DOT[(x % 2, y % 4)]
        if rank[what] >= rank[kind[row][col]]:
            kind[row][col] = what

    for d, what in ((1, "s2c"), (0, "c2s")):
        for ts, value in pic.sent[d]:
            dot(ts, value, what)
    for ts, value, _ in pic.retrans:
        dot(ts, value, "retrans")
    zero_cols = set()
    for since, until, _ in pic.zero_win:
        if until >= start and since <= stop:
            zero_cols.update(range(x_of(since) // 2, x_of(until) // 2 + 1))

    rows: list[list[tuple[str, str]]] = []
    for r in range(plot_h):
        if r == 0:
            label = human_bytes(pic.top)
        elif r == plot_h - 1:
            label = "0"
        else:
            label = ""
        cells = [(ch, "text") for ch in label.rjust(LABEL_W - 1)[: LABEL_W - 1]] + [(" ", ""), ("│", "axis")]
        for c in range(plot_w):
            b = bits[r][c]
            if b:
                cells.append((chr(BRAILLE + b), kind[r][c]))
            elif c in zero_cols:
                cells.append(("░", "zero_win"))
            else:
                cells.append((" ", ""))
        rows.append(cells[:width])
    # the time axis: state changes as markers on it
    axis = [(" ", "")] * LABEL_W + [("└", "axis")] + [("─", "axis")] * plot_w
    for ts, _ in pic.states:
        if inside(ts):
            axis[LABEL_W + 1 + x_of(ts) // 2] = ("▲", "state")
    rows.append(axis[:width])
    left = fit_seconds(start - pic.t0, 10).strip() + " s"
    right = fit_seconds(stop - pic.t0, 12).strip() + " s"
    times = " " * (LABEL_W + 1) + left
    times += " " * max(1, width - len(times) - len(right)) + right
    rows.append([(ch, "text") for ch in times[:width]])
    legend = "c→s ⣿ green, s→c ⣿ blue, retransmitted red, ░ zero window, ▲ state change"
    rows.append([(ch, "text") for ch in legend[:width]])
    return rows


def state_lines(pic: Picture, limit: int) -> list[str]:
    """The state changes the markers stand for: time from the first packet, side, new state."""
    lines = [f"▲ {fit_seconds(ts - pic.t0, 10).strip()} s  {what}" for ts, what in pic.states]
    if len(lines) > limit:
        lines = lines[: limit - 1] + [f"... and {len(lines) - limit + 1} more"]
    return lines


def draw_text(pic: Picture, width: int = 80, height: int = 20, zoom: bool = False) -> str:
    """The picture as plain text (for tests and a terminal without colours); `zoom`: the data's time only."""
    body = ["".join(ch for ch, _ in row).rstrip()
            for row in draw(pic, width, height, data_span(pic) if zoom else None)]
    return "\n".join(body + state_lines(pic, 12)) + "\n"
