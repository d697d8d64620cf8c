#!/usr/bin/env python3
"""The memory a host-name map (engine/names.py NameMap) holds at its bound, measured with tracemalloc.

    python3 benchmarks/names_memory.py

Two fillings: the worst case (every map at its bound, each key holding as many entries as it keeps, every entry a
distinct 37-character name and a distinct client: what a DNS flood of random names would make), and a typical mix
(65,536 connections, each named by a DNS answer to its client and by its own SNI, 500 clients, 3,000 server
addresses, 2,000 names).
"""

from __future__ import annotations

import gc
import random
import sys
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from midstat_tui.engine.names import NAMES_BOUND, PER_ADDRESS, PER_CONN, PER_PAIR, NameMap  # noqa: E402


def _measure(fill) -> tuple[float, NameMap]:
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    known = fill()
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return used / 1e6, known


def worst() -> NameMap:
    known = NameMap()
    for i in range(NAMES_BOUND * 2):  # twice the bound: the maps stay at it
        addr = f"192.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
        for j in range(max(PER_ADDRESS, PER_PAIR, PER_CONN)):
            client = f"10.{j}.{i >> 8 & 255}.{i & 255}"
            known.learn_dns(float(i * 10 + j), client, addr, f"h{i:06}-{j}.some-long-cdn-name.example.com")
            known.learn_conn(float(i * 10 + j), "10.99.0.1", 40000 + i % 20000, addr, 443,
                             f"s{i:06}-{j}.some-long-cdn-name.example.com")
    return known


def typical() -> NameMap:
    known = NameMap()
    rng = random.Random(1)
    names = [f"svc{k}.example.com" for k in range(2000)]
    addrs = [f"198.51.{k >> 8}.{k & 255}" for k in range(3000)]
    for i in range(65536):
        client = f"10.0.{rng.randrange(2)}.{rng.randrange(250)}"
        addr = rng.choice(addrs)
        name = names[addrs.index(addr) % 2000]
        known.learn_dns(float(i), client, addr, name)
        known.learn_conn(float(i) + 0.1, client, 30000 + i % 30000, addr, 443, name)
    return known


def main() -> int:
    for label, fill in (("worst case", worst), ("typical mix", typical)):
        mb, known = _measure(fill)
        print(f"{label}: {mb:.1f} MB ({len(known._addr):,} addresses, {len(known._pair):,} pairs, "
              f"{len(known._conn):,} connections)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
