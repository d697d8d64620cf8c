"""Zeek's view of a connection: the `history` letters and `conn_state`, kept beside midstat's own states.

Follows Zeek's definitions (scripts/base/protocols/conn/main.zeek and the TCP analyzer's endpoint states);
see docs/reference-agreement.md for where midstat's reading of a capture differs from Zeek's and why.
"""

from __future__ import annotations

import re

from midstat_tui.decode.segment import ACK, FIN, RST, SYN, Segment
from midstat_tui.tcp.connection import (
    Z_CLOSED,
    Z_ESTABLISHED,
    Z_INACTIVE,
    Z_PARTIAL,
    Z_RESET,
    Z_SYN_ACK_SENT,
    Z_SYN_SENT,
    Connection,
    Side,
)

HISTORY_LETTERS = {
    "s": "a SYN without the ACK bit",
    "h": "a SYN+ACK (handshake)",
    "a": "a pure ACK",
    "d": "a packet with payload (data)",
    "f": "a packet with FIN set",
    "r": "a packet with RST set",
    "c": "a packet with a bad checksum",
    "g": "a content gap",
    "t": "a packet with retransmitted payload",
    "w": "a packet advertising a zero window",
    "i": "an inconsistent packet (FIN+RST)",
    "q": "a multi-flag packet (SYN+FIN or SYN+RST)",
    "^": "the connection's direction was flipped (its first packet came from the responder)",
}

CONN_STATES = {
    "S0": "Connection attempt seen, no reply.",
    "S1": "Established, not terminated.",
    "SF": "Normal establishment and termination.",
    "REJ": "Connection attempt rejected.",
    "S2": "Established, originator attempted close, no reply from responder.",
    "S3": "Established, responder attempted close, no reply from originator.",
    "RSTO": "Established, originator aborted (sent a RST).",
    "RSTR": "Responder sent a RST.",
    "RSTOS0": "Originator sent a SYN followed by a RST, no SYN-ACK from the responder.",
    "RSTRH": "Responder sent a SYN ACK followed by a RST, no SYN from the originator.",
    "SH": "Originator sent a SYN followed by a FIN, no SYN ACK from the responder.",
    "SHR": "Responder sent a SYN ACK followed by a FIN, no SYN from the originator.",
    "OTH": "No SYN seen, just midstream traffic.",
}

_RSTOS0_HISTORY = re.compile(r"^\^?S[^HAFGIQ]*R")


def _add(conn: Connection, letter: str, is_orig: bool) -> None:
    conn.history += letter.upper() if is_orig else letter


def _once(conn: Connection, side: Side, letter: str, is_orig: bool) -> None:
    if letter not in side.z_once:
        side.z_once += letter
        _add(conn, letter, is_orig)


def _per_seq(conn: Connection, side: Side, letter: str, seq: int, is_orig: bool) -> None:
    slot = "z_" + letter
    if getattr(side, slot) != seq:
        setattr(side, slot, seq)
        _add(conn, letter, is_orig)


def _logarithmic(conn: Connection, side: Side, letter: str, is_orig: bool) -> None:
    counts = side.z_counts
    if counts is None:
        counts = side.z_counts = {}
    n = counts.get(letter, 0) + 1
    counts[letter] = n
    while n % 10 == 0:
        n //= 10
    if n == 1:  # 1, 10, 100, ...
        _add(conn, letter, is_orig)


def note_bad_checksum(conn: Connection, from_client: bool) -> None:
    _logarithmic(conn, conn.c if from_client else conn.s, "c", from_client)


def note_segment(conn: Connection, seg: Segment, from_client: bool, retransmitted: bool,
                 gaps: tuple[bool, bool], rst_obeyed: bool) -> None:
    """Record one (checksum-valid) segment in the Zeek history and endpoint states.

    `gaps`: whether the (client, server) side's content got a new gap with this packet; `rst_obeyed`: whether
    midstat's own state machine acted on the packet's RST (Zeek too ignores RSTs far outside the window)."""
    side = conn.c if from_client else conn.s
    peer = conn.s if from_client else conn.c
    flags = seg.flags
    syn, fin, rst, ack = flags & SYN, flags & FIN, flags & RST, flags & ACK
    length = seg.payload
    if syn:
        _per_seq(conn, side, "h" if ack else "s", seg.seq, from_client)
        if fin or rst:
            _once(conn, side, "q", from_client)
    if fin and rst:
        _once(conn, side, "i", from_client)
    if fin:
        _per_seq(conn, side, "f", seg.seq, from_client)
    if rst:
        _per_seq(conn, side, "r", seg.seq, from_client)
    if ack and not (syn or fin or rst) and length == 0:
        _once(conn, side, "a", from_client)
    if length:
        _once(conn, side, "d", from_client)
    if gaps[0]:
        _logarithmic(conn, conn.c, "g", True)
    if gaps[1]:
        _logarithmic(conn, conn.s, "g", False)
    if retransmitted:
        _logarithmic(conn, side, "t", from_client)
    if seg.win == 0 and not (syn or rst):
        _logarithmic(conn, side, "w", from_client)
    if rst and not rst_obeyed:
        flags &= ~RST
    _update_endpoint(conn, side, peer, flags, length, from_client)


def _set(side: Side, state: int) -> None:
    side.zprev = side.zstate
    side.zstate = state


def _update_endpoint(conn: Connection, side: Side, peer: Side, flags: int, length: int, is_orig: bool) -> None:
    """Zeek's endpoint state machine (INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET)."""
    syn, fin, rst, ack = flags & SYN, flags & FIN, flags & RST, flags & ACK
    state = side.zstate
    if state == Z_INACTIVE:
        if syn:
            if is_orig:
                _set(side, Z_SYN_ACK_SENT if ack else Z_SYN_SENT)
            else:
                if peer.zstate in (Z_SYN_SENT, Z_SYN_ACK_SENT):
                    _set(peer, Z_ESTABLISHED)
                _set(side, Z_ESTABLISHED)
        if fin:
            _set(side, Z_CLOSED)
        if rst:
            _set(side, Z_RESET)
        if side.zstate == Z_INACTIVE:
            if not is_orig and length == 0 and conn.c.zstate == Z_SYN_SENT:
                pass  # an early ACK of the initial SYN does not make a partial connection
            elif ack and peer.zstate == Z_ESTABLISHED:
                _set(side, Z_ESTABLISHED)
            else:
                _set(side, Z_PARTIAL)
    elif state in (Z_SYN_SENT, Z_SYN_ACK_SENT):
        if fin:
            _set(side, Z_CLOSED)
        if rst:
            _set(side, Z_RESET)
        elif not fin and ack and peer.zstate not in (Z_INACTIVE, Z_PARTIAL):
            _set(side, Z_ESTABLISHED)
    elif state in (Z_ESTABLISHED, Z_PARTIAL):
        if fin and not rst:
            _set(side, Z_CLOSED)
            if peer.zstate == Z_RESET and peer.zprev == Z_CLOSED:
                _set(peer, Z_CLOSED)  # the peer's FIN then RST was a normal close after all
        if rst:
            _set(side, Z_RESET)
    elif state == Z_CLOSED:
        # after a FIN exchange, a RST changes nothing
        if rst and peer.zstate != Z_CLOSED:
            _set(side, Z_RESET)


def conn_state(conn: Connection) -> str:
    """Zeek's conn_state from the two endpoint states (base/protocols/conn/main.zeek)."""
    o = conn.c.zstate
    r = conn.s.zstate
    o_inactive = o in (Z_INACTIVE, Z_PARTIAL)
    r_inactive = r in (Z_INACTIVE, Z_PARTIAL)
    if r == Z_RESET:
        if o in (Z_SYN_SENT, Z_SYN_ACK_SENT) or (o == Z_RESET and conn.c.payload == 0 and conn.s.payload == 0):
            return "REJ"
        if o_inactive:
            return "RSTRH"
        return "RSTR"
    if o == Z_RESET:
        if r_inactive:
            return "RSTOS0" if _RSTOS0_HISTORY.match(conn.history) else "OTH"
        return "RSTO"
    if o == Z_CLOSED and r == Z_CLOSED:
        return "SF"
    if o == Z_CLOSED:
        return "SH" if r_inactive else "S2"
    if r == Z_CLOSED:
        return "SHR" if o_inactive else "S3"
    if o == Z_SYN_SENT and r == Z_INACTIVE:
        return "S0"
    if o == Z_ESTABLISHED and r == Z_ESTABLISHED:
        return "S1"
    return "OTH"
