"""The TCP checksum test, shared by both decoders.

The one's-complement sum of 16-bit words is the value of the bytes, read as one big-endian number in base 2^16,
modulo 0xFFFF (because 2^16 = 1 mod 0xFFFF). A segment with a right checksum sums to 0xFFFF, that is to 0 modulo
0xFFFF; the only other way to get 0 would be all-zero bytes, which a pseudo-header with a protocol number cannot be.
Python's big integers do that in C, several times faster than summing an array of words.
"""

from __future__ import annotations


def checksum_ok(pseudo: bytes, segment: bytes) -> bool:
    data = pseudo + segment
    if len(data) & 1:
        data += b"\0"
    return int.from_bytes(data, "big") % 0xFFFF == 0
