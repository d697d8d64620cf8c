"""The two endpoint state machines, rule by rule (docs: ../shared/docs/two-sided-tcp.md), in both directions."""

from __future__ import annotations

import pytest

from midstat_tui.tcp import zeek
from midstat_tui.tcp.connection import HISTORY_CAP
from midstat_tui.tcp.tracker import TIMER_SLACK, Tracker, TrackerConfig
from tests.flows import Flow

E, C = "ESTABLISHED", "CLOSED"


def test_canonical_sequence_client_closes_first():
    f = Flow()
    assert f.c("S") == ("SYN_SENT", C)
    assert f.s("SA") == (E, "SYN_RCVD")
    assert f.c("A") == (E, E)
    assert f.c("PA", 100) == (E, E)
    assert f.s("PA", 300) == (E, E)
    assert f.c("FA") == ("FIN_WAIT_1", "CLOSE_WAIT")
    assert f.s("A") == ("FIN_WAIT_2", "CLOSE_WAIT")
    assert f.s("FA") == ("TIME_WAIT", "LAST_ACK")
    assert f.c("A") == ("TIME_WAIT", C)
    assert f.conn.ended is None  # the client holds TIME_WAIT
    assert zeek.conn_state(f.conn) == "SF"
    assert f.conn.history == "ShADdFaf"


def test_canonical_sequence_server_closes_first():
    f = Flow()
    f.handshake()
    assert f.s("FA") == ("CLOSE_WAIT", "FIN_WAIT_1")
    assert f.c("A") == ("CLOSE_WAIT", "FIN_WAIT_2")
    assert f.c("FA") == ("LAST_ACK", "TIME_WAIT")
    assert f.s("A") == (C, "TIME_WAIT")


@pytest.mark.parametrize("closer", [0, 1])
def test_fin_that_acks_the_peers_fin_moves_the_receiver_twice(closer):
    """FIN_WAIT_1 -> FIN_WAIT_2 -> TIME_WAIT on one packet: the ACK field is processed before the FIN."""
    f = Flow()
    f.handshake()
    f.send(closer, "FA")
    states = f.send(1 - closer, "FA")  # acks the FIN and carries its own
    assert states[closer] == "TIME_WAIT" and states[1 - closer] == "LAST_ACK"
    moves = [(t[1], t[2], t[3]) for t in f.conn.transitions[-2:]]
    assert moves[-1][0] == closer


def test_syn_rcvd_to_established_to_close_wait_on_one_packet():
    f = Flow()
    f.c("S")
    f.s("SA")
    assert f.c("FA") == ("FIN_WAIT_1", "CLOSE_WAIT")
    names = [(t[2], t[3]) for t in f.conn.transitions if t[1] == 1]
    assert names == [(0, 3), (3, 4), (4, 7)]  # CLOSED->SYN_RCVD, SYN_RCVD->ESTABLISHED, ->CLOSE_WAIT


@pytest.mark.parametrize("by", [0, 1])
def test_acceptable_rst_closes_both_sides(by):
    f = Flow()
    f.handshake()
    f.send(by, "PA", 10)
    assert f.send(by, "R") == (C, C)
    assert f.conn.ended == "reset"
    assert f.conn.rst_by == ("client", "server")[by]
    assert zeek.conn_state(f.conn) == ("RSTO", "RSTR")[by]


@pytest.mark.parametrize("by", [0, 1])
def test_rst_with_the_last_acked_sequence_is_accepted(by):
    """An RST may carry the sequence number the peer last acknowledged (rcv_nxt as the peer saw it)."""
    f = Flow()
    f.handshake()
    acked = f.nxt[by]
    f.send(by, "PA", 100)  # in flight, not yet acknowledged
    assert f.send(by, "R", seq=acked) == (C, C)


@pytest.mark.parametrize("by", [0, 1])
def test_out_of_window_rst_is_suspicious_and_not_obeyed(by):
    f = Flow()
    f.handshake()
    before = f.states
    assert f.send(by, "R", seq=f.nxt[by] + 50000) == before
    assert f.conn.suspicious_rst == 1
    assert f.tracker.stats.suspicious_rst == 1
    assert f.conn.ended is None


def test_rst_one_below_in_close_wait_is_accepted():
    f = Flow()
    f.handshake()
    f.c("FA")  # server CLOSE_WAIT
    assert f.c("R", seq=f.nxt[0] - 1) == (C, C)


def test_refused_connection():
    f = Flow()
    f.c("S")
    assert f.s("RA", seq=0) == (C, C)
    assert f.conn.ended == "reset"
    assert zeek.conn_state(f.conn) == "REJ"
    assert f.conn.history == "Sr"


def test_rst_in_syn_sent_must_ack_the_syn():
    f = Flow()
    f.c("S")
    assert f.s("RA", seq=0, ack=12345) == ("SYN_SENT", C)  # wrong ack: dropped by a real stack
    assert f.s("R", seq=0) == ("SYN_SENT", C)  # no ACK bit: dropped
    assert f.conn.suspicious_rst == 2


def test_unanswered_syn_times_out():
    f = Flow()
    assert f.c("S") == ("SYN_SENT", C)
    assert zeek.conn_state(f.conn) == "S0"
    f.advance(119)
    assert f.conn.ended is None
    f.advance(2)
    assert f.conn.ended == "idle_timeout"


def test_retransmitted_syn_and_synack_cause_no_transition():
    f = Flow()
    f.c("S")
    f.c("S", seq=1000)
    assert f.conn.c.retrans == 1
    f.s("SA")
    f.s("SA", seq=5000)
    assert f.conn.s.retrans == 1
    assert [t[3] for t in f.conn.transitions].count(2) == 1  # one SYN_SENT
    assert f.c("A") == (E, E)


def test_simultaneous_open():
    f = Flow()
    assert f.c("S") == ("SYN_SENT", C)
    assert f.s("S") == ("SYN_RCVD", "SYN_RCVD")
    assert f.c("SA", seq=1000) == ("SYN_RCVD", E)
    assert f.conn.c.retrans == 0  # a SYN/ACK after its own SYN is not a retransmission
    assert f.s("SA", seq=5000) == (E, E)


@pytest.mark.parametrize("first", [0, 1])
def test_crossing_fins_go_through_closing(first):
    f = Flow()
    f.handshake()
    peer_nxt = f.nxt[1 - first]
    f.send(first, "FA")
    # the other side's FIN was sent before the first FIN arrived: it does not ack it
    states = f.send(1 - first, "FA", ack=f.nxt[first] - 1)
    assert states == ("CLOSING", "CLOSING")
    assert peer_nxt + 1 == f.nxt[1 - first]
    f.send(first, "A")
    states = f.send(1 - first, "A")
    assert states == ("TIME_WAIT", "TIME_WAIT")


def test_retransmitted_fin_still_acks_the_peers_fin():
    f = Flow()
    f.handshake()
    f.c("FA")
    f.s("FA", ack=f.nxt[0] - 1)  # server FIN crossing: CLOSING / CLOSING
    fin_seq = f.nxt[1] - 1
    # the server retransmits its FIN, now acknowledging the client's: the client's FIN is acked
    assert f.s("FA", seq=fin_seq) == ("TIME_WAIT", "CLOSING")
    assert f.conn.s.retrans == 1


@pytest.mark.parametrize("first", [0, 1])
def test_crossing_fins_lost_before_the_capture_point_still_go_through_closing(first):
    """Both FINs crossed and were lost before the capture point; their retransmissions did not cross.

    The first side's retransmitted FIN reaches the other, which answers with an ACK whose sequence number is already
    past its own unseen FIN; that FIN's late copy acknowledges the peer's FIN, yet was sent before it arrived.
    """
    f = Flow()
    f.handshake()
    other = 1 - first
    unseen_fin = f.nxt[other]
    f.send(first, "FA")  # the first FIN the capture holds (a retransmission)
    states = f.send(other, "A", seq=unseen_fin + 1)  # its ACK counts its own FIN, never seen here
    assert states[first] == "FIN_WAIT_2"
    states = f.send(other, "FA", seq=unseen_fin)  # the late copy of that FIN
    assert states[first] == "TIME_WAIT" and states[other] == "CLOSING"
    states = f.send(first, "A")
    assert states == ("TIME_WAIT", "TIME_WAIT")


def test_fin_after_acking_the_peers_fin_is_last_ack():
    """The converse: the ACK of the peer's FIN came before this side's FIN was sent, so it is a passive close."""
    f = Flow()
    f.handshake()
    f.c("FA")
    f.s("A")
    assert f.s("FA") == ("TIME_WAIT", "LAST_ACK")


def test_half_close_keeps_fin_wait_2_and_close_wait_while_data_flows():
    f = Flow()
    f.handshake()
    f.c("FA")
    f.s("A")
    for _ in range(5):
        assert f.s("PA", 1000) == ("FIN_WAIT_2", "CLOSE_WAIT")
        assert f.c("A") == ("FIN_WAIT_2", "CLOSE_WAIT")
    assert f.conn.s.payload == 5000


def test_one_way_capture_client_side_only():
    f = Flow()
    f.c("S")
    assert f.c("A", ack=5001) == (E, E)
    assert f.c("PA", 100, ack=5001) == (E, E)
    assert f.c("FA", ack=5001) == ("FIN_WAIT_1", "CLOSE_WAIT")


def test_icmp_unreachable_aborts_a_handshake_only():
    f = Flow()
    f.c("S")
    assert f.icmp_about(0) == (C, C)
    assert f.conn.ended == "closed"
    g = Flow()
    g.handshake()
    assert g.icmp_about(0) == (E, E)
    h = Flow()
    h.c("S")
    assert h.icmp_about(0, seq=999) == ("SYN_SENT", C)  # quotes another segment


def test_port_reuse_after_time_wait_starts_a_new_incarnation():
    f = Flow()
    f.handshake()
    f.c("FA")
    f.s("FA")
    f.c("A")
    old = f.conn
    assert f.states == ("TIME_WAIT", C)
    f.isn[0] = 1000 + 30000
    assert f.c("S", seq=1000 + 30000) == ("SYN_SENT", C)
    assert f.conn is not old
    assert old.ended == "port_reuse"
    assert f.tracker.stats.started == 2


def test_new_syn_against_an_established_peer_is_not_reuse():
    f = Flow()
    f.handshake()
    old = f.conn
    f.c("S", seq=99999)
    assert f.conn is old and old.ended is None and f.states == (E, E)


def test_crossing_syn_after_an_abort_is_not_a_new_attempt():
    f = Flow()
    f.c("S")
    f.s("RA", seq=0)
    f.c("S", seq=1000, dt=0.001)  # retransmission in flight while the RST travelled
    assert f.tracker.stats.started == 1
    f.c("S", seq=1000, dt=1.0)    # a second later: the client tries again (as Windows does)
    assert f.tracker.stats.started == 2


@pytest.mark.parametrize(
    ("client", "server", "first_sender_is_client"),
    [
        (("10.0.0.1", 40000), ("10.0.0.2", 443), True),    # well-known port is the server
        (("10.0.0.1", 40000), ("10.0.0.2", 443), False),
        (("10.0.0.1", 50000), ("10.0.0.2", 8080), True),   # ephemeral facing non-ephemeral
        (("10.0.0.1", 50000), ("10.0.0.2", 8080), False),
    ],
)
def test_midstream_pickup_guesses_roles(client, server, first_sender_is_client):
    f = Flow(client=client, server=server)
    f.send(0 if first_sender_is_client else 1, "PA", 100)
    conn = f.conn
    assert conn.midstream
    assert (conn.c_port, conn.s_port) == (client[1], server[1])
    assert f.states == (E, E)
    assert zeek.conn_state(conn) == "OTH"


def test_midstream_first_sender_is_client_when_nothing_else_tells():
    f = Flow(client=("10.0.0.1", 5000), server=("10.0.0.2", 6000))
    f.s("PA", 10)
    assert f.conn.c_port == 6000


def test_midstream_synack_receiver_is_the_client():
    f = Flow(client=("10.0.0.1", 80), server=("10.0.0.2", 50000))  # ports would say otherwise
    f.s("SA", ack=1001)
    assert f.conn.c_port == 80
    assert f.states == (E, "SYN_RCVD")
    assert f.c("A") == (E, E)
    assert f.conn.history.startswith("^h")


def test_midstream_fin_goes_further():
    f = Flow()
    assert f.c("FA") == ("FIN_WAIT_1", "CLOSE_WAIT")


def test_late_packets_of_an_ended_connection_linger_on_it():
    f = Flow()
    f.c("S")
    f.s("RA", seq=0)
    old = f.conn
    f.c("A", dt=1.0)
    assert f.conn is old and f.tracker.stats.started == 1
    assert old.c.packets == 2
    f.advance(61)
    assert old.key not in f.tracker.table  # the linger is over
    f.c("A")
    assert f.tracker.stats.started == 2 and f.conn.midstream


def test_syn_during_linger_starts_a_new_connection():
    f = Flow()
    f.handshake()
    f.c("R")
    f.isn[0] = 77777
    f.c("S", seq=77777, dt=2.0)
    assert f.tracker.stats.started == 2
    assert f.states == ("SYN_SENT", C)


def test_bad_checksum_is_counted_and_changes_nothing():
    f = Flow()
    f.handshake()
    f.c("FA", csum_ok=False)
    assert f.states == (E, E)
    assert f.conn.bad_checksum == 1 and f.tracker.stats.bad_checksum == 1
    assert f.conn.history.endswith("C")


def test_time_wait_is_held_then_the_connection_ends():
    f = Flow(config=TrackerConfig(time_wait=60.0))
    f.handshake()
    f.c("FA")
    f.s("FA")
    f.c("A")
    f.advance(59)
    assert f.conn.ended is None
    f.advance(2)
    assert f.conn.ended == "time_wait_expired"


def test_idle_timeout_follows_the_state():
    f = Flow(config=TrackerConfig(idle_timeouts={4: 100.0, 7: 5.0, 6: 5.0, 2: 1.0, 3: 1.0}))
    f.handshake()
    f.advance(99)
    assert f.conn.ended is None
    f.c("FA")
    f.s("A")  # FIN_WAIT_2 / CLOSE_WAIT: 5 s
    f.advance(6)
    assert f.conn.ended == "idle_timeout"


def test_table_bound_evicts_ended_then_half_open_before_established():
    f = Flow(config=TrackerConfig(max_conns=3))
    tracker = f.tracker
    est = Flow(tracker=tracker, client=("10.0.0.5", 40001))
    est.handshake()
    half = Flow(tracker=tracker, client=("10.0.0.6", 40002))
    half.c("S")
    done = Flow(tracker=tracker, client=("10.0.0.7", 40003))
    done.c("S")
    done.s("RA", seq=0)
    newcomer = Flow(tracker=tracker, client=("10.0.0.8", 40004))
    newcomer.c("S")
    assert done.conn.key not in tracker.table  # ended first
    assert tracker.stats.evicted == 0
    another = Flow(tracker=tracker, client=("10.0.0.9", 40005))
    another.c("S")
    assert half.conn.ended == "evicted"  # then the oldest handshake
    assert est.conn.ended is None
    assert tracker.stats.evicted == 1 and len(tracker.table) == 3


def test_a_syn_flood_never_evicts_established_connections_older_than_it():
    """More established connections than the eviction sample sit at the front of the table; a flood of handshakes
    from random sources then overflows it: only half-open entries go (conntrack's early drop spares assured ones)."""
    tracker = Tracker(TrackerConfig(max_conns=200))
    established = []
    for i in range(150):
        f = Flow(tracker, client=(f"10.1.{i // 250}.{i % 250 + 1}", 40000 + i))
        f.handshake()
        established.append(f.conn)
    for i in range(5000):
        Flow(tracker, client=(f"172.16.{i // 250}.{i % 250 + 1}", 1024 + i)).c("S")
    assert len(tracker.table) == 200
    assert all(conn.ended is None and tracker.table.get(conn.key) is conn for conn in established)
    assert tracker.stats.evicted == 5000 - 50
    assert tracker.stats.end_reasons["evicted"] == tracker.stats.evicted


def test_evicted_connections_do_not_stay_behind_in_the_timer_heap():
    """A flood evicts thousands of entries long before their timers are due; the heap must not keep them all."""
    tracker = Tracker(TrackerConfig(max_conns=100))
    for i in range(3 * TIMER_SLACK):
        Flow(tracker, client=(f"172.16.{i // 250 % 250}.{i % 250 + 1}", 1024 + i % 60000)).c("S")
        assert len(tracker.core.timers) <= 1.5 * len(tracker.table) + TIMER_SLACK + 1
    assert len(tracker.table) == 100
    tracker.advance(tracker.now + 1e6)
    assert not tracker.table and tracker.stats.ended == tracker.stats.started


def test_state_history_is_bounded():
    """Each incarnation's machines can only move forward, but the record is capped anyway (defence in depth):
    the first HISTORY_HEAD entries (the handshake) stay, the oldest of the rest go, and the loss is counted."""
    f = Flow()
    f.handshake()
    head = list(f.conn.transitions)
    for i in range(HISTORY_CAP * 3):
        f.conn.record(2000.0 + i, 0, 4, 4, 0, 0x10, i, 0, 0)
    assert len(f.conn.transitions) == HISTORY_CAP
    assert f.conn.transitions[: len(head)] == head
    assert f.conn.transitions[-1][6] == HISTORY_CAP * 3 - 1
    assert f.conn.transitions_dropped == len(head) + HISTORY_CAP * 3 - HISTORY_CAP


def test_events_carry_the_states_right_after_each_transition():
    f = Flow()
    f.handshake()
    f.c("FA")
    f.s("FA")  # one packet, two transitions: server LAST_ACK then client TIME_WAIT
    kinds = [e[0] for e in f.events]
    assert kinds[0] == "start"
    last_two = [e[3] for e in f.events[-2:]]
    assert last_two == [(6, 9), (10, 9)]  # (FIN_WAIT_2, LAST_ACK) then (TIME_WAIT, LAST_ACK)


def test_retransmissions_and_out_of_order_are_counted():
    f = Flow()
    f.handshake()
    base = f.nxt[0]
    f.c("PA", 100)
    f.c("PA", 100, seq=base, dt=0.5)  # the same bytes again, later: a retransmission
    assert (f.conn.c.retrans, f.conn.c.retrans_bytes) == (1, 100)
    f.c("PA", 100, seq=base + 200, dt=0.0005)  # a hole
    f.c("PA", 100, seq=base + 100, dt=0.0005)  # filled right away: out of order
    assert f.conn.c.ooo == 1 and f.conn.c.retrans == 1


def test_zero_window_is_counted():
    f = Flow()
    f.handshake()
    f.s("A", win=0)
    assert f.conn.s.zero_win == 1 and "w" in f.conn.history


def test_handshake_rtt_legs():
    f = Flow()
    f.c("S")
    f.s("SA", dt=0.030)
    f.c("A", dt=0.010)
    assert f.conn.rtt_server == pytest.approx(0.030)
    assert f.conn.rtt_client == pytest.approx(0.010)


def test_sequence_numbers_wrap_around():
    f = Flow(isn=(0xFFFFFF00, 5000))
    f.handshake()
    for _ in range(4):
        f.c("PA", 100)
        f.s("A")
    assert f.nxt[0] < 0x1000  # crossed 2^32
    assert f.conn.c.retrans == 0
    assert f.c("FA") == ("FIN_WAIT_1", "CLOSE_WAIT")
    assert f.s("FA") == ("TIME_WAIT", "LAST_ACK")


def test_vlan_is_part_of_the_key():
    tracker = Flow().tracker
    a = Flow(tracker=tracker, vlan=(10,))
    b = Flow(tracker=tracker, vlan=(20,))
    a.handshake()
    b.c("S")
    assert a.conn is not b.conn
    assert a.states == (E, E) and b.states == ("SYN_SENT", C)
