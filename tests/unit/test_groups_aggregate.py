"""engine.groups.aggregate against a plain count, row by row: with few rows of no group (counted over the whole
columns) and with most rows outside any group (gathered first), mid-stream and ended rows among them."""

from __future__ import annotations

import numpy as np
import pytest

from midstat_tui.engine.groups import CLOSING_, HANDSHAKE_, OPEN, RESET, aggregate, categorize


@pytest.mark.parametrize("outside", [0.05, 0.9])
def test_aggregate_counts_what_a_loop_counts(outside):
    rng = np.random.default_rng(12)
    rows, size = 20_000, 300
    codes = rng.integers(0, size, rows)
    codes[rng.random(rows) < outside] = size  # rows of no group
    cstate, sstate = rng.integers(0, 11, rows), rng.integers(0, 11, rows)
    reset, ended, midstream = rng.random(rows) < 0.1, rng.random(rows) < 0.2, rng.random(rows) < 0.05
    traffic = {k: rng.integers(0, 10_000, rows).astype(np.float64)
               for k in ("pkts_c2s", "pkts_s2c", "bytes_c2s", "bytes_s2c")}
    rates = (rng.random(rows) * 100, rng.random(rows) * 100)
    category, marks = categorize(cstate, sstate, reset, ended, midstream)
    table = aggregate("server", codes, [f"g{i}" for i in range(size)],
                      {**traffic, "category": category, "marks": marks}, rates, sort=False)
    expected: dict[int, dict] = {}
    for i in range(rows):
        code = int(codes[i])
        if code == size:
            continue
        e = expected.setdefault(code, dict.fromkeys(("connections", "open", "handshake", "closing", "reset",
                                                     "midstream", "ended", "packets_c2s", "bytes_s2c", "rate_s2c"), 0))
        e["connections"] += 1
        kind = {OPEN: "open", HANDSHAKE_: "handshake", CLOSING_: "closing", RESET: "reset"}.get(int(category[i]))
        if kind:
            e[kind] += 1
        e["midstream"] += bool(midstream[i])
        e["ended"] += bool(ended[i])
        e["packets_c2s"] += int(traffic["pkts_c2s"][i])
        e["bytes_s2c"] += int(traffic["bytes_s2c"][i])
        e["rate_s2c"] += float(rates[1][i])
    assert sorted(table.codes.tolist()) == sorted(expected)
    for index, code in enumerate(table.codes.tolist()):
        for field, value in expected[code].items():
            assert table.value(field, index) == pytest.approx(value), (code, field)
