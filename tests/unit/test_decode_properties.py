"""The decoder never raises and reads back exactly the fields a frame was built with (hypothesis)."""

from __future__ import annotations

import ipaddress
import struct

import dpkt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from midstat_tui.decode import FrameDecoder, IcmpError, Segment, linktypes
from midstat_tui.decode.frame import REJECT_REASONS

REASONS = REJECT_REASONS
LINKTYPES = sorted(linktypes.SUPPORTED)


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(dlt=st.sampled_from(LINKTYPES), frame=st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(dlt, frame):
    result = FrameDecoder(dlt).decode(1.0, frame)
    assert isinstance(result, Segment | IcmpError) or result in REASONS


def _header_prefix(dlt: int, v6: bool) -> bytes:
    """Bytes in front of an IP packet for link types whose decoding the round trip covers."""
    if dlt == linktypes.DLT_LINUX_SLL:
        return struct.pack("!HHH8sH", 0, 1, 6, b"\x00" * 8, 0x86DD if v6 else 0x0800)
    if dlt == linktypes.DLT_LINUX_SLL2:
        return struct.pack("!HHIHBB8s", 0x86DD if v6 else 0x0800, 0, 1, 1, 0, 6, b"\x00" * 8)
    if dlt == linktypes.DLT_NULL:
        return struct.pack("<I", 30 if v6 else 2)
    if dlt == linktypes.DLT_LOOP:
        return struct.pack(">I", 24 if v6 else 2)
    return b""


segments = st.fixed_dictionaries({
    "v6": st.booleans(),
    "src": st.integers(1, 2**32 - 1),
    "dst": st.integers(1, 2**32 - 1),
    "sport": st.integers(0, 65535),
    "dport": st.integers(0, 65535),
    "seq": st.integers(0, 2**32 - 1),
    "ack": st.integers(0, 2**32 - 1),
    "flags": st.integers(0, 255),
    "win": st.integers(0, 65535),
    "payload": st.binary(max_size=300),
    "opts": st.sampled_from([b"", b"\x02\x04\x05\xb4", b"\x01\x01\x04\x02", b"\x02\x04\x05\xb4\x01\x03\x03\x07"]),
    "vlan": st.lists(st.integers(1, 4094), max_size=2),
    "dlt": st.sampled_from([linktypes.DLT_EN10MB, linktypes.DLT_RAW, linktypes.DLT_LINUX_SLL,
                            linktypes.DLT_LINUX_SLL2, linktypes.DLT_NULL, linktypes.DLT_LOOP]),
    "snap": st.one_of(st.none(), st.integers(0, 120)),
})


def _build(p: dict) -> tuple[bytes, bytes, bytes, int]:
    tcp = dpkt.tcp.TCP(sport=p["sport"], dport=p["dport"], seq=p["seq"], ack=p["ack"], flags=p["flags"],
                       win=p["win"], opts=p["opts"], data=p["payload"])
    tcp.off = (20 + len(p["opts"])) // 4
    if p["v6"]:
        src = ipaddress.IPv6Address(p["src"] << 96 | 1).packed
        dst = ipaddress.IPv6Address(p["dst"] << 96 | 2).packed
        ip = dpkt.ip6.IP6(src=src, dst=dst, nxt=6, hlim=64, data=tcp, plen=len(tcp))
        ip_len = 40 + len(tcp)
    else:
        src, dst = struct.pack("!I", p["src"]), struct.pack("!I", p["dst"])
        ip = dpkt.ip.IP(src=src, dst=dst, p=6, ttl=64, data=tcp)
        ip.len = 20 + len(tcp)
        ip_len = ip.len
    packet = bytes(ip)  # dpkt fills in correct checksums
    dlt = p["dlt"]
    if dlt == linktypes.DLT_EN10MB:
        tags = b"".join(struct.pack("!HH", 0x8100, v) for v in p["vlan"])
        frame = b"\x02" * 6 + b"\x04" * 6 + tags + struct.pack("!H", 0x86DD if p["v6"] else 0x0800) + packet
    else:
        frame = _header_prefix(dlt, p["v6"]) + packet
    return frame, src, dst, ip_len


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(p=segments)
def test_built_frames_read_back_exactly(p):
    frame, src, dst, ip_len = _build(p)
    full = len(frame)
    if p["snap"] is not None:
        frame = frame[: p["snap"] + (full - ip_len)]  # cut inside the IP packet
    result = FrameDecoder(p["dlt"]).decode(7.5, frame)
    link = full - ip_len
    fixed_headers = link + (40 if p["v6"] else 20) + 20
    if len(frame) < fixed_headers:
        assert result == "truncated"
        return
    assert isinstance(result, Segment), result
    assert (result.src, result.dst, result.sport, result.dport) == (src, dst, p["sport"], p["dport"])
    assert (result.seq, result.ack, result.flags, result.win) == (p["seq"], p["ack"], p["flags"], p["win"])
    assert result.payload == len(p["payload"])
    assert result.ip_len == ip_len
    assert result.ts == 7.5
    assert result.vlan == (tuple(p["vlan"]) if p["dlt"] == linktypes.DLT_EN10MB else ())
    assert result.truncated == (len(frame) < full)
    assert result.csum_ok is (None if len(frame) < full else True)


@settings(max_examples=300)
@given(p=segments, flip=st.integers(0, 10_000))
def test_a_flipped_bit_in_the_tcp_segment_fails_the_checksum(p, flip):
    p = dict(p, snap=None, dlt=linktypes.DLT_RAW, vlan=[])
    frame, _, _, _ = _build(p)
    ip_hdr = 40 if p["v6"] else 20
    tcp_bytes = len(frame) - ip_hdr
    bit = flip % (tcp_bytes * 8)
    pos = ip_hdr + bit // 8
    damaged = bytearray(frame)
    damaged[pos] ^= 1 << (bit % 8)
    result = FrameDecoder(linktypes.DLT_RAW).decode(1.0, bytes(damaged))
    if isinstance(result, Segment):
        assert result.csum_ok is False
    else:
        assert result in REASONS  # the flip broke the header itself (data offset)


def test_unsupported_link_type_names_itself():
    import pytest

    with pytest.raises(Exception, match="FDDI"):
        FrameDecoder(10)
