"""The top of the main screen: source, capture time and replay state, rates, counts, drops, load, sparklines."""

from __future__ import annotations

import time

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Sparkline, Static

from midstat_tui.columns import human


def clock_text(ts: float | None) -> str:
    if ts is None:
        return "--"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


def short_clock(ts: float | None) -> str:
    if ts is None:
        return "--"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) + "Z"


class SummaryHeader(Vertical):
    DEFAULT_CSS = """
    SummaryHeader { height: auto; background: $panel; padding: 0 1; }
    SummaryHeader #summary-line1 { text-style: bold; }
    SummaryHeader Horizontal { height: 1; }
    SummaryHeader .spark-label { width: auto; padding-right: 1; color: $text-muted; }
    SummaryHeader Sparkline { width: 1fr; height: 1; margin-right: 2; }
    """

    def compose(self) -> ComposeResult:
        yield Static(id="summary-line1")
        yield Static(id="summary-line2")
        with Horizontal():
            yield Static("active", classes="spark-label")
            yield Sparkline([], id="spark-active", summary_function=max)
            yield Static("pkt/s", classes="spark-label")
            yield Sparkline([], id="spark-pps", summary_function=max)

    def show(self, *, source: str, bpf: str | None, live: bool, position: float | None, speed: float,
             paused: bool, at_end: bool, stats: dict, rates: dict, shown: int, frozen: bool, show_load: bool,
             spark_active: list,
             spark_pps: list) -> None:
        if live:
            mode = "live" + (" · FROZEN" if frozen else "")
        else:
            pace = "fast" if speed == 0 else f"×{speed:g}"
            mode = f"{pace} " + ("PAUSED" if paused else "end" if at_end else "▶")
        name = source.rsplit("/", 1)[-1] + (f" [{bpf}]" if bpf else "")
        self.query_one("#summary-line1", Static).update(f"midstat {name} · {short_clock(position)} · {mode}")
        capture = stats.get("capture") or {}
        drops = capture.get("dropped", 0) + capture.get("if_dropped", 0)
        parts = [
            f"{human(rates.get('pps', 0))}pkt/s {human(rates.get('bps', 0))}b/s",
            f"conns {stats.get('active', 0):,} (shown {shown:,})",
            f"+{rates.get('new_per_s', 0):.0f}/s -{rates.get('ended_per_s', 0):.0f}/s",
        ]
        if live:
            parts.append(f"drops {drops:,}")
        if stats.get("evicted"):
            parts.append(f"evicted {stats['evicted']:,}")
        if show_load and rates.get("load") and not (paused or at_end):
            parts.append("cpu " + " ".join(f"{i}:{x * 100:.0f}%" for i, x in enumerate(rates["load"])))
        self.query_one("#summary-line2", Static).update(" · ".join(parts))
        self.query_one("#spark-active", Sparkline).data = list(spark_active) or [0]
        self.query_one("#spark-pps", Sparkline).data = list(spark_pps) or [0]
