"""The shard hash: which of `count` shards owns a connection, the same for both directions of it.

`shard_of` hashes the last two bytes of each address and both ports of a connection key (engine.placement finds the
key, as the tracker does, and calls it; the compiled core has the same hash). The hash XORs those four values, so it
is the same for both directions, then spreads that 16-bit value with a multiplicative (Fibonacci) step before taking
it modulo the shard count: Linux gives connect() even ports, and a plain XOR would put every such flow of a host
pair on one shard.

`share_filter` writes the same hash as a BPF expression for the plain packet shapes (IPv4, IPv6 without extension
headers, untagged or under one or two VLAN tags, and the ICMP errors that quote a TCP segment): live, each shard's
capture handle uses it as a pre-filter in the kernel, so the plain packets of other shards are never copied to it;
what none of those forms can place reaches every shard, and its decoded key decides.
"""

from __future__ import annotations

_MULTIPLIER = 40503  # 2^16 / golden ratio


def shard_of(src: bytes, sport: int, dst: bytes, dport: int, count: int) -> int:
    """The shard of a connection key's addresses and ports."""
    mixed = int.from_bytes(src[-2:], "big") ^ int.from_bytes(dst[-2:], "big") ^ sport ^ dport
    return (((mixed * _MULTIPLIER) >> 16) & 0xFFFF) % count


def _forms(hashed: str) -> list[str]:
    """Each placeable packet shape, with `hashed` a template taking the four hash bytes."""
    v4 = f"(ip and tcp and ip[6:2] & 0x1fff = 0 and {hashed.format('ip[14:2]', 'ip[18:2]', 'tcp[0:2]', 'tcp[2:2]')})"
    v6 = f"(ip6 and ip6[6] = 6 and {hashed.format('ip6[22:2]', 'ip6[38:2]', 'ip6[40:2]', 'ip6[42:2]')})"
    icmp4 = ("(icmp and icmp[0] = 3 and icmp[8] = 0x45 and icmp[17] = 6 and "
             f"{hashed.format('icmp[22:2]', 'icmp[26:2]', 'icmp[28:2]', 'icmp[30:2]')})")
    icmp6 = ("(ip6 and ip6[6] = 58 and ip6[40] = 1 and ip6[54] = 6 and "
             f"{hashed.format('ip6[70:2]', 'ip6[86:2]', 'ip6[88:2]', 'ip6[90:2]')})")
    return [v4, v6, icmp4, icmp6]


_TAGGED = "(ether[12:2] = 0x8100 or ether[12:2] = 0x88a8 or ether[12:2] = 0x9100)"

# link header bytes before the network layer, for the links without Ethernet's (the `vlan` keyword moves Ethernet's)
LINK_HEADERS = {0: 4, 108: 4, 12: 0, 14: 0, 101: 0, 113: 16, 276: 20}


def _too_short(header: int) -> str:
    """The frames too short for a load the forms make, their network layer `header` bytes in. A BPF load past the
    end of a frame rejects it at once, whatever the `or`s after it say: without this, every handle would drop a
    frame cut short inside its IP or TCP header (which one core counts as malformed). Each load is guarded by a
    length test before it (BPF evaluates `and`/`or` in order)."""
    ihl = "((ip[0] & 0xf) << 2)"
    return (f"len < {header + 1} or (ip and (len < {header + 20} or len < {header + 4} + {ihl} "
            f"or (ip[9] = 1 and len < {header + 32} + {ihl}))) "
            f"or (ip6 and (len < {header + 44} or (ip6[6] = 58 and len < {header + 92})))")


def share_filter(shard: int, count: int, vlan: bool = True, unplaced: bool | None = None,
                 header: int | None = None) -> str:
    """The BPF expression that keeps shard `shard`'s share of `count`, plus all that no form places if `unplaced`
    (by default, for shard 0 only), the frames too short for the forms' loads included (`header`: the link header's
    length on a link without Ethernet headers; unknown: every packet is kept, and the decoded key decides).

    libpcap's `vlan` keyword moves the offsets of every test after it, across `or` too; so the untagged tests come
    first, then one `vlan` for single-tagged frames, then one more for double-tagged ones (whose inner tag the
    second `vlan` finds where the first one left the offsets). `ether[]` is never moved.
    """
    if count < 1 or not 0 <= shard < count:
        raise ValueError(f"shard {shard} of {count}")
    if unplaced is None:
        unplaced = shard == 0
    mine = " or ".join(_forms(f"(((({{}} ^ {{}} ^ {{}} ^ {{}}) * {_MULTIPLIER}) >> 16 & 0xffff) % {count} = {shard})"))
    anything = " or ".join(_forms("1 = 1"))
    if not vlan:  # a link without Ethernet headers (Linux cooked, raw IP, loopback)
        if not unplaced:
            return f"({mine})"
        if header is None:
            return "1 = 1"
        return f"{_too_short(header)} or ({mine}) or not ({anything})"
    if not unplaced:
        return f"({mine}) or {_vlan_forms(mine, mine)}"
    untagged = f"{_too_short(14)} or ({_TAGGED} and len < 24) or ({mine}) or (not {_TAGGED} and not ({anything}))"
    inner = f"({mine}) or not ({anything})"
    return f"({untagged}) or {_vlan_forms(f'{_too_short(18)} or {inner}', f'{_too_short(22)} or {inner}')}"


def _vlan_forms(single: str, double: str) -> str:
    """Single-tagged frames tested by `single`, double-tagged ones by `double` (after one `vlan`, then another)."""
    return (f"(vlan and not (ether[16:2] = 0x8100 or ether[16:2] = 0x88a8) and ({single})) "
            f"or ({_TAGGED} and vlan and ({double}))")
