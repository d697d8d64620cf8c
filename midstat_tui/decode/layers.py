"""A bound on the work one frame can cost, checked on its bytes before dpkt parses it.

dpkt decodes an encapsulated packet by recursion (IP in IP, IPv6 in IPv6, GRE, Ethernet over GRE or an MPLS
pseudowire, Cisco ISL) and walks IPv6 extension headers and GRE routing entries in loops that copy the rest of the
frame at each step. A crafted frame nested 250 levels deep made it raise `RecursionError`; a chain of thousands of
extension headers cost tens of milliseconds. `check(dlt, frame)` walks the same headers with plain index arithmetic
(no copies, no objects) and says `too_many_layers` or `too_many_headers` when a frame goes past the limits below,
which the decoder then counts as malformed without handing the frame to dpkt, as Suricata (`decoder.max-layers`)
and Zeek (`Tunnel::max_depth`) bound theirs.

The walk stops, saying nothing, wherever it no longer knows the header (dpkt will not decode further there either,
or fails its own way, which the decoder also counts): it only has to see the paths on which dpkt goes deep.
"""

from __future__ import annotations

from midstat_tui.decode import linktypes

# Encapsulation layers in one frame: link headers, VLAN tags, MPLS labels, PPPoE, IP and IPv6 headers, GRE.
# A frame of Ethernet, two VLAN tags, a few MPLS labels, IPv4, GRE, Ethernet, IPv6 stays far below.
MAX_LAYERS = 16
# IPv6 extension headers (all IPv6 headers of the frame together) plus GRE source route entries. A real packet
# carries a handful (hop-by-hop, routing, fragment, AH, destination options twice: RFC 8200 section 4.1).
MAX_HEADERS = 16

TOO_MANY_LAYERS = "too_many_layers"
TOO_MANY_HEADERS = "too_many_headers"

_QINQ = (0x8100, 0x88A8, 0x9100)
_MPLS = (0x8847, 0x8848)
_PPPOE = 0x8864
_TEB = 0x6558             # Ethernet over GRE (transparent Ethernet bridging)
_IPV4 = 0x0800
_IPV6 = 0x86DD
# what comes next: an ethertype, or one of these
_ETHERNET = -1
_IP4 = -4
_IP6 = -6
_GRE = -47
_IP_PROTO_NEXT = {4: _IP4, 41: _IP6, 47: _GRE}
_OPTS_HEADERS = (0, 43, 60, 135, 139, 140, 253, 254)  # (length + 1) * 8 bytes
_FRAGMENT = 44
_AH = 51


_NESTING6 = frozenset(_OPTS_HEADERS) | {_FRAGMENT, _AH, 4, 41, 47}

# the link layer's kinds of what follows it (link_layer), for the other decoders
ETHERNET, IP4, IP6 = _ETHERNET, _IP4, _IP6
AF_INET = 2
AF_INET6 = (10, 24, 28, 30)  # BSD loopback's IPv6 family: Linux, NetBSD/OpenBSD, FreeBSD, macOS


def link_layer(dlt: int, frame: bytes, vlan_tags: int = 0) -> tuple[int | None, int] | None:
    """The link header of a frame, walked once for every decoder (this bound, frame.py's loopback and raw IP,
    names.py's locate): (what follows it, where). What follows: ETHERNET (an Ethernet header, at 0) or, with
    `vlan_tags`, the Ethernet type past up to that many VLAN tags; an ethertype (Linux cooked, SLL and SLL2); IP4 or
    IP6 (BSD loopback by its address family, raw IP by its link type or else the version nibble); or None (loopback
    of another family, raw bytes of neither version). None when the frame is too short for its link header."""
    size = len(frame)
    if dlt == linktypes.DLT_EN10MB:
        if size < 14:
            return None
        if not vlan_tags:
            return _ETHERNET, 0
        etype = (frame[12] << 8) | frame[13]
        off = 14
        while etype in _QINQ and vlan_tags and size >= off + 4:
            etype = (frame[off + 2] << 8) | frame[off + 3]
            off += 4
            vlan_tags -= 1
        return etype, off
    if dlt == linktypes.DLT_LINUX_SLL:
        return ((frame[14] << 8) | frame[15], 16) if size >= 16 else None
    if dlt == linktypes.DLT_LINUX_SLL2:
        return ((frame[0] << 8) | frame[1], 20) if size >= 20 else None
    if dlt in (linktypes.DLT_NULL, linktypes.DLT_LOOP):
        if size < 4:
            return None
        family = int.from_bytes(frame[:4], "little")
        if family > 0xFFFF:
            family = int.from_bytes(frame[:4], "big")
        return (_IP4 if family == AF_INET else _IP6 if family in AF_INET6 else None), 4
    if not size:
        return None
    if dlt == linktypes.LINKTYPE_IPV4:
        return _IP4, 0
    if dlt == linktypes.LINKTYPE_IPV6:
        return _IP6, 0
    return _by_version(frame[0]), 0


def check(dlt: int, frame: bytes) -> str | None:
    """None when the frame is within the limits, else the reason to count it under."""
    size = len(frame)
    # the common frame first: IPv4 or IPv6 right after the link header, carrying nothing that nests (what the walk
    # below would conclude after two steps, at a fraction of the cost)
    if dlt == linktypes.DLT_EN10MB and size >= 54:
        etype = (frame[12] << 8) | frame[13]
        if etype == _IPV4 and frame[14] >> 4 == 4:
            if frame[23] not in _IP_PROTO_NEXT:
                return None
        elif etype == _IPV6 and frame[14] >> 4 == 6 and frame[20] not in _NESTING6:
            return None
    link = link_layer(dlt, frame)
    if link is None:
        return None
    kind, off = link
    if kind in (_IP4, _IPV4):  # the common packet again, on the other link types: nothing in it nests
        if size >= off + 20 and frame[off] >> 4 == 4 and frame[off + 9] not in _IP_PROTO_NEXT:
            return None
    elif kind in (_IP6, _IPV6) and size >= off + 40 and frame[off] >> 4 == 6 and frame[off + 6] not in _NESTING6:
        return None
    layers = 0
    headers = 0
    while True:
        layers += 1
        if layers > MAX_LAYERS:
            return TOO_MANY_LAYERS
        if kind == _ETHERNET:
            if size < off + 14:
                return None
            etype = (frame[off + 12] << 8) | frame[off + 13]
            if etype <= 1500 and frame[off:off + 5] in (b"\x01\x00\x0c\x00\x00", b"\x03\x00\x0c\x00\x00"):
                kind, off = _ETHERNET, off + 26  # Cisco ISL: another Ethernet frame follows its header
            else:
                kind, off = etype, off + 14
        elif kind in (_IP4, _IPV4):
            if size < off + 20 or frame[off] >> 4 != 4:
                return None
            if ((frame[off + 6] << 8) | frame[off + 7]) & 0x1FFF:
                return None  # a later fragment: not decoded further
            nxt = _IP_PROTO_NEXT.get(frame[off + 9])
            if nxt is None:
                return None
            kind, off = nxt, off + ((frame[off] & 0xF) << 2)
        elif kind in (_IP6, _IPV6):
            if size < off + 40 or frame[off] >> 4 != 6:
                return None
            proto = frame[off + 6]
            off += 40
            while True:
                if proto in _OPTS_HEADERS:
                    step = 8
                elif proto == _FRAGMENT:
                    step = 0
                elif proto == _AH:
                    step = 4
                else:
                    break
                headers += 1
                if headers > MAX_HEADERS:
                    return TOO_MANY_HEADERS
                if size < off + 8:
                    return None
                if proto == _FRAGMENT and ((frame[off + 2] << 8) | frame[off + 3]) & 0xFFF8:
                    return None  # a later fragment
                length = 8 if step == 0 else (frame[off + 1] + (1 if step == 8 else 2)) * step
                proto = frame[off]
                off += length
            nxt = _IP_PROTO_NEXT.get(proto)
            if nxt is None:
                return None
            kind = nxt
        elif kind == _GRE:
            if size < off + 4:
                return None
            flags = (frame[off] << 8) | frame[off + 1]
            etype = (frame[off + 2] << 8) | frame[off + 3]
            off += 4
            if flags & 0xC000:
                off += 4   # checksum and offset
            if flags & 0x2000:
                off += 4   # key (or, version 1, payload length and call id)
            if flags & 0x1000:
                off += 4   # sequence number
            if flags & 0x0080:
                off += 4   # acknowledgment number
            if flags & 0x4000:  # source route entries, up to one of length 0
                while True:
                    headers += 1
                    if headers > MAX_HEADERS:
                        return TOO_MANY_HEADERS
                    if size < off + 4:
                        return None
                    length = frame[off + 3]
                    off += 4 + length
                    if not length:
                        break
            kind = _ETHERNET if etype == _TEB else etype
        elif kind in _QINQ:
            if size < off + 4:
                return None
            kind, off = (frame[off + 2] << 8) | frame[off + 3], off + 4
        elif kind in _MPLS:
            while True:
                if size < off + 4:
                    return None
                bottom = frame[off + 2] & 1
                off += 4
                if bottom:
                    break
                layers += 1
                if layers > MAX_LAYERS:
                    return TOO_MANY_LAYERS
            if size <= off:
                return None
            kind = _by_version(frame[off])
            if kind is None:  # a pseudowire: Ethernet, after a control word
                if frame[off:off + 2] == b"\x00\x00":
                    off += 4
                kind = _ETHERNET
        elif kind == _PPPOE:
            if size < off + 8:
                return None
            ppp = (frame[off + 6] << 8) | frame[off + 7]
            if ppp == 0x0021:
                kind = _IP4
            elif ppp == 0x0057:
                kind = _IP6
            else:
                return None
            off += 8
        else:
            return None


def _by_version(first: int) -> int | None:
    version = first >> 4
    if version == 4:
        return _IP4
    if version == 6:
        return _IP6
    return None
