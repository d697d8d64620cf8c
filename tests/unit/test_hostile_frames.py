"""One packet never stops a run: frames nested hundreds of encapsulations deep or carrying long chains of IPv6
extension headers (or GRE source routes) are counted as malformed under a reason, cheaply, on every link type, in
the decoder and through the real command on one and two cores (issue #10)."""

from __future__ import annotations

import json
import struct
import sys
import time

import pytest

from midstat_tui.capture.files import FileSource
from midstat_tui.decode import layers, linktypes
from midstat_tui.decode.frame import REJECT_REASONS, FrameDecoder
from midstat_tui.decode.segment import Segment
from tests.helpers import FIXTURES, ROOT, midstat

sys.path.insert(0, str(ROOT / "scripts"))
import hostile_frames as hf  # noqa: E402

WORST = {"ext-headers": layers.TOO_MANY_HEADERS, "gre-routes": layers.TOO_MANY_HEADERS}


@pytest.mark.parametrize("fast_path", [True, False])
@pytest.mark.parametrize("name", sorted(hf.KINDS))
def test_the_issue_s_frames_are_counted_under_their_reason(name, fast_path):
    decoder = FrameDecoder(linktypes.DLT_EN10MB, fast_path=fast_path)
    assert decoder.decode(1.0, hf.hostile(name)) == WORST.get(name, layers.TOO_MANY_LAYERS)
    # within the limits, the same kind of frame is decoded as before (tunnels are not tracked inside: non_tcp)
    assert decoder.decode(1.0, hf.tame(name)) not in (layers.TOO_MANY_LAYERS, layers.TOO_MANY_HEADERS)


@pytest.mark.parametrize("size", [8000])
def test_a_64k_chain_of_extension_headers_costs_microseconds(size):
    frame = hf.hostile("ext-headers", size)
    assert len(frame) > 64000
    decoder = FrameDecoder(linktypes.DLT_EN10MB)
    started = time.perf_counter()
    for _ in range(100):
        assert decoder.decode(1.0, frame) == layers.TOO_MANY_HEADERS
    per_frame = (time.perf_counter() - started) / 100
    assert per_frame < 0.001, per_frame  # it was 54 ms: the walk stops at the 17th header


def _links(ip_packet: bytes) -> dict[int, bytes]:
    """The same IP packet on every link type midstat reads."""
    v6 = ip_packet[0] >> 4 == 6
    etype = 0x86DD if v6 else 0x0800
    return {
        linktypes.DLT_EN10MB: hf.ethernet(etype, ip_packet),
        linktypes.DLT_LINUX_SLL: struct.pack("!HHH8sH", 0, 1, 6, hf.MAC_A, etype) + ip_packet,
        linktypes.DLT_LINUX_SLL2: struct.pack("!HHIHBB8s", etype, 0, 1, 1, 0, 6, hf.MAC_A) + ip_packet,
        linktypes.DLT_NULL: struct.pack("<I", 24 if v6 else 2) + ip_packet,
        linktypes.DLT_RAW: ip_packet,
        linktypes.LINKTYPE_RAW: ip_packet,
        linktypes.LINKTYPE_IPV6 if v6 else linktypes.LINKTYPE_IPV4: ip_packet,
    }


@pytest.mark.parametrize("build", [hf.ipip, hf.ip6ip6, hf.gre_ip, hf.gre_ethernet], ids=lambda f: f.__name__)
def test_every_link_type_is_bounded(build):
    for dlt, frame in _links(build(250)).items():
        assert FrameDecoder(dlt).decode(1.0, frame) == layers.TOO_MANY_LAYERS, linktypes.SUPPORTED[dlt]
    for dlt, frame in _links(hf.ext_chain(180)).items():
        assert FrameDecoder(dlt).decode(1.0, frame) == layers.TOO_MANY_HEADERS, linktypes.SUPPORTED[dlt]


def test_the_limits_are_where_the_docs_say():
    decoder = FrameDecoder(linktypes.DLT_RAW)
    # raw IP: every layer is an IP header. MAX_LAYERS of them pass, one more does not
    assert decoder.decode(1.0, hf.ipip(layers.MAX_LAYERS)) == "non_tcp"
    assert decoder.decode(1.0, hf.ipip(layers.MAX_LAYERS + 1)) == layers.TOO_MANY_LAYERS
    seg = decoder.decode(1.0, hf.ext_chain(layers.MAX_HEADERS))
    assert isinstance(seg, Segment) and seg.flags == 0x02 and seg.csum_ok is True
    assert decoder.decode(1.0, hf.ext_chain(layers.MAX_HEADERS + 1)) == layers.TOO_MANY_HEADERS


def test_a_recursion_error_from_dpkt_is_counted_not_raised():
    """Nesting the walk does not model still cannot stop a run: called with the stack nearly full (as deep in a UI
    as it may be), dpkt's recursion fails on a frame within the limits, and that is a counted reason."""
    decoder = FrameDecoder(linktypes.DLT_EN10MB)
    frame = hf.hostile("gre-ethernet", 5)
    assert decoder.decode(1.0, frame) == "non_tcp"
    seen = set()

    def deep(n: int) -> None:
        if n:
            deep(n - 1)
        else:
            seen.add(decoder.decode(1.0, frame))

    depth, frame_at = 0, sys._getframe()
    while frame_at is not None:
        depth, frame_at = depth + 1, frame_at.f_back
    room = sys.getrecursionlimit() - depth
    for margin in range(12, 90, 3):
        deep(room - margin)
    assert layers.TOO_MANY_LAYERS in seen  # near the limit: dpkt ran out of stack, and it was counted
    assert seen <= {"non_tcp", layers.TOO_MANY_LAYERS}
    assert seen <= REJECT_REASONS


def _mixed_with_hostile(tmp_path, every: int = 3):
    """mixed_traffic.pcap with every kind of hostile frame inserted between its packets."""
    source = FileSource(str(FIXTURES / "mixed_traffic.pcap"))
    packets = [item for batch in source.batches() for item in batch]
    source.close()
    hostile = [hf.hostile(name) for name in sorted(hf.KINDS)]
    out, k = [], 0
    for i, (ts, frame) in enumerate(packets):
        out.append((ts, frame))
        if i % every == 0:
            out.append((ts, hostile[k % len(hostile)]))
            k += 1
    path = tmp_path / "hostile.pcap"
    hf.write_pcap(str(path), out)
    return path, k


def _summary(path, cores: int) -> dict:
    proc = midstat("-r", str(path), "--summary", "--json", "--cores", str(cores))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == b""
    return json.loads(proc.stdout)


@pytest.mark.parametrize("cores", [1, 2])
def test_the_command_goes_on_past_hostile_frames(tmp_path, cores):
    path, inserted = _mixed_with_hostile(tmp_path)
    clean = _summary(FIXTURES / "mixed_traffic.pcap", 1)
    doc = _summary(path, cores)

    def rows(d):
        return sorted((c["client"], c["server"], c["client_state"], c["server_state"]) for c in d["connections"])

    assert rows(doc) == rows(clean) and len(doc["connections"]) > 5
    malformed = doc["stats"]["malformed"]
    assert malformed.get(layers.TOO_MANY_LAYERS, 0) + malformed.get(layers.TOO_MANY_HEADERS, 0) == inserted
    assert malformed.get(layers.TOO_MANY_HEADERS, 0) > 0
