"""A connection as a ladder diagram: the client's column, the capture point, the server's column, one arrow per packet.

    time      delta   client 10.231.1.1:36258       capture       server 10.231.2.1:5010
                      CLOSED                           ┊                          CLOSED
  0.000000 +0.000000 │─S seq=0 win=64240──────────────────────────────────────────────>│
                      SYN_SENT                         ┊                               │

Each arrow is labelled with the flags (tcpdump's letters), the sequence number relative to its sender's ISN and the
ACK number relative to the peer's (as Wireshark counts them: from the SYN, else from the first number seen minus
one; `absolute` for the numbers on the wire), the payload length and the window as the header carries it (unscaled,
as tcpdump prints it). Each side's state is written on its column where it changes (the tracker's state machines
ran over the packets: engine.flow_packets). Marks: [retrans], [ooo], [zero win], [dup ack], [rst ignored] (out of
window: the receiver's stack drops it), [rst odd ttl/mac], [bad csum], [bad flags], [late] (after the end).
Long runs of data without a state change or a SYN, FIN or RST are folded into one entry with counts; `unfold` names
the runs (by their first packet's number) shown packet by packet.

Pure: no I/O, no UI. `ladder(flow, ...)` returns `Line`s: the text and which packets or fold each line shows.
"""

from __future__ import annotations

import math
import textwrap
import time
from dataclasses import dataclass

from midstat_tui.decode.segment import ACK, FIN, RST, SYN, Segment, flags_text
from midstat_tui.engine.flow_packets import (
    BAD_CSUM,
    BAD_FLAGS,
    DUP_ACK,
    LATE,
    OOO,
    RETRANS,
    RST_IGNORED,
    RST_ODD,
    ZERO_WIN,
    Flow,
    FlowPacket,
)
from midstat_tui.engine.records import ConnRow, format_endpoint
from midstat_tui.tcp.states import NAMES

MASK = 0xFFFFFFFF
FOLD_MIN = 12        # a run of at least this many packets (some of them data) is folded
TIME_W = 10
DELTA_W = 9
LEFT = TIME_W + 1 + DELTA_W + 1   # the client's column
MIN_WIDTH = 64

MARK_TEXT = {
    RETRANS: "[retrans]", OOO: "[ooo]", ZERO_WIN: "[zero win]", DUP_ACK: "[dup ack]",
    RST_IGNORED: "[rst ignored]", RST_ODD: "[rst odd ttl/mac]", BAD_CSUM: "[bad csum]", BAD_FLAGS: "[bad flags]",
    LATE: "[late]",
}
# marks that keep a packet out of a folded run: the reader wants to see these one by one
_UNFOLDABLE = frozenset({RST_IGNORED, RST_ODD, BAD_FLAGS, LATE, ZERO_WIN})

UNICODE = {"axis": "│", "line": "─", "cap": "┼", "tap": "┊", "fold": "▸", "unfold": "▾", "dots": "┈"}
ASCII = {"axis": "|", "line": "-", "cap": "+", "tap": ":", "fold": ">", "unfold": "v", "dots": "."}


@dataclass(frozen=True)
class Line:
    text: str
    kind: str                   # "head", "packet", "states", "fold", "more" (a fold's or a label's second line)
    first: int = -1             # the first packet it shows (-1: none)
    last: int = -1              # the last packet it shows
    fold: int | None = None     # a folded run (or an unfolded one, on its heading line): its first packet


def human_bytes(n: int) -> str:
    if n < 1000:
        return f"{n} B"
    for unit in ("kB", "MB", "GB", "TB"):
        n /= 1000.0
        if n < 1000 or unit == "TB":
            return f"{n:.1f} {unit}"
    return f"{n} B"  # pragma: no cover


def fit_seconds(value: float, width: int, sign: bool = False) -> str:
    """Seconds with as many decimals (up to 6) as fit in `width` characters."""
    for decimals in (6, 5, 4, 3, 2, 1, 0):
        text = f"{value:+.{decimals}f}" if sign else f"{value:.{decimals}f}"
        if len(text) <= width:
            return text.rjust(width)
    return text


class _Bases:
    """Each side's base sequence number, as Wireshark sets it: the SYN's, else the first number seen minus one (from
    the side's own segment, or from the peer's ACK of it, whichever comes first)."""

    def __init__(self) -> None:
        self.base: list[int | None] = [None, None]

    def see(self, seg: Segment, from_client: bool) -> None:
        own, peer = (0, 1) if from_client else (1, 0)
        if self.base[own] is None:
            self.base[own] = seg.seq if seg.flags & SYN else (seg.seq - 1) & MASK
        if self.base[peer] is None and seg.flags & ACK:
            self.base[peer] = (seg.ack - 1) & MASK

    def rel(self, side: int, value: int) -> int:
        base = self.base[side]
        return value if base is None else (value - base) & MASK


class _Painter:
    def __init__(self, width: int, plain: bool) -> None:
        self.width = max(width, MIN_WIDTH)
        self.g = ASCII if plain else UNICODE
        self.right = self.width - 2            # the server's column
        self.inner = self.right - LEFT - 1     # between the two columns
        self.tap = LEFT + 1 + self.inner // 2  # the capture point

    def blank(self) -> list[str]:
        row = [" "] * (self.right + 1)
        row[LEFT] = self.g["axis"]
        row[self.right] = self.g["axis"]
        row[self.tap] = self.g["tap"]
        return row

    def times(self, row: list[str], ts: float | None, delta: float | None) -> None:
        if ts is not None:
            row[0:TIME_W] = fit_seconds(ts, TIME_W)
        if delta is not None:
            row[TIME_W + 1:TIME_W + 1 + DELTA_W] = fit_seconds(delta, DELTA_W, sign=True)

    @staticmethod
    def text(row: list[str]) -> str:
        return "".join(row).rstrip()

    def arrow(self, ts: float, delta: float, to_server: bool, label: str) -> tuple[str, str]:
        """The arrow line, and what of the label did not fit on it (for a line of its own)."""
        g = self.g
        row = self.blank()
        self.times(row, ts, delta)
        n = self.inner
        body = [g["line"]] * n
        body[n // 2] = g["cap"]
        if to_server:
            body[-1] = ">"
        else:
            body[0] = "<"
        room = n - 4
        label, rest = _split(label, room)
        text = f" {label} "
        start = 1 if to_server else n - 1 - len(text)
        body[start:start + len(text)] = text
        row[LEFT + 1:self.right] = body
        return self.text(row), rest

    def inside(self, text: str, ts: float | None = None, delta: float | None = None, lead: str = " ") -> str:
        row = self.blank()
        self.times(row, ts, delta)
        text = f"{lead}{text}"[: self.inner - 1]
        row[LEFT + 1:LEFT + 1 + len(text)] = text
        return self.text(row)

    def ends(self, client: str, server: str) -> list[str]:
        """The `client ADDR:PORT` and `server ADDR:PORT` labels: on one line where both fit between the columns,
        else each on a line of its own (the client's from its column, the server's up to its column; a label
        wider than that starts further left, over the time columns, which are blank there): never cut."""
        if len(client) + 1 + len(server) <= self.right + 1 - LEFT:
            return [self.states(client, server)]
        out = []
        width = self.right + 1
        for text, left in ((client, True), (server, False)):
            for at in range(0, len(text), width):  # (wider than the whole line only below MIN_WIDTH's columns)
                piece = text[at:at + width]
                row = self.blank()
                start = LEFT if left and LEFT + len(piece) <= width else width - len(piece)
                row[start:start + len(piece)] = piece
                out.append(self.text(row))
        return out

    def states(self, client: str | None, server: str | None) -> str:
        row = self.blank()
        if client is not None:
            row[LEFT:LEFT + len(client)] = client
        if server is not None:
            row[self.right + 1 - len(server):self.right + 1] = server
        return self.text(row)


def _split(text: str, room: int) -> tuple[str, str]:
    """The words of `text` that fit in `room` characters, and the rest."""
    if len(text) <= room:
        return text, ""
    cut = text.rfind(" ", 0, room + 1)
    if cut <= 0:
        cut = room
    return text[:cut], text[cut:].strip()


def packet_label(packet: FlowPacket, bases: _Bases, absolute: bool) -> str:
    seg = packet.seg
    own, peer = (0, 1) if packet.from_client else (1, 0)
    if not isinstance(seg, Segment):
        return f"ICMP unreachable (quotes seq={seg.seq if absolute else bases.rel(own, seg.seq)})"
    flags = seg.flags
    parts = [flags_text(flags)]
    if seg.payload or flags & (SYN | FIN | RST) or not flags & ACK:
        parts.append(f"seq={seg.seq if absolute else bases.rel(own, seg.seq)}")
    if flags & ACK:
        parts.append(f"ack={seg.ack if absolute else bases.rel(peer, seg.ack)}")
    if seg.payload:
        parts.append(f"len={seg.payload}")
    parts.append(f"win={seg.win}")
    parts.extend(MARK_TEXT[m] for m in packet.marks)
    return " ".join(parts)


def _foldable(packet: FlowPacket) -> bool:
    seg = packet.seg
    return (isinstance(seg, Segment) and not packet.changed and not seg.flags & (SYN | FIN | RST)
            and not _UNFOLDABLE.intersection(packet.marks))


def runs(flow: Flow, fold_min: int = FOLD_MIN) -> dict[int, int]:
    """The foldable runs: first packet -> last packet, for runs of at least `fold_min` packets carrying data."""
    found: dict[int, int] = {}
    packets = flow.packets
    i = 0
    while i < len(packets):
        if not _foldable(packets[i]):
            i += 1
            continue
        j = i
        while j + 1 < len(packets) and _foldable(packets[j + 1]):
            j += 1
        if j - i + 1 >= fold_min and any(p.seg.payload for p in packets[i:j + 1]):
            found[i] = j
        i = j + 1
    return found


def human_span(seconds: float) -> str:
    if seconds < 1.0:
        return f"{seconds * 1000:.3g} ms"
    return f"{seconds:.3g} s" if seconds < 1000 else f"{seconds:,.0f} s"


def fold_summary(packets: list[FlowPacket]) -> list[str]:
    """A folded run in words: '1,204 data packets', '1.7 MB in 2.3 s', '3 retransmitted', then the directions,
    the ACKs and the other marks."""
    data = [p for p in packets if p.seg.payload]
    size = sum(p.seg.payload for p in data)
    span = packets[-1].ts - packets[0].ts
    retrans = sum(1 for p in data if RETRANS in p.marks)
    parts = [f"{len(data):,} data packets", f"{human_bytes(size)} in {human_span(span)}",
             f"{retrans:,} retransmitted"]
    c2s = sum(p.seg.payload for p in data if p.from_client)
    s2c = size - c2s
    extra = parts
    if c2s:
        extra.append(f"client->server {human_bytes(c2s)}")
    if s2c:
        extra.append(f"server->client {human_bytes(s2c)}")
    acks = len(packets) - len(data)
    if acks:
        extra.append(f"{acks:,} ACKs")
    for mark, words in ((DUP_ACK, "dup ACKs"), (OOO, "out of order"), (BAD_CSUM, "bad checksums")):
        count = sum(1 for p in packets if mark in p.marks)
        if count:
            extra.append(f"{count:,} {words}")
    return parts


def _pack(parts: list[str], room: int) -> list[str]:
    """Phrases joined with ', ' into lines of at most `room` characters (a phrase is never cut)."""
    lines: list[str] = []
    for part in parts:
        if lines and len(lines[-1]) + 2 + len(part) <= room:
            lines[-1] += ", " + part
        else:
            lines.append(part)
    return lines


def ladder(flow: Flow, width: int = 80, plain: bool = False, absolute: bool = False, fold: bool = True,
           unfold: frozenset[int] | set[int] = frozenset(), fold_min: int = FOLD_MIN) -> list[Line]:
    """The ladder of `flow` as lines of at most `width - 1` characters."""
    paint = _Painter(width, plain)
    g = paint.g
    ref = flow.ref
    lines: list[Line] = []
    client = f"client {format_endpoint(ref.c_addr, ref.c_port)}"
    server = f"server {format_endpoint(ref.s_addr, ref.s_port)}"
    head = [" "] * (paint.right + 1)
    head[0:TIME_W] = "time".rjust(TIME_W)
    head[TIME_W + 1:TIME_W + 1 + DELTA_W] = "delta".rjust(DELTA_W)
    head[paint.tap - 3:paint.tap + 4] = "capture"
    lines.append(Line(paint.text(head), "head"))
    lines.extend(Line(text, "head") for text in paint.ends(client, server))
    if ref.vlan:
        lines.append(Line(paint.inside("vlan " + ".".join(map(str, ref.vlan))), "head"))
    if flow.midstream:
        lines.append(Line(paint.inside("picked up mid-stream: states inferred"), "head"))
    lines.append(Line(paint.states(NAMES[flow.initial[0]], NAMES[flow.initial[1]]), "states"))
    packets = flow.packets
    if not packets:
        lines.append(Line(paint.inside("no packets of this connection in the capture"), "more"))
        return lines
    bases = _Bases()
    t0 = packets[0].ts
    folds = runs(flow, fold_min) if fold else {}
    prev_ts = t0
    states = flow.initial
    i = 0
    while i < len(packets):
        end = folds.get(i)
        if end is not None and i not in unfold:
            run = packets[i:end + 1]
            for p in run:
                if isinstance(p.seg, Segment):
                    bases.see(p.seg, p.from_client)
            main, *extra = _pack(fold_summary(run), paint.inner - 4)
            lines.append(Line(paint.inside(main, run[0].ts - t0, run[0].ts - prev_ts, lead=f"{g['fold']} "),
                              "fold", i, end, i))
            for part in extra:
                lines.append(Line(paint.inside(part, lead="   "), "more", i, end, i))
            prev_ts = run[-1].ts
            i = end + 1
            continue
        if end is not None:
            text = f"{end - i + 1:,} packets unfolded"
            lines.append(Line(paint.inside(f"{g['unfold']} {text} " + g["dots"] * 6), "fold", i, end, i))
        p = packets[i]
        if isinstance(p.seg, Segment):
            bases.see(p.seg, p.from_client)
            to_server = p.from_client
        else:
            to_server = not p.from_client  # an ICMP error goes back to the quoted segment's sender
        label = packet_label(p, bases, absolute)
        text, rest = paint.arrow(p.ts - t0, p.ts - prev_ts, to_server, label)
        lines.append(Line(text, "packet", i, i))
        while rest:
            part, rest = _split(rest, paint.inner - 4)
            lines.append(Line(paint.inside(part, lead="   "), "more", i, i))
        if p.changed:
            c = NAMES[p.states[0]] if p.states[0] != states[0] else None
            s = NAMES[p.states[1]] if p.states[1] != states[1] else None
            lines.append(Line(paint.states(c, s), "states", i, i))
            states = p.states
        prev_ts = p.ts
        i += 1
    return lines


def start_text(first: float, origin: float | None = None) -> str:
    """When an incarnation started (its first packet): the capture's date and time in UTC, to the microsecond (as
    tcpdump -tttt writes it), and how far into the capture (as Wireshark's time column and the TUI's `g +SECONDS`
    count) when the capture's first packet time `origin` is known. Two incarnations of one tuple differ here."""
    whole = math.floor(first)
    micro = min(999_999, int(round((first - whole) * 1e6)))
    text = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(whole)) + f".{micro:06d}Z"
    if origin is not None:
        text += f" (+{max(0.0, first - origin):.6f} s into the capture)"
    return text


def wrap_title(parts: list[str], width: int = 80, lead: str = "# ", more: str = "#   ") -> list[str]:
    """Phrases joined with ', ' into lines of at most `width - 1` characters (a line ends where a phrase does not
    fit: the break parts them): the first after `lead`, the others after `more`. A phrase too long for a line is
    wrapped at its spaces (an address is never cut: the longest, an IPv6 endpoint, is 47 characters)."""
    lines: list[str] = []
    for part in parts:
        if lines and len(lines[-1]) + 2 + len(part) <= width - 1:
            lines[-1] += ", " + part
            continue
        room = width - 1 - len(lead if not lines else more)
        pieces = textwrap.wrap(part, width - 1 - len(more), break_on_hyphens=False) or [part]
        if len(pieces[0]) > room:  # (the first line's room is larger: the first piece may take more of it)
            pieces = textwrap.wrap(part, room, break_on_hyphens=False)
        for piece in pieces:
            lines.append((lead if not lines else more) + piece)
    return lines


def ladder_text(flow: Flow, width: int = 80, plain: bool = False, absolute: bool = False,
                row: ConnRow | None = None, origin: float | None = None) -> str:
    """The headless ladder: a title (the tuple, the connection's end as the tracker knew it, from `row`, and when it
    started: `origin` is the capture's first packet time), wrapped to `width`, then the diagram."""
    ref = flow.ref
    tuple_text = f"{format_endpoint(ref.c_addr, ref.c_port)} -> {format_endpoint(ref.s_addr, ref.s_port)}"
    if ref.vlan:
        tuple_text += " vlan " + ".".join(map(str, ref.vlan))
    parts = [tuple_text, f"{len(flow.packets):,} packets"]
    if row is not None:
        parts.append(f"{NAMES[row.cstate]}/{NAMES[row.sstate]}")
        if row.ended:
            parts.append(f"ended: {row.ended}")
    parts.append("started " + start_text(flow.packets[0].ts if flow.packets else ref.first, origin))
    body = [line.text for line in ladder(flow, width, plain, absolute)]
    return "\n".join([*wrap_title(parts, width), *body]) + "\n"
