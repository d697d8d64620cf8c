"""The two endpoint state machines of one connection, driven by one segment at a time.

Pure: `apply_segment` reads the segment and the connection and mutates only the connection. The rules are those of
docs/two-sided-tcp.md (RFC 793 seen from the middle, checked against Linux): for every packet the sender's side is
updated first, then the receiver's; on the receiving side the ACK field is processed before the FIN.
"""

from __future__ import annotations

from midstat_tui.decode.segment import ACK, FIN, RST, SYN, Segment
from midstat_tui.tcp.connection import CLIENT, SERVER, Connection, Side
from midstat_tui.tcp.states import (
    CLOSE_WAIT,
    CLOSED,
    CLOSING,
    ESTABLISHED,
    FIN_WAIT_1,
    FIN_WAIT_2,
    LAST_ACK,
    SYN_RCVD,
    SYN_SENT,
    TIME_WAIT,
)

MASK = 0xFFFFFFFF
HALF = 0x80000000

# Below this gap since the previous data segment, a segment that fills a hole counts as out-of-order, not as a
# retransmission (Wireshark's default reorder threshold when no handshake RTT is known).
REORDER_THRESHOLD = 0.003


def seq_lt(a: int, b: int) -> bool:
    """a < b in 32-bit sequence space."""
    return ((a - b) & MASK) >= HALF


def seq_geq(a: int, b: int) -> bool:
    return ((a - b) & MASK) < HALF


def _covers(ack: int, fin_seq: int | None) -> bool:
    """Does ACK number `ack` acknowledge the FIN at `fin_seq`?"""
    return fin_seq is not None and seq_geq(ack, (fin_seq + 1) & MASK)


def rst_acceptable(sender: Side, receiver: Side, seg: Segment) -> bool:
    """Would the receiver's stack act on this RST? (RFC 793 in SYN_SENT, RFC 5961 elsewhere, as Linux does.)"""
    if receiver.state == SYN_SENT:
        # only an RST that acknowledges our SYN counts
        return bool(seg.flags & ACK) and receiver.isn is not None and seg.ack == (receiver.isn + 1) & MASK
    if receiver.state == CLOSED:
        return True  # no socket there to protect: the RST can only be the sender's own abort
    expected = sender.snd_nxt
    acked = receiver.rcv_ack
    if expected is None and acked is None:
        return True  # nothing seen from the sender yet (mid-stream pickup): no way to check, accept
    seq = seg.seq
    if seq in (expected, acked):
        return True
    if receiver.state in (CLOSE_WAIT, LAST_ACK, CLOSING):
        # the peer's FIN consumed one sequence number; Linux also accepts an RST at the FIN's own number
        return (expected is not None and seq == (expected - 1) & MASK) or (
            acked is not None and seq == (acked - 1) & MASK)
    return False


def _track_content(sender: Side, receiver: Side, seg: Segment, seq_end: int) -> None:
    """Content gaps, as a reassembler sees them: bytes the peer acknowledged that the capture never held
    (lost before the capture point, or cut off by the snap length)."""
    seq = seg.seq
    flags = seg.flags
    delivered = sender.delivered
    if delivered is None or (flags & SYN and delivered == seq):
        delivered = (seq + 1) & MASK if flags & SYN else seq
    if seg.payload and not seg.truncated and not seq_lt(delivered, seq) and seq_lt(delivered, seq_end):
        delivered = (seq_end - 1) & MASK if flags & FIN else seq_end
    fin_seq = sender.fin_seq
    if fin_seq is None and flags & FIN:
        fin_seq = (seq_end - 1) & MASK
    if fin_seq is not None and delivered == fin_seq:
        delivered = (fin_seq + 1) & MASK  # the FIN itself, once every byte before it was seen
    sender.delivered = delivered
    if flags & ACK and not flags & RST and receiver.delivered is not None:
        missing = (seg.ack - receiver.delivered) & MASK
        if 0 < missing < HALF:
            receiver.gaps += 1
            receiver.missed += missing
            receiver.delivered = seg.ack


def apply_segment(conn: Connection, seg: Segment, from_client: bool) -> list[tuple]:
    """Update `conn` with one segment; return the state transitions it caused (already recorded on `conn`)."""
    if from_client:
        sender, receiver, s_idx, r_idx, direction = conn.c, conn.s, CLIENT, SERVER, 0
    else:
        sender, receiver, s_idx, r_idx, direction = conn.s, conn.c, SERVER, CLIENT, 1
    ts = seg.ts
    flags = seg.flags
    syn = flags & SYN
    fin = flags & FIN
    rst = flags & RST
    has_ack = flags & ACK
    seq = seg.seq
    ack = seg.ack
    length = seg.payload
    changes: list[tuple] = []

    def move(side: Side, index: int, new: int) -> None:
        old = side.state
        if old != new:
            side.state = new
            side.since = ts
            if new == TIME_WAIT:
                side.tw_since = ts
            changes.append(conn.record(ts, index, old, new, direction, flags, seq, ack, length))

    # -- counters, sequence bookkeeping, retransmissions --------------------------------------------------------
    sender.packets += 1
    sender.ip_bytes += seg.ip_len
    sender.payload += length
    sender.last_ts = ts
    if seg.win == 0:
        if not (syn or fin or rst):
            sender.zero_win += 1
            if sender.zw_since is None:
                sender.zw_since = ts
    elif not rst:
        sender.zw_since = None
    seq_end = (seq + length + (1 if syn else 0) + (1 if fin else 0)) & MASK
    expected = sender.snd_nxt  # before this packet: what RST acceptance is judged against
    if length and expected is not None and not rst:
        if seq_lt(seq, expected):
            if sender.gap_open and ts - sender.last_data_ts < REORDER_THRESHOLD:
                sender.ooo += 1
            else:
                sender.retrans += 1
                overlap = (expected - seq) & MASK
                sender.retrans_bytes += overlap if overlap < length else length
            if not seq_lt(seq_end, expected):
                sender.gap_open = False
        elif seq_lt(expected, seq):
            sender.gap_open = True
    if length:
        sender.last_data_ts = ts
    if not rst:
        sender.ttl = seg.ttl
        sender.mac = seg.mac
    if not rst and (expected is None or seq_lt(expected, seq_end)):
        sender.snd_nxt = seq_end
    if has_ack and (sender.rcv_ack is None or seq_lt(sender.rcv_ack, ack)):
        sender.rcv_ack = ack
        if sender.fin_ack_seq is None and _covers(ack, receiver.fin_seq):
            sender.fin_ack_seq = seq
    _track_content(sender, receiver, seg, seq_end)

    # -- RST: both sides close, if the receiver's stack would accept it ----------------------------------------
    if rst:
        # An RST with another TTL or source MAC than the sender's own packets came from elsewhere on the path:
        # a possible injection (a firewall, an IDS, an attacker). Flagged whether or not it is accepted.
        if sender.ttl is not None and (seg.ttl != sender.ttl or (seg.mac and sender.mac and seg.mac != sender.mac)):
            conn.odd_rst += 1
        # judged against what the sender had sent before this packet
        saved = sender.snd_nxt
        sender.snd_nxt = expected
        accepted = rst_acceptable(sender, receiver, seg)
        sender.snd_nxt = saved
        if not accepted:
            conn.suspicious_rst += 1
            # kept in the state history (from = to: the receiver's state did not change), so the flow's timeline
            # shows the reset its stack ignored; not a change: no event
            conn.record(ts, r_idx, receiver.state, receiver.state, direction, flags, seq, ack, length)
            return changes
        if sender.state != CLOSED or receiver.state != CLOSED:
            conn.rst_by = "client" if from_client else "server"
        move(sender, s_idx, CLOSED)
        move(receiver, r_idx, CLOSED)
        return changes

    # -- the sender's side ------------------------------------------------------------------------------------
    new_fin = False
    if fin:
        fin_pos = (seq + length + (1 if syn else 0)) & MASK
        if sender.fin_seq is None:
            sender.fin_seq = fin_pos
            new_fin = True
        elif fin_pos == sender.fin_seq:
            sender.retrans += 1  # a retransmitted FIN: no new transition, but its ACK field still counts

    if syn:
        if not has_ack:
            if sender.state == CLOSED:
                sender.isn = seq
                move(sender, s_idx, SYN_SENT)
                if receiver.state == SYN_SENT:
                    # simultaneous open: our SYN crossed the peer's, which reaches us after we sent ours
                    move(sender, s_idx, SYN_RCVD)
            elif sender.state in (SYN_SENT, SYN_RCVD) and seq == sender.isn:
                sender.retrans += 1
        else:
            first_synack = not sender.synack_sent
            sender.synack_sent = True
            if sender.state in (CLOSED, SYN_SENT):
                if sender.isn is None:
                    sender.isn = seq
                move(sender, s_idx, SYN_RCVD)
            elif seq == sender.isn and not (first_synack and sender.state == SYN_RCVD):
                sender.retrans += 1
    elif sender.state == SYN_SENT and (has_ack or fin):
        # one-way capture: the handshake's answer was never seen, yet the SYN's sender goes on
        move(sender, s_idx, ESTABLISHED)
        if receiver.state == CLOSED and receiver.packets == 0:
            move(receiver, r_idx, ESTABLISHED)

    if new_fin:
        state = sender.state
        if state in (ESTABLISHED, SYN_RCVD):
            move(sender, s_idx, FIN_WAIT_1)
        elif state == CLOSE_WAIT:
            # Sent before the peer's FIN arrived (crossing FINs): it was FIN_WAIT_1, the peer's FIN then came.
            # Either this FIN does not acknowledge the peer's, or it is a late copy of a FIN that an earlier
            # packet, the first to acknowledge the peer's FIN, had already counted (its sequence number was
            # past this FIN's: the original crossed the peer's and was lost before the capture point).
            first_ack = sender.fin_ack_seq
            sent_before = first_ack is not None and seq_lt(fin_pos, first_ack)
            if has_ack and _covers(ack, receiver.fin_seq) and not sent_before:
                move(sender, s_idx, LAST_ACK)
            else:
                move(sender, s_idx, CLOSING)

    # -- the receiver's side: ACK field first, then SYN, then FIN ---------------------------------------------
    if has_ack:
        state = receiver.state
        if state == SYN_SENT:
            if syn and receiver.isn is not None and ack == (receiver.isn + 1) & MASK:
                move(receiver, r_idx, ESTABLISHED)
        elif state == SYN_RCVD:
            if receiver.isn is not None and seq_geq(ack, (receiver.isn + 1) & MASK):
                move(receiver, r_idx, ESTABLISHED)
        elif state == FIN_WAIT_1:
            if _covers(ack, receiver.fin_seq):
                move(receiver, r_idx, FIN_WAIT_2)
        elif state == CLOSING:
            if _covers(ack, receiver.fin_seq):
                move(receiver, r_idx, TIME_WAIT)
        elif state == LAST_ACK:
            if _covers(ack, receiver.fin_seq):
                move(receiver, r_idx, CLOSED)
    elif syn and receiver.state == SYN_SENT:
        move(receiver, r_idx, SYN_RCVD)  # simultaneous open: a bare SYN reaches a SYN_SENT side

    if new_fin:
        state = receiver.state
        if state in (ESTABLISHED, SYN_RCVD):
            move(receiver, r_idx, CLOSE_WAIT)
        elif state == FIN_WAIT_1:
            move(receiver, r_idx, CLOSING)
        elif state == FIN_WAIT_2:
            move(receiver, r_idx, TIME_WAIT)

    # -- handshake RTT legs ---------------------------------------------------------------------------------
    if syn:
        if from_client and not has_ack:
            if conn.synack_ts is None:
                conn.syn_ts = ts
        elif not from_client and has_ack and conn.synack_ts is None and conn.c.isn is not None \
                and ack == (conn.c.isn + 1) & MASK:
            conn.synack_ts = ts
            if conn.syn_ts is not None:
                conn.rtt_server = ts - conn.syn_ts
    elif from_client and has_ack and conn.rtt_client is None and conn.synack_ts is not None \
            and conn.s.isn is not None and ack == (conn.s.isn + 1) & MASK:
        conn.rtt_client = ts - conn.synack_ts
    return changes


def apply_icmp_unreachable(conn: Connection, from_client: bool, quoted_seq: int, ts: float) -> list[tuple]:
    """An ICMP destination-unreachable quoting a side's SYN aborts that side's handshake (as Linux does)."""
    index = CLIENT if from_client else SERVER
    side = conn.side(index)
    if side.state not in (SYN_SENT, SYN_RCVD) or side.isn is None or quoted_seq != side.isn:
        return []
    old = side.state
    side.state = CLOSED
    side.since = ts
    return [conn.record(ts, index, old, CLOSED, 1 - index, -1, quoted_seq, 0, 0)]  # flags -1: ICMP
