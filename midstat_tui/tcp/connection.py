"""What midstat knows about one connection: two endpoint records and the connection-wide facts.

Two implementations with the same attributes: the compiled one (midstat_tui/_core.c, C structs: about half the
memory) when the extension is built, and the pure-Python reference below (slotted classes). `Side` and `Connection`
name the one in use; MIDSTAT_PURE_PYTHON=1 in the environment picks the pure-Python engine.
"""

from __future__ import annotations

import os
import struct

from midstat_tui.tcp.states import CLOSED, NAMES

CLIENT = 0
SERVER = 1
SIDE_NAMES = ("client", "server")
DIR_NAMES = ("c2s", "s2c")

# How many state transitions one connection keeps. The first HISTORY_HEAD (the handshake) are always kept;
# past the cap the oldest of the rest are dropped and counted in `Connection.transitions_dropped`.
HISTORY_CAP = 64
HISTORY_HEAD = 8
# One transition, packed: ts, side, from, to, direction, flags (-1: an ICMP error), seq, ack, payload length.
TRANSITION = struct.Struct("<dBBBBhIII")

# Zeek endpoint states (scripts/base/init-bare.zeek)
Z_INACTIVE, Z_SYN_SENT, Z_SYN_ACK_SENT, Z_PARTIAL, Z_ESTABLISHED, Z_CLOSED, Z_RESET = range(7)


class PySide:
    """One endpoint of a connection, as inferred from the packets it sent and received."""

    __slots__ = (
        "state", "isn", "fin_seq", "fin_ack_seq", "snd_nxt", "rcv_ack", "tw_since",
        "packets", "ip_bytes", "payload", "retrans_bytes", "retrans", "ooo", "zero_win", "gap_open",
        "last_data_ts", "delivered", "gaps", "missed", "synack_sent", "ttl", "mac",
        "zstate", "zprev", "z_once", "z_s", "z_h", "z_f", "z_r", "z_counts",
        "since", "zw_since", "last_ts",
    )

    def __init__(self, state: int = CLOSED) -> None:
        self.state = state
        self.isn: int | None = None        # initial sequence number of this side's SYN
        self.fin_seq: int | None = None    # sequence number of this side's FIN
        self.fin_ack_seq: int | None = None  # sequence number of its first packet that acknowledged the peer's FIN
        self.snd_nxt: int | None = None    # highest sequence number sent + 1 (SYN and FIN count one)
        self.rcv_ack: int | None = None    # highest ACK number this side sent
        self.tw_since: float | None = None  # when this side entered TIME_WAIT
        self.packets = 0
        self.ip_bytes = 0
        self.payload = 0
        self.retrans_bytes = 0
        self.retrans = 0                   # segments carrying retransmitted payload (or a repeated SYN/FIN)
        self.ooo = 0                       # out-of-order segments
        self.zero_win = 0                  # zero-window advertisements
        self.gap_open = False              # a segment jumped ahead of snd_nxt and the hole is not filled yet
        self.last_data_ts = 0.0
        self.delivered: int | None = None  # sequence number up to which this side's bytes were all captured
        self.gaps = 0                      # content gaps: the peer acknowledged bytes the capture never held
        self.missed = 0                    # bytes in those gaps (Zeek's missed_bytes)
        self.synack_sent = False           # has it sent a SYN/ACK (simultaneous-open bookkeeping)
        self.ttl: int | None = None        # IP TTL / hop limit of its last packet that was not an RST
        self.mac = b""                     # and that packet's source link-layer address
        self.zstate = Z_INACTIVE           # Zeek's endpoint state, for conn_state
        self.zprev = Z_INACTIVE            # and the one before it
        self.z_once = ""                   # Zeek history letters recorded once per direction
        # the sequence number of the last packet recorded under each repeatable Zeek letter
        self.z_s: int | None = None
        self.z_h: int | None = None
        self.z_f: int | None = None
        self.z_r: int | None = None
        self.z_counts: dict[str, int] | None = None  # counts of logarithmic letters (c g t w)
        # for the problems lens (midstat_tui/problems.py)
        self.since = 0.0                   # when this side entered its current state (0.0: never moved)
        self.zw_since: float | None = None  # since when it advertises a zero window (None: its window is open)
        self.last_ts = 0.0                 # when it last sent a packet


class PyConnection:
    """One TCP connection (one incarnation of a 4-tuple + VLAN)."""

    __slots__ = (
        "id", "shard", "key", "vlan", "c_addr", "c_port", "s_addr", "s_port",
        "c", "s", "first", "last", "midstream", "flipped", "ended", "end_ts",
        "rst_by", "syn_ts", "synack_ts", "rtt_server", "rtt_client",
        "history", "_log", "transitions_dropped", "suspicious_rst", "odd_rst", "bad_flags", "bad_checksum",
        "deadline", "pooled",
    )

    def __init__(self, conn_id: int, shard: int, key: bytes, vlan: tuple[int, ...],
                 c_addr: bytes, c_port: int, s_addr: bytes, s_port: int, ts: float) -> None:
        self.id = conn_id
        self.shard = shard
        self.key = key
        self.vlan = vlan
        self.c_addr = c_addr
        self.c_port = c_port
        self.s_addr = s_addr
        self.s_port = s_port
        self.c = PySide()
        self.s = PySide()
        self.first = ts
        self.last = ts
        self.midstream = False
        self.flipped = False                # first packet came from the server side (Zeek's '^')
        self.ended: str | None = None       # end reason once the connection has ended
        self.end_ts: float | None = None
        self.rst_by: str | None = None      # 'client' or 'server'
        self.syn_ts: float | None = None
        self.synack_ts: float | None = None
        self.rtt_server: float | None = None  # middlebox -> server -> middlebox (SYN to SYN/ACK), seconds
        self.rtt_client: float | None = None  # middlebox -> client -> middlebox (SYN/ACK to ACK), seconds
        self.history = ""                   # Zeek history string
        self._log: bytearray | None = None  # the state history, packed TRANSITION records
        self.transitions_dropped = 0
        self.suspicious_rst = 0   # RSTs the receiver's stack would ignore (out of window: blind or stale)
        self.odd_rst = 0          # RSTs whose TTL or source MAC differs from the sender's other packets
        self.bad_flags = 0        # segments with a flag combination no stack sends (tracker.bogus_flags)
        self.bad_checksum = 0
        self.deadline = 0.0                 # when the timer wheel should look at this connection next
        self.pooled = False                 # in the tracker's pool of incomplete handshakes (evicted first)

    # -- views --------------------------------------------------------------------------------------------------
    def side(self, index: int) -> PySide:
        return self.c if index == CLIENT else self.s

    @property
    def client_state(self) -> str:
        return NAMES[self.c.state]

    @property
    def server_state(self) -> str:
        return NAMES[self.s.state]

    @property
    def transitions_kept(self) -> int:
        """How many transitions the state history holds (`transitions_dropped` more were dropped past the cap)."""
        return len(self._log) // TRANSITION.size if self._log else 0

    @property
    def transitions(self) -> list[tuple]:
        """The state history: (ts, side, from, to, dir, flags, seq, ack, len) per transition, oldest first."""
        return list(TRANSITION.iter_unpack(self._log)) if self._log else []

    def record(self, ts: float, side: int, old: int, new: int, direction: int, flags: int, seq: int,
               ack: int, length: int) -> tuple:
        entry = (ts, side, old, new, direction, flags, seq, ack, length)
        log = self._log
        if log is None:
            log = self._log = bytearray()
        elif len(log) >= HISTORY_CAP * TRANSITION.size:
            start = HISTORY_HEAD * TRANSITION.size
            del log[start:start + TRANSITION.size]
            self.transitions_dropped += 1
        log += TRANSITION.pack(*entry)
        return entry


try:
    from midstat_tui import _core
except ImportError:  # no compiler where it was installed: the pure-Python engine
    _core = None

COMPILED_AVAILABLE = _core is not None
COMPILED = COMPILED_AVAILABLE and os.environ.get("MIDSTAT_PURE_PYTHON", "") not in ("1", "yes", "true")
Side = _core.Side if COMPILED else PySide
Connection = _core.Connection if COMPILED else PyConnection


def engine_name() -> str:
    """Which engine runs: what `midstat --version` reports."""
    if COMPILED:
        return "compiled core"
    if COMPILED_AVAILABLE:
        return "pure-Python engine: MIDSTAT_PURE_PYTHON is set"
    return "pure-Python engine: the compiled core was not built"


def engine_notice() -> str | None:
    """What a run says once on stderr when the compiled core could not be built (None when it runs, or when the
    pure-Python engine was asked for)."""
    if COMPILED_AVAILABLE:
        return None
    return ("the compiled core was not built, so the pure-Python engine runs (same results, about 10 times slower); "
            "to get it, install gcc and the Python headers (Debian: apt-get install gcc python3-dev) and reinstall "
            "midstat (README: Set-up)")
