"""The records the decoder hands to the tracker. Plain slotted classes: no I/O, no behaviour."""

from __future__ import annotations

# TCP flag bits
FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10
URG = 0x20
ECE = 0x40
CWR = 0x80

_FLAG_LETTERS = ((FIN, "F"), (SYN, "S"), (RST, "R"), (PSH, "P"), (ACK, "."), (URG, "U"), (ECE, "E"), (CWR, "W"))


def flags_text(flags: int) -> str:
    """tcpdump's rendering of TCP flags: `S`, `S.`, `.`, `P.`, `F.`, `R`, `R.`, `none`."""
    text = "".join(letter for bit, letter in _FLAG_LETTERS if flags & bit)
    return text or "none"


class _Record:
    """Field-wise equality and a readable repr for the slotted records below."""

    __slots__ = ()

    def fields(self) -> tuple:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.fields() == other.fields()  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__) + ")"


class Segment(_Record):
    """One TCP segment as seen on the wire.

    `src`/`dst` are packed addresses (4 or 16 bytes); `vlan` is the tuple of VLAN ids, outermost first.
    `ip_len` is the IP-layer size (IPv4 total length, IPv6 40 + payload length), as conntrack and Zeek count it.
    `payload` is the TCP payload length from the headers (even when the capture truncated the bytes).
    `csum_ok` is True/False when the checksum could be checked, None when it could not (truncated or not asked).
    `truncated` is True when the capture holds less of the payload than the headers announce (snap length).
    `mac` is the sender's link-layer address where the link layer has one (Ethernet, Linux cooked), else b"".
    """

    __slots__ = (
        "ts", "vlan", "src", "dst", "sport", "dport", "seq", "ack", "flags", "win",
        "payload", "ip_len", "ttl", "csum_ok", "truncated", "mac",
    )

    def __init__(
        self,
        ts: float,
        vlan: tuple[int, ...],
        src: bytes,
        dst: bytes,
        sport: int,
        dport: int,
        seq: int,
        ack: int,
        flags: int,
        win: int,
        payload: int,
        ip_len: int,
        ttl: int = 0,
        csum_ok: bool | None = None,
        truncated: bool = False,
        mac: bytes = b"",
    ) -> None:
        self.ts = ts
        self.vlan = vlan
        self.src = src
        self.dst = dst
        self.sport = sport
        self.dport = dport
        self.seq = seq
        self.ack = ack
        self.flags = flags
        self.win = win
        self.payload = payload
        self.ip_len = ip_len
        self.ttl = ttl
        self.csum_ok = csum_ok
        self.truncated = truncated  # the capture holds less payload than the headers announce
        self.mac = mac


class IcmpError(_Record):
    """An ICMP/ICMPv6 destination-unreachable that quotes the start of a TCP segment.

    The addresses and ports are those of the quoted (offending) segment, i.e. as sent by the host it is about.
    """

    __slots__ = ("ts", "vlan", "src", "dst", "sport", "dport", "seq")

    def __init__(self, ts: float, vlan: tuple[int, ...], src: bytes, dst: bytes, sport: int, dport: int,
                 seq: int) -> None:
        self.ts = ts
        self.vlan = vlan
        self.src = src
        self.dst = dst
        self.sport = sport
        self.dport = dport
        self.seq = seq
