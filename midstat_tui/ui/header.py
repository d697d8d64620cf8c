"""The top of the main screen, every figure with its label: source, time and replay state (files: where in the
file, with a progress bar; live: capturing, paused or stopped, and the capture counters), traffic, connections,
what was not tracked, per-shard load, and two sparklines with their scale."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widget import Widget
from textual.widgets import Static

from midstat_tui.columns import human
from midstat_tui.timespec import offset_text, utc_text

BARS = "▁▂▃▄▅▆▇█"
PROGRESS_WIDTH = 30


def clock_text(ts: float | None) -> str:
    if ts is None:
        return "--"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


def progress_bar(done: float, width: int = PROGRESS_WIDTH) -> str:
    """`▕█████▌    ▏`: a share of 1, in eighths of a cell."""
    eighths = round(max(0.0, min(1.0, done)) * width * 8)
    full, part = divmod(eighths, 8)
    bar = "█" * full + ("▏▎▍▌▋▊▉"[part - 1] if part else "")
    return "▕" + bar.ljust(width) + "▏"


def spark_text(data: list[float], width: int) -> str:
    """Bars from zero to the largest value (so equal values are not a full-height wall), the newest on the right;
    when there are more points than cells, each cell shows the largest of its points."""
    if width <= 0:
        return ""
    if len(data) > width:
        step = len(data) / width
        data = [max(data[int(i * step):max(int(i * step) + 1, int((i + 1) * step))]) for i in range(width)]
    top = max(data, default=0)
    if top <= 0:
        return "▁" * len(data)
    return "".join(" " if v <= 0 else BARS[min(len(BARS) - 1, math.ceil(v / top * len(BARS)) - 1)] for v in data)


class Spark(Widget):
    """A sparkline of the last seconds, scaled from zero."""

    DEFAULT_CSS = "Spark { width: 1fr; height: 1; margin-right: 2; color: $accent; }"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.data: list[float] = []

    def set_data(self, data: list[float]) -> None:
        self.data = data
        self.refresh()

    def render(self) -> Text:
        if not self.data:
            return Text("no data yet", style="dim")
        return Text(spark_text(self.data, self.size.width).rjust(self.size.width))


@dataclass
class HeaderFacts:
    """Everything the header shows, gathered by the app from the session and the view."""

    source: str
    bpf: str | None = None
    live: bool = False
    position: float | None = None
    first: float | None = None          # the capture's first packet time (files)
    last: float | None = None           # its last, once known (files)
    speed: float = 1.0
    paused: bool = False                # files: the replay is paused; live: the view is frozen
    at_end: bool = False
    stopped: str | None = None          # why the capture (live) or the replay (every worker gone) stopped
    stats: dict = field(default_factory=dict)       # what the table shows
    counters: dict = field(default_factory=dict)    # the newest counters (live: they move while the view is frozen)
    rates: dict = field(default_factory=dict)
    shown: int = 0
    rows: int = 0
    show_load: bool = True
    spark_active: list = field(default_factory=list)
    spark_pps: list = field(default_factory=list)
    problems: int = 0                   # connections the problems lens flags (the badge; `p` lists them)


def mode_text(f: HeaderFacts) -> str:
    if f.live:
        if f.stopped:
            return "■ capture stopped"
        if f.paused:
            return "❚❚ PAUSED: the view is frozen, the capture goes on (Space resumes)"
        return "● live"
    if f.stopped:
        return "■ replay stopped"
    if f.at_end:
        return "■ end of the file"
    if f.paused:
        return "❚❚ PAUSED (Space plays, . steps)"
    return "▶ playing " + ("as fast as possible" if f.speed == 0 else f"at ×{f.speed:g}")


def place_text(f: HeaderFacts) -> str:
    """Files: where the replay is, against the whole capture; live: the capture's counters."""
    if f.live:
        capture = f.counters.get("capture") or {}
        return (f"capture: received {capture.get('received', 0):,} · dropped by the kernel "
                f"{capture.get('dropped', 0):,}, by the interface {capture.get('if_dropped', 0):,}")
    first = f.first
    if first is None:
        return "waiting for the first packet"
    if f.position is None:
        return "at the start, waiting for the first second to replay" + \
            (f" (the capture is {offset_text(f.last - first)} long)" if f.last is not None else "")
    at = f"at +{offset_text(f.position - first)}" if f.position >= first else \
        f"at {offset_text(first - f.position)} before the first packet"
    if f.last is None:
        return f"{at} (the capture's length is still being read)"
    duration = f.last - first
    done = 1.0 if duration <= 0 else (f.position - first) / duration
    return f"{at} of {offset_text(duration)} {progress_bar(done)} {max(0.0, min(1.0, done)) * 100:.0f}%"


def traffic_text(f: HeaderFacts) -> str:
    stats, rates = f.stats, f.rates
    parts = [
        f"{human(rates['pps'])} pkt/s {human(rates['bps'])}bit/s" if "pps" in rates else "-- pkt/s --bit/s",
        f"{stats.get('active', 0):,} open conn" + ("" if stats.get("active", 0) == 1 else "s"),
        f"{f.shown:,} of {f.rows:,} rows shown",
        f"new {rates['new_per_s']:.0f}/s ended {rates['ended_per_s']:.0f}/s" if "pps" in rates else
        "new --/s ended --/s",
    ]
    if stats.get("evicted"):
        parts.append(f"evicted {stats['evicted']:,}")
    ipfix = stats.get("ipfix")
    if ipfix is not None:
        parts.append(f"ipfix sent {ipfix.get('sent', 0):,} dropped {ipfix.get('dropped', 0):,}"
                     + (" (stopped: the replay went back)" if ipfix.get("stopped") else ""))
    if f.show_load and rates.get("load") and not (f.paused or f.at_end or f.stopped):
        parts.append("cpu per shard " + " ".join(f"{i}:{'dead' if x is None else f'{x * 100:.0f}%'}"
                                                 for i, x in enumerate(rates["load"])))
    return " · ".join(parts)


def untracked_text(stats: dict) -> str:
    """Packets midstat did not track, by kind, and the first hint; empty when there are none."""
    malformed = stats.get("malformed") or {}
    counts = (("bad checksum", stats.get("bad_checksum", 0)), ("non-TCP", stats.get("non_tcp", 0)),
              ("malformed", sum(malformed.values()) if isinstance(malformed, dict) else malformed))
    parts = [f"{name} {count:,}" for name, count in counts if count]
    text = ("not tracked: " + " · ".join(parts)) if parts else ""
    hints = stats.get("hints") or []
    if hints:
        text = f"{text} — {hints[0]}" if text else hints[0]
    return text


def problems_badge(count: int) -> str:
    """The header's badge: how many problems the lens finds (p opens it)."""
    return f" ⚠ {count:,} problem{'' if count == 1 else 's'} (p) "


def spark_label(name: str, data: list[float]) -> str:
    if not data:
        return name
    return f"{name} (last {len(data)} s, max {human(max(data))})"


class SummaryHeader(Vertical):
    DEFAULT_CSS = """
    SummaryHeader { height: auto; background: $panel; padding: 0 1; }
    SummaryHeader #summary-line1 { text-style: bold; text-wrap: nowrap; text-overflow: ellipsis; }
    SummaryHeader #summary-untracked { color: $warning; }
    SummaryHeader #summary-untracked.-empty { display: none; }
    SummaryHeader Horizontal { height: 1; }
    SummaryHeader .spark-label { width: auto; padding-right: 1; color: $text-muted; }
    """

    def compose(self) -> ComposeResult:
        yield Static(id="summary-line1")
        yield Static(id="summary-place")
        yield Static(id="summary-line2")
        yield Static(id="summary-untracked", classes="-empty")
        with Horizontal():
            yield Static("open conns", id="spark-active-label", classes="spark-label")
            yield Spark(id="spark-active")
            yield Static("pkt/s", id="spark-pps-label", classes="spark-label")
            yield Spark(id="spark-pps")

    def show(self, facts: HeaderFacts) -> None:
        f = facts
        name = f.source.rsplit("/", 1)[-1] + (f" [{f.bpf}]" if f.bpf else "")
        clock = utc_text(f.position) if f.position is not None else "--"
        line1 = Text(f"midstat {name} · {clock} · {mode_text(f)}")
        if f.problems:
            badge = problems_badge(f.problems)
            room = self.content_size.width or self.app.size.width - 2  # (before the first layout: the screen's)
            if room and len(line1) + 2 + len(badge) > room:
                # a narrow terminal (80 columns): the short badge, first, and the line's tail cut instead
                line1 = Text.assemble((f" ⚠ {f.problems:,} (p) ", "bold reverse yellow"), " ", line1)
            else:
                line1.append("  ")
                line1.append(badge, style="bold reverse yellow")
        self.query_one("#summary-line1", Static).update(line1)
        self.query_one("#summary-place", Static).update(Text(place_text(f)))
        self.query_one("#summary-line2", Static).update(Text(traffic_text(f)))
        untracked = self.query_one("#summary-untracked", Static)
        text = untracked_text(f.counters or f.stats)
        untracked.update(Text(text))
        untracked.set_class(not text, "-empty")
        active, pps = list(f.spark_active), list(f.spark_pps)
        self.query_one("#spark-active-label", Static).update(spark_label("open conns", active))
        self.query_one("#spark-pps-label", Static).update(spark_label("pkt/s", pps))
        self.query_one("#spark-active", Spark).set_data(active)
        self.query_one("#spark-pps", Spark).set_data(pps)
