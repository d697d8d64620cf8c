"""Decode one captured frame with dpkt into a `Segment`, an `IcmpError`, or a reject reason (a short string).

Never raises on frame content: every frame that is not a usable TCP segment comes back as a reason, so the caller
can count it. Reasons: `non_ip`, `non_tcp`, `fragment`, `truncated` (headers cut off by the snap length),
`bad_ip_header`, `bad_ipv6_header`, `bad_tcp_header`, `bad_link_header`; `too_many_layers` and `too_many_headers`
(past the bound on the work one frame may cost: `layers.py`); `undecodable` for any other exception the decoding
raised (none is known: a new one is counted under this name rather than stopping the run).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from midstat_tui.decode import layers, linktypes
from midstat_tui.decode.checksum import checksum_ok
from midstat_tui.decode.fastpath import decode_ethernet
from midstat_tui.decode.segment import IcmpError, Segment

if TYPE_CHECKING:
    from dpkt.ip6 import IP6

# dpkt is loaded by the first frame the compiled-core-shaped fast path does not decode (`_load_dpkt`): a run whose
# frames are all the plain shape never loads it (0.06 s of a headless run's start)
dpkt: Any = None
Ethernet = ICMP = ICMP6 = IP = IP6 = SLL = SLL2 = TCP = None  # type: ignore[assignment,misc]
ETH_TYPE_IP, ETH_TYPE_IP6 = 0x0800, 0x86DD  # dpkt.ethernet's (tests/unit/test_compiled_reader.py holds them equal)
IP_PROTO_ICMP, IP_PROTO_TCP = 1, 6          # dpkt.ip's
IP_PROTO_ICMP6 = 58
ICMP_UNREACH = 3
ICMP6_DST_UNREACH = 1


Result = Segment | IcmpError | str
# Every reason a frame can be turned away for (the str results of `FrameDecoder.decode`), counted by the engine.
REJECT_REASONS = frozenset({"non_ip", "non_tcp", "fragment", "truncated", "bad_ip_header", "bad_ipv6_header",
                            "bad_tcp_header", "bad_link_header", layers.TOO_MANY_LAYERS, layers.TOO_MANY_HEADERS,
                            "undecodable"})


def _load_dpkt() -> None:
    global dpkt, Ethernet, ICMP, ICMP6, IP, IP6, SLL, SLL2, TCP  # noqa: PLW0603 - loaded once, on first need
    import dpkt as loaded
    from dpkt.ethernet import Ethernet as ethernet
    from dpkt.icmp import ICMP as icmp
    from dpkt.icmp6 import ICMP6 as icmp6
    from dpkt.ip import IP as ip
    from dpkt.ip6 import IP6 as ip6
    from dpkt.sll import SLL as sll
    from dpkt.sll2 import SLL2 as sll2
    from dpkt.tcp import TCP as tcp

    Ethernet, ICMP, ICMP6, IP, IP6, SLL, SLL2, TCP = ethernet, icmp, icmp6, ip, ip6, sll, sll2, tcp
    dpkt = loaded


class LinkTypeError(Exception):
    """The capture's link type is not one midstat decodes."""

    def __init__(self, dlt: int) -> None:
        super().__init__(f"unsupported link type {linktypes.link_type_name(dlt)} (DLT {dlt}): "
                         "midstat reads Ethernet, Linux cooked (SLL, SLL2), raw IP and BSD loopback captures")
        self.dlt = dlt


class FrameDecoder:
    """Decoder for one link type. `decode(ts, frame)` is the per-packet entry point."""

    def __init__(self, dlt: int, verify_checksums: bool = True, fast_path: bool = True) -> None:
        if dlt not in linktypes.SUPPORTED:
            raise LinkTypeError(dlt)
        self.dlt = dlt
        self.verify_checksums = verify_checksums
        self._fast = decode_ethernet if fast_path and dlt == linktypes.DLT_EN10MB else None
        if dlt == linktypes.DLT_EN10MB:
            self._link = self._ethernet
        elif dlt == linktypes.DLT_LINUX_SLL:
            self._link = self._sll
        elif dlt == linktypes.DLT_LINUX_SLL2:
            self._link = self._sll2
        else:  # BSD loopback, raw IP
            self._link = self._ip_link

    def decode(self, ts: float, frame: bytes) -> Result:
        """Never raises on a frame: whatever its bytes, a result to count."""
        try:
            if self._fast is not None:
                seg = self._fast(ts, frame, self.verify_checksums)
                if seg is not None:
                    return seg
            if dpkt is None:
                _load_dpkt()
            too_much = layers.check(self.dlt, frame)
            if too_much is not None:
                return too_much
            return self._link(ts, frame)
        except (dpkt.Error, struct.error, IndexError, ValueError, TypeError, AttributeError):
            # dpkt raises these on frames too short or too odd for a header it was asked to build
            return "bad_link_header"
        except RecursionError:
            return layers.TOO_MANY_LAYERS  # nesting the walk in layers.py does not know: dpkt went too deep
        except Exception:  # noqa: BLE001 - one packet must never stop a run: counted, under its own name
            return "undecodable"

    # -- link layers ------------------------------------------------------------------------------------------
    def _ethernet(self, ts: float, frame: bytes) -> Result:
        if len(frame) < 14:
            return "truncated"
        eth = Ethernet(frame)
        tags = getattr(eth, "vlan_tags", None)
        vlan = tuple(tag.id for tag in tags) if tags else ()
        return _with_mac(self._network(ts, vlan, eth.data, getattr(eth, "_next_type", None) or eth.type),
                         frame[6:12])

    def _sll(self, ts: float, frame: bytes) -> Result:
        if len(frame) < 16:
            return "truncated"
        sll = SLL(frame)
        # header: packet type, ARPHRD type, address length, 8 address bytes, protocol
        return _with_mac(self._network(ts, (), sll.data, sll.ethtype), frame[6:6 + min(frame[5], 8)])

    def _sll2(self, ts: float, frame: bytes) -> Result:
        if len(frame) < 20:
            return "truncated"
        sll = SLL2(frame)
        # header: protocol, reserved, interface index, ARPHRD type, packet type, address length, 8 address bytes
        return _with_mac(self._network(ts, (), sll.data, sll.ethtype), frame[12:12 + min(frame[11], 8)])

    def _ip_link(self, ts: float, frame: bytes) -> Result:
        """BSD loopback (the IP version by its address family) and raw IP (by the link type, else the version
        nibble): layers.link_layer says which."""
        link = layers.link_layer(self.dlt, frame)
        if link is None:
            return "truncated"
        kind, off = link
        if kind == layers.IP4:
            return self._ip_bytes(ts, (), frame[off:] if off else frame, 4)
        if kind == layers.IP6:
            return self._ip_bytes(ts, (), frame[off:] if off else frame, 6)
        return "non_ip"

    # -- network layer ----------------------------------------------------------------------------------------
    def _network(self, ts: float, vlan: tuple[int, ...], data: object, ethtype: int) -> Result:
        if isinstance(data, IP):
            return self._ipv4(ts, vlan, data)
        if isinstance(data, IP6):
            return self._ipv6(ts, vlan, data)
        if isinstance(data, bytes | bytearray):
            # dpkt leaves the bytes undecoded when the IP header did not parse: say why
            if ethtype == ETH_TYPE_IP or (data and data[0] >> 4 == 4 and ethtype not in (ETH_TYPE_IP6,)
                                         and ethtype in (0x8847, 0x8848)):
                return self._ip_bytes(ts, vlan, bytes(data), 4)
            if ethtype == ETH_TYPE_IP6:
                return self._ip_bytes(ts, vlan, bytes(data), 6)
        return "non_ip"

    def _ip_bytes(self, ts: float, vlan: tuple[int, ...], data: bytes, version: int) -> Result:
        if version == 4:
            if len(data) < 20:
                return "truncated"
            if data[0] >> 4 != 4:
                return "bad_ip_header"
            try:
                ip = IP(data)
            except dpkt.NeedData:
                return "truncated"
            except dpkt.UnpackError:
                return "bad_ip_header"
            return self._ipv4(ts, vlan, ip)
        if len(data) < 40:
            return "truncated"
        if data[0] >> 4 != 6:
            return "bad_ipv6_header"
        try:
            ip6 = IP6(data)
        except dpkt.NeedData:
            return "truncated"
        except dpkt.UnpackError:
            return "bad_ipv6_header"
        return self._ipv6(ts, vlan, ip6)

    def _ipv4(self, ts: float, vlan: tuple[int, ...], ip: IP) -> Result:
        ihl = (ip._v_hl & 0xF) << 2
        if ihl < 20:
            return "bad_ip_header"
        if ip.offset:
            return "fragment"
        tcp = ip.data
        ip_len = ip.len
        if ip.p == IP_PROTO_TCP:
            if ip_len and ip_len < ihl + 20:
                return "bad_ip_header"
            if not isinstance(tcp, TCP):
                return self._why_tcp_failed(tcp)
            if not ip_len:  # 0 in captures of segmentation-offloaded frames: use what was captured
                ip_len = ihl + len(tcp)
            hdr_len = tcp.off << 2
            payload = ip_len - ihl - hdr_len
            if payload < 0:
                return "bad_tcp_header"
            truncated = 20 + len(tcp.opts) + len(tcp.data) < hdr_len + payload
            csum_ok = None
            if self.verify_checksums and ip.len and not truncated and not ip.mf:
                seg = bytes(tcp)
                pseudo = ip.src + ip.dst + struct.pack("!BBH", 0, IP_PROTO_TCP, len(seg))
                csum_ok = checksum_ok(pseudo, seg)
            return Segment(ts, vlan, ip.src, ip.dst, tcp.sport, tcp.dport, tcp.seq, tcp.ack, tcp.flags & 0xFF,
                           tcp.win, payload, ip_len, ip.ttl, csum_ok, truncated)
        if ip.p == IP_PROTO_ICMP:
            return self._icmp4(ts, vlan, ip.data)
        return "non_tcp"

    def _ipv6(self, ts: float, vlan: tuple[int, ...], ip6: IP6) -> Result:
        frag = ip6.extension_hdrs.get(44) if getattr(ip6, "extension_hdrs", None) else None
        if frag is not None and frag.frag_off:
            return "fragment"  # not the first fragment: no TCP header in it
        proto = ip6.p
        if proto == IP_PROTO_TCP:
            tcp = ip6.data
            if not isinstance(tcp, TCP):
                return self._why_tcp_failed(tcp)
            ip_len = 40 + ip6.plen
            hdr_len = tcp.off << 2
            payload = ip6.plen - _ext_headers_len(ip6) - hdr_len
            if payload < 0:
                return "bad_tcp_header"
            truncated = 20 + len(tcp.opts) + len(tcp.data) < hdr_len + payload
            csum_ok = None
            if self.verify_checksums and not truncated and frag is None:
                seg = bytes(tcp)
                pseudo = ip6.src + ip6.dst + struct.pack("!IxxxB", len(seg), IP_PROTO_TCP)
                csum_ok = checksum_ok(pseudo, seg)
            return Segment(ts, vlan, ip6.src, ip6.dst, tcp.sport, tcp.dport, tcp.seq, tcp.ack, tcp.flags & 0xFF,
                           tcp.win, payload, ip_len, ip6.hlim, csum_ok, truncated)
        if proto == IP_PROTO_ICMP6:
            return self._icmp6(ts, vlan, ip6.data)
        return "non_tcp"

    @staticmethod
    def _why_tcp_failed(data: object) -> str:
        if isinstance(data, bytes | bytearray) and len(data) >= 20:
            off = data[12] >> 4
            if off < 5:
                return "bad_tcp_header"
            return "truncated"
        return "truncated"

    # -- ICMP errors quoting TCP --------------------------------------------------------------------------------
    def _icmp4(self, ts: float, vlan: tuple[int, ...], icmp: object) -> Result:
        if not isinstance(icmp, ICMP) or icmp.type != ICMP_UNREACH:
            return "non_tcp"
        quoted = _raw(icmp.data)[4:]  # skip the unused word of the unreachable message
        if len(quoted) < 28 or quoted[0] >> 4 != 4 or quoted[9] != IP_PROTO_TCP:
            return "non_tcp"
        ihl = (quoted[0] & 0xF) << 2
        if len(quoted) < ihl + 8:
            return "non_tcp"
        sport, dport, seq = struct.unpack_from("!HHI", quoted, ihl)
        return IcmpError(ts, vlan, quoted[12:16], quoted[16:20], sport, dport, seq)

    def _icmp6(self, ts: float, vlan: tuple[int, ...], icmp: object) -> Result:
        if not isinstance(icmp, ICMP6) or icmp.type != ICMP6_DST_UNREACH:
            return "non_tcp"
        quoted = _raw(icmp.data)[4:]
        if len(quoted) < 48 or quoted[0] >> 4 != 6 or quoted[6] != IP_PROTO_TCP:
            return "non_tcp"
        sport, dport, seq = struct.unpack_from("!HHI", quoted, 40)
        return IcmpError(ts, vlan, quoted[8:24], quoted[24:40], sport, dport, seq)


def _raw(body: object) -> bytes:
    """An ICMP error's body as bytes. dpkt parsed the quoted packet; packing it back can fail on the nonsense a
    damaged or crafted quote holds (a field too large to pack): then it is no quote of a TCP segment we can use."""
    if dpkt is None:
        _load_dpkt()
    try:
        return bytes(body)  # type: ignore[call-overload]
    except (dpkt.Error, struct.error, ValueError, TypeError):
        return b""


def _with_mac(result: Result, mac: bytes) -> Result:
    """The sender's link-layer address on a decoded segment (kept to spot an RST injected from elsewhere)."""
    if isinstance(result, Segment):
        result.mac = mac
    return result


def _ext_headers_len(ip6: IP6) -> int:
    hdrs = getattr(ip6, "all_extension_headers", None) or []
    return sum(len(h) for h in hdrs)
