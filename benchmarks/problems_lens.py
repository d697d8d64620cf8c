#!/usr/bin/env python3
"""UI-thread cost of the problems lens at 100k and 1M connections (headless App.run_test, as tui_refresh.py), and the
cost of the headless report (`--problems`) over as many rows.

    python3 benchmarks/problems_lens.py [--sizes 100000 1000000] [--ticks 7]

The rows are made up with a mix of problems: 70% established and clean, then connections stuck in CLOSE_WAIT or
FIN_WAIT_2, unanswered SYNs, retransmissions, zero windows, resets, one-way flows and closed ones; 1% of the rows
change each tick. Prints the median per tick of: the main screen with the header's badge; the lens screen open
(detection, counts, the 500 oldest problems listed with their sentence); the table filtered with
`problem close_wait`; and, once, applying that filter, and `problems.report` over every row (what --problems does
at the end of a capture).
Target (issue #12): a refresh within 250 ms at 1M rows.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.tui_refresh import BenchSession  # noqa: E402
from midstat_tui.engine.records import ConnRow  # noqa: E402
from midstat_tui.problems import report  # noqa: E402
from midstat_tui.ui.app import MidstatApp  # noqa: E402
from midstat_tui.ui.conn_table import ConnTable  # noqa: E402
from midstat_tui.ui.problems_screen import ProblemsScreen  # noqa: E402


class LensSession(BenchSession):
    """Rows with the facts the lens reads filled in, a few per cent of each kind of problem."""

    def _row(self, i: int) -> ConnRow:
        rng = self.rng
        now = self.position
        c = bytes((10, i >> 16 & 255, i >> 8 & 255, i & 255))
        s = bytes((192, 168, rng.randrange(256), rng.randrange(256)))
        first = now - rng.random() * 3600
        last = now - rng.random() * 30
        pick = rng.random()
        cstate, sstate, zeek, rst_by, ended, end_ts = 4, 4, "S1", None, None, None
        since_c = since_s = first + 0.01
        zw_c = None
        retrans = 0
        pkts_s2c = 1 + rng.randrange(1000)
        if pick < 0.70:
            pass
        elif pick < 0.78:
            cstate, sstate = 6, 7                       # the server never closed
            since_c = since_s = now - rng.random() * 120
        elif pick < 0.83:
            cstate, sstate, pkts_s2c, zeek = 2, 0, 0, "S0"   # a SYN with no answer
            first = last = now - rng.random() * 10
        elif pick < 0.88:
            retrans = rng.randrange(1, 50_000)
        elif pick < 0.91:
            zw_c = now - rng.random() * 10
        elif pick < 0.93:
            cstate, sstate, zeek, rst_by, ended = 0, 0, "RSTO", "client", "reset"
            end_ts = last
        elif pick < 0.95:
            pkts_s2c = 0                                # one way
        else:
            cstate, sstate, zeek, ended = 10, 0, "SF", "closed"
            end_ts = last
        return ConnRow(i, 0, c, 1024 + i % 60000, s, rng.choice((80, 443, 22, 8080)), (), cstate, sstate, first,
                       last, 1 + rng.randrange(1000), pkts_s2c, rng.randrange(10**6), rng.randrange(10**7), 0, 0, 0,
                       rng.random() / 10, zeek, "ShAD", False, ended, 0, 500_000, 5_000_000, retrans, 0, 0, 0, 0, 0,
                       None, None, rst_by, 0, 0, 0, 0, end_ts, 4, since_c, since_s, zw_c, None, last, last, last,
                       last)


async def measure(count: int, ticks: int) -> dict[str, float]:
    app = MidstatApp(LensSession(count), interval=None, show_load=False)  # type: ignore[arg-type]
    out: dict[str, list[float]] = {"badge": [], "lens": [], "filtered": []}
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.query_one(ConnTable)
        session = app.session

        async def tick(extra=None) -> float:
            session.prepare()  # type: ignore[attr-defined]
            start = time.process_time()
            app.tick()
            if extra is not None:
                extra()
            else:
                for y in range(table.size.height):
                    table.render_line(y)
            took = time.process_time() - start
            await pilot.pause()
            return took

        for _ in range(ticks):
            out["badge"].append(await tick())
        await pilot.press("p")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, ProblemsScreen)
        for _ in range(ticks):
            out["lens"].append(await tick(screen.refresh_lens))
        await pilot.press("escape")
        await pilot.pause()
        session.prepare()  # type: ignore[attr-defined]  # the tick's changes are the engine's work, made beforehand
        start = time.process_time()
        app.view.set_query("problem close_wait")
        app.tick()
        new_filter = time.process_time() - start
        for _ in range(ticks):
            out["filtered"].append(await tick())
        rows = list(app.view.rows.values())
        start = time.process_time()
        rep = report(rows, app.view.now)
        headless = time.process_time() - start
        found = sum(rep.counts.values())
    return {**{k: statistics.median(v) for k, v in out.items()}, "new_filter": new_filter, "report": headless,
            "found": found}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--ticks", type=int, default=7)
    args = parser.parse_args()
    print(f"{'connections':>12} {'tick + badge':>13} {'tick + lens':>12} {'tick, problem filter':>21} "
          f"{'new problem filter':>19} {'--problems report':>18} {'problems':>9}   (ms of CPU, medians)")
    for count in args.sizes:
        r = asyncio.run(measure(count, args.ticks))
        print(f"{count:>12,} {r['badge'] * 1000:>13.1f} {r['lens'] * 1000:>12.1f} {r['filtered'] * 1000:>21.1f} "
              f"{r['new_filter'] * 1000:>19.1f} {r['report'] * 1000:>18.1f} {int(r['found']):>9,}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
