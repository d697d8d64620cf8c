"""The seam between a shard's tracker (tcp/tracker.py) and the compiled core's packet loop (`_core.run`).

The compiled loop sees nothing of the tracker but one `CoreState`: the structures both sides keep up, under
public names, and the figures the loop needs. docs/compiled-core.md says which side owns what.

The rules the loop applies to those structures (a live connection's deadline, what a change does to the handshake
pool and the timers, admitting a new connection, when the heap or the pool is due for tidying) are this module's
functions. The compiled engine uses the core's versions of them on both paths (`_core.live_deadline`,
`_core.schedule`, `_core.admit`, `_core.tidy_due`), the pure-Python engine these: like the state machine
(machine.py and the core's `apply`), they are written once per engine and held equal by the differential tests
(tests/unit/test_compiled_core.py, tests/unit/test_seam.py). No I/O, no clock.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable
from typing import Any

from midstat_tui.tcp.states import CLOSED, NAMES, SYN_RCVD, SYN_SENT, TIME_WAIT

TIMER_SLACK = 4096  # stale timer entries tolerated beyond half the table's size before the heap is rebuilt
POOL_SLACK = 4096   # stale handshake-pool entries tolerated beyond twice the table's size before it is rebuilt

TIDY_TIMERS = 1
TIDY_POOL = 2

_OPENING = (SYN_SENT, SYN_RCVD, CLOSED)


class CoreState:
    """What the compiled packet loop may read and write of one shard's tracker, and why. Nothing else.

    Written by both sides (the tracker replaces a structure only between calls of the loop):
      table       dict key -> Connection. The loop looks up each packet's connection; it inserts a new one for a
                  pure SYN on a free tuple (`admit`).
      timers      list heap of (deadline, key). The loop pushes an entry when a change brings a deadline
                  forward (`schedule`). Entries whose time is not their connection's deadline are stale.
      handshakes  deque of keys, oldest first: the connections whose handshake is incomplete (`conn.pooled`);
                  the eviction order's second class. The loop appends the key of each connection it admits.
      touched     set of changed connections, or None when no face keeps its own copy of the table: the loop
                  adds each connection it feeds.
      next_id     the last connection number handed out on this shard: the loop takes the next one.
    Read only by the loop:
      latest      the latest packet time seen: an earlier packet is the tracker's (it counts and re-dates it).
      events      an event sink is set: then every change, and every new connection, is the tracker's.
      max_conns   the table's bound: at it, the loop calls `make_room(ts)` (the eviction policy, in Python).
      shard, shard_count   a connection's id is next_id * shard_count + shard.
      tw_hold     how long a TIME_WAIT side is held (s); idle: the idle timeout of each state, by state number.
      timer_slack, pool_slack   the tidying thresholds (`tidy_due`).
    Called by the loop:
      make_room   make room for one connection in a full table (Tracker.evict_one).
    """

    __slots__ = ("table", "timers", "handshakes", "touched", "next_id", "latest", "events", "max_conns", "shard",
                 "shard_count", "tw_hold", "idle", "timer_slack", "pool_slack", "make_room")

    def __init__(self, max_conns: int, shard: int, shard_count: int, tw_hold: float,
                 idle_timeouts: dict[int, float], make_room: Callable[[float], None]) -> None:
        self.table: dict[bytes, Any] = {}
        self.timers: list[tuple[float, bytes]] = []
        self.handshakes: deque[bytes] = deque()
        self.touched: set | None = None
        self.next_id = 0
        self.latest = -math.inf
        self.events = False
        self.max_conns = max_conns
        self.shard = shard
        self.shard_count = shard_count
        self.tw_hold = float(tw_hold)
        self.idle = tuple(float(idle_timeouts.get(state, 0.0)) for state in range(len(NAMES)))
        self.timer_slack = TIMER_SLACK
        self.pool_slack = POOL_SLACK
        self.make_room = make_room

    def __getstate__(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state: dict) -> None:
        for name, value in state.items():
            setattr(self, name, value)


def in_handshake(conn: Any) -> bool:
    """Is either side short of ESTABLISHED (or beyond it) yet? Such entries are evicted before established ones."""
    return conn.c.state in _OPENING or conn.s.state in _OPENING


def _side_done(core: CoreState, conn: Any, side: Any) -> float:
    state = side.state
    if state == TIME_WAIT:
        return (side.tw_since or conn.last) + core.tw_hold
    if state == CLOSED:
        return 0.0
    return conn.last + core.idle[state]


def live_deadline(core: CoreState, conn: Any) -> float:
    """When a live connection is done: the later of its sides' (TIME_WAIT held, else idle for its state)."""
    return max(_side_done(core, conn, conn.c), _side_done(core, conn, conn.s))


def schedule(core: CoreState, conn: Any) -> bool:
    """After a packet moved a state of a live connection: True when both sides are CLOSED (the tracker ends it);
    else it leaves the handshake pool once both sides are past the handshake, and its timer is brought forward."""
    if conn.c.state == CLOSED and conn.s.state == CLOSED:
        return True
    if conn.pooled and not in_handshake(conn):
        conn.pooled = False  # its key in the pool is skipped when it comes up
    deadline = live_deadline(core, conn)
    if deadline < conn.deadline:
        conn.deadline = deadline
        heapq.heappush(core.timers, (deadline, conn.key))
    return False


def admit(core: CoreState, conn: Any) -> None:
    """A new connection joins the table (and the handshake pool while its handshake is incomplete). It has no
    timer entry yet: its first packet decides its deadline."""
    core.table[conn.key] = conn
    if in_handshake(conn):
        core.handshakes.append(conn.key)
        conn.pooled = True
    conn.deadline = math.inf


def tidy_due(core: CoreState) -> int:
    """Is the timer heap (1) or the handshake pool (2) due for dropping its stale entries (the sum: both)?
    The tracker tidies after admitting a connection; the compiled loop leaves a new connection to the tracker
    when it is due."""
    size = len(core.table)
    due = 0
    if len(core.timers) > size + (size >> 1) + core.timer_slack:
        due |= TIDY_TIMERS
    if len(core.handshakes) > 2 * size + core.pool_slack:
        due |= TIDY_POOL
    return due
