"""The TCP checksum test, shared by both decoders.

The one's-complement sum of 16-bit words is the value of the bytes, read as one big-endian number in base 2^16,
modulo 0xFFFF (because 2^16 = 1 mod 0xFFFF). A segment with a right checksum sums to 0xFFFF, that is to 0 modulo
0xFFFF; the only other way to get 0 would be all-zero bytes, which a pseudo-header with a protocol number cannot be.
Python's big integers do that in C, several times faster than summing an array of words.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass


def checksum_ok(pseudo: bytes, segment: bytes) -> bool:
    data = pseudo + segment
    if len(data) & 1:
        data += b"\0"
    return int.from_bytes(data, "big") % 0xFFFF == 0


MODES = ("auto", "verify", "ignore")


class EverySource(frozenset):
    """Every address: on a virtual link no stack fills checksums in, whoever sent the packet."""

    def __contains__(self, item: object) -> bool:
        return True


EVERY_SOURCE = EverySource()


@dataclass(frozen=True)
class ChecksumPolicy:
    """How TCP checksums are judged.

    `verify`: a segment whose checksum does not verify is counted and not tracked. `ignore`: checksums are not
    computed. `auto` (the default): verify, except that the segments sent from the capturing host's own addresses
    (`host`, read from the kernel while a live capture opens; none for a file) are tracked whatever their checksum
    says: a host with transmit checksum offload hands them to the capture before the hardware fills it in. They
    are counted as `offloaded`. On a virtual link (`virtual_link`: veth, bridge, tun, `any`: a link to other stacks
    of the same machine, containers and namespaces) no stack fills checksums in, whichever sends: every segment with
    an unfilled checksum is taken that way. `interface` and `tx_offload` (the interface's tx-checksumming, None
    when unknown) only word the hints."""

    mode: str = "auto"
    host: tuple[bytes, ...] = ()
    interface: str | None = None
    tx_offload: bool | None = None
    virtual_link: bool = False

    @property
    def verify(self) -> bool:
        return self.mode != "ignore"

    @property
    def offload_sources(self) -> frozenset[bytes]:
        """The sources whose bad checksums are offloaded ones, not damage."""
        if self.mode != "auto":
            return frozenset()
        return EVERY_SOURCE if self.virtual_link else frozenset(self.host)

    def describe(self) -> dict:
        """For the stats: the mode, the host's addresses as text, the interface's offload feature."""
        return {"mode": self.mode, "host": [address_text(a) for a in self.host], "interface": self.interface,
                "tx_offload": self.tx_offload, "virtual_link": self.virtual_link}


def address_text(address: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET if len(address) == 4 else socket.AF_INET6, address)
