"""The tracker never raises on arbitrary segment sequences, and its books always balance (hypothesis)."""

from __future__ import annotations

from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from midstat_tui.decode.segment import IcmpError, Segment
from midstat_tui.tcp.states import CLOSED, LISTEN, SYN_RCVD, SYN_SENT
from midstat_tui.tcp.tracker import END_REASONS, Tracker, TrackerConfig

HOSTS = [bytes([10, 0, 0, i]) for i in (1, 2, 3)]
PORTS = [80, 40000, 50000]
BASES = [0, 1000, 0xFFFFFF00]

packet = st.fixed_dictionaries({
    "dt": st.sampled_from([0.0, 0.001, 0.5, 5.0, 70.0, 200.0]),
    "src": st.integers(0, 2), "dst": st.integers(0, 2),
    "sport": st.sampled_from(PORTS), "dport": st.sampled_from(PORTS),
    "seq": st.tuples(st.sampled_from(BASES), st.integers(0, 3000)),
    "ack": st.tuples(st.sampled_from(BASES), st.integers(0, 3000)),
    "flags": st.integers(0, 63),
    "win": st.sampled_from([0, 1, 65535]),
    "payload": st.sampled_from([0, 0, 1, 100, 1460]),
    "csum": st.sampled_from([True, True, True, None, False]),
    "truncated": st.booleans(),
    "vlan": st.sampled_from([(), (), (7,)]),
    "icmp": st.integers(0, 20),
})


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(packets=st.lists(packet, max_size=80), max_conns=st.sampled_from([2, 5, 1000]))
def test_arbitrary_segments_keep_the_books_balanced(packets, max_conns):
    started = []
    ended = Counter()

    def on_event(kind, conn, change, states):
        if kind == "start":
            started.append(conn)
        elif kind == "end":
            ended[conn.id] += 1
        else:
            assert states is not None and change is not None

    tracker = Tracker(TrackerConfig(max_conns=max_conns), on_event=on_event)
    ts = 1000.0
    for p in packets:
        ts += p["dt"]
        if p["icmp"] == 0:
            tracker.icmp(IcmpError(ts, p["vlan"], HOSTS[p["src"]], HOSTS[p["dst"]], p["sport"], p["dport"],
                                   sum(p["seq"]) & 0xFFFFFFFF))
            continue
        seg = Segment(ts, p["vlan"], HOSTS[p["src"]], HOSTS[p["dst"]], p["sport"], p["dport"],
                      sum(p["seq"]) & 0xFFFFFFFF, sum(p["ack"]) & 0xFFFFFFFF, p["flags"], p["win"], p["payload"],
                      40 + p["payload"], 64, p["csum"], p["truncated"])
        tracker.segment(seg)
        assert len(tracker.table) <= max_conns
    tracker.advance(ts + 10 * 86400)

    stats = tracker.stats
    tracked = sum(c.c.packets + c.s.packets + c.bad_checksum for c in started)
    assert tracked + stats.untracked_bad_checksum == stats.segments
    assert stats.started == len(started)
    assert all(n == 1 for n in ended.values())  # a connection ends once
    assert stats.ended == len(ended)
    # the eviction pools hold exactly the table's ended and still-opening connections
    assert {k: c for k, c in tracker.table.items() if c.ended is not None} == tracker._ended
    opening = {k: c for k, c in tracker.table.items() if c.ended is None and (
        c.c.state in (CLOSED, SYN_SENT, SYN_RCVD) or c.s.state in (CLOSED, SYN_SENT, SYN_RCVD))}
    pool = {k: tracker.table[k] for k in tracker.core.handshakes if tracker._pooled(k)}
    assert opening == pool
    assert {k for k, c in tracker.table.items() if c.pooled} == set(pool)  # a pooled connection's key is there
    live_per_key = Counter(c.key for c in started if c.ended is None)
    assert all(n == 1 for n in live_per_key.values())  # at most one live incarnation per tuple
    for conn in started:
        assert conn.c.state != LISTEN and conn.s.state != LISTEN
        assert 0 <= conn.c.state <= 10 and 0 <= conn.s.state <= 10
        if tracker.table.get(conn.key) is not conn:
            assert conn.ended in END_REASONS  # whatever left the table ended first
        assert conn.c.retrans_bytes <= conn.c.payload and conn.s.retrans_bytes <= conn.s.payload
    # after ten days of silence everything has ended and left
    assert tracker.table == {}
    assert stats.ended == stats.started
