"""The RFC 793 endpoint states, in the numeric order of the original mOS midstat, and their spellings."""

from __future__ import annotations

CLOSED = 0
LISTEN = 1
SYN_SENT = 2
SYN_RCVD = 3
ESTABLISHED = 4
FIN_WAIT_1 = 5
FIN_WAIT_2 = 6
CLOSE_WAIT = 7
CLOSING = 8
LAST_ACK = 9
TIME_WAIT = 10

NAMES = (
    "CLOSED", "LISTEN", "SYN_SENT", "SYN_RCVD", "ESTABLISHED", "FIN_WAIT_1", "FIN_WAIT_2",
    "CLOSE_WAIT", "CLOSING", "LAST_ACK", "TIME_WAIT",
)

# what `ss` prints for each state
SS_NAMES = (
    "CLOSED", "LISTEN", "SYN-SENT", "SYN-RECV", "ESTAB", "FIN-WAIT-1", "FIN-WAIT-2",
    "CLOSE-WAIT", "CLOSING", "LAST-ACK", "TIME-WAIT",
)

_BY_SPELLING: dict[str, int] = {}
for _value, (_name, _ss) in enumerate(zip(NAMES, SS_NAMES, strict=True)):
    for _spelling in (_name, _ss, _name.replace("_", "-"), _ss.replace("-", "_")):
        _BY_SPELLING[_spelling.upper()] = _value
_BY_SPELLING["SYN_RECV"] = SYN_RCVD
_BY_SPELLING["SYN-RCVD"] = SYN_RCVD
_BY_SPELLING["UNCONN"] = CLOSED


def parse_state(text: str) -> int:
    """A state from any of its spellings (`ESTABLISHED`, `estab`, `fin-wait-2`, `SYN-RECV`...)."""
    try:
        return _BY_SPELLING[text.strip().upper()]
    except KeyError:
        raise ValueError(f"unknown TCP state {text!r}") from None


# Which states count as what, for colours and for the idle timeouts
HANDSHAKE = frozenset({SYN_SENT, SYN_RCVD})
CLOSING_STATES = frozenset({FIN_WAIT_1, FIN_WAIT_2, CLOSE_WAIT, CLOSING, LAST_ACK, TIME_WAIT})

# Idle timeouts per state, in seconds, after Linux conntrack's defaults (nf_conntrack_tcp_timeout_*)
DEFAULT_IDLE_TIMEOUTS: dict[int, float] = {
    SYN_SENT: 120.0,
    SYN_RCVD: 60.0,
    ESTABLISHED: 432000.0,
    FIN_WAIT_1: 120.0,
    FIN_WAIT_2: 120.0,
    CLOSING: 120.0,
    CLOSE_WAIT: 60.0,
    LAST_ACK: 30.0,
    TIME_WAIT: 120.0,
    CLOSED: 10.0,
}
