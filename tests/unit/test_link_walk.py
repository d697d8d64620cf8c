"""#13: one walk over the link layer (decode/layers.link_layer) for every decoder: the frame decoder, the bound on
a frame's layers and the names' locate() read a packet on each supported link type alike.

Kernel-made TCP packets (fixtures close_client_first and ipv6_close) are put behind each link header midstat reads
(Ethernet with none, one and two VLAN tags, Linux cooked SLL and SLL2, BSD loopback of every IPv6 family and both byte
orders, raw IP under its three link types); for each, the decoder's segment and locate()'s answer name the same
addresses, protocol and ports."""

from __future__ import annotations

import struct

import dpkt
import pytest

from midstat_tui.decode import layers, linktypes
from midstat_tui.decode.frame import FrameDecoder
from midstat_tui.decode.names import locate
from midstat_tui.decode.segment import Segment
from tests.helpers import FIXTURES


def _ip_packets(name: str) -> list[bytes]:
    """The capture's TCP packets, from their IP header on."""
    with open(FIXTURES / name, "rb") as fh:
        packets = [bytes(dpkt.ethernet.Ethernet(frame).data) for _, frame in dpkt.pcap.Reader(fh)]
    return [ip for ip in packets if (ip[0] >> 4, ip[9] if ip[0] >> 4 == 4 else ip[6]) in ((4, 6), (6, 6))]


V4 = _ip_packets("close_client_first.pcap")
V6 = _ip_packets("ipv6_close.pcap")
MAC = bytes.fromhex("8a9ff71b0efc")


def _framed(dlt: int, ip: bytes, shape: str) -> bytes:
    etype = 0x0800 if ip[0] >> 4 == 4 else 0x86DD
    if dlt == linktypes.DLT_EN10MB:
        tags = {"untagged": b"", "vlan": struct.pack("!HH", 0x8100, 7),
                "qinq": struct.pack("!HHHH", 0x88A8, 100, 0x8100, 7)}[shape]
        return bytes(6) + MAC + tags + struct.pack("!H", etype) + ip
    if dlt == linktypes.DLT_LINUX_SLL:
        return struct.pack("!HHH", 0, 1, 6) + MAC + b"\0\0" + struct.pack("!H", etype) + ip
    if dlt == linktypes.DLT_LINUX_SLL2:
        return struct.pack("!HHIHBB", etype, 0, 2, 1, 0, 6) + MAC + b"\0\0" + ip
    if dlt in (linktypes.DLT_NULL, linktypes.DLT_LOOP):
        family = 2 if etype == 0x0800 else int(shape.split("-")[1])
        return struct.pack("<I" if shape.startswith("le") else ">I", family) + ip
    return ip


SHAPES = [
    *((linktypes.DLT_EN10MB, shape) for shape in ("untagged", "vlan", "qinq")),
    (linktypes.DLT_LINUX_SLL, ""), (linktypes.DLT_LINUX_SLL2, ""),
    *((dlt, f"{order}-{family}") for dlt in (linktypes.DLT_NULL, linktypes.DLT_LOOP) for order in ("le", "be")
      for family in (10, 24, 28, 30)),
    (linktypes.DLT_RAW, ""), (linktypes.LINKTYPE_IPV4, "v4"), (linktypes.LINKTYPE_IPV6, "v6"),
]


@pytest.mark.parametrize(("dlt", "shape"), SHAPES, ids=[f"{d}-{s}" for d, s in SHAPES])
def test_every_decoder_reads_the_link_layer_alike(dlt, shape):
    packets = V6 if shape == "v6" else V4 if shape == "v4" else V4 + V6
    decoder = FrameDecoder(dlt, verify_checksums=True, fast_path=False)
    for ip in packets:
        frame = _framed(dlt, ip, shape)
        seg = decoder.decode(1.0, frame)
        assert type(seg) is Segment, (shape, seg)
        assert layers.check(dlt, frame) is None
        where = locate(dlt, frame)
        assert where is not None
        src, dst, proto, at, end = where
        assert (src, dst, proto) == (seg.src, seg.dst, 6)
        assert struct.unpack_from("!HH", frame, at) == (seg.sport, seg.dport)
        assert end == len(frame)
        assert seg.vlan == {"vlan": (7,), "qinq": (100, 7)}.get(shape, ())


@pytest.mark.parametrize("dlt", [linktypes.DLT_NULL, linktypes.DLT_LOOP])
def test_loopback_of_another_family_is_not_ip_for_any_of_them(dlt):
    frame = struct.pack("<I", 17) + V4[0]  # AF_DECnet: the bytes after it are an IPv4 packet, the header says not
    assert layers.link_layer(dlt, frame) == (None, 4)
    assert FrameDecoder(dlt).decode(1.0, frame) == "non_ip"
    assert locate(dlt, frame) is None
    assert layers.check(dlt, frame) is None


@pytest.mark.parametrize(("dlt", "size"), [(linktypes.DLT_EN10MB, 13), (linktypes.DLT_LINUX_SLL, 15),
                                           (linktypes.DLT_LINUX_SLL2, 19), (linktypes.DLT_NULL, 3),
                                           (linktypes.DLT_RAW, 0)])
def test_a_frame_shorter_than_its_link_header(dlt, size):
    frame = bytes(range(size))
    assert layers.link_layer(dlt, frame) is None
    assert locate(dlt, frame) is None
    assert layers.check(dlt, frame) is None
    assert FrameDecoder(dlt).decode(1.0, frame) == "truncated"
