"""#13: two limits of a file's `--write`, each on a capture built here from a kernel-made fixture and checked
against tshark's reading of the same file:

- a bad-checksum segment after a chosen connection's last packet is the tuple's incarnation's of that moment: the
  chosen one's while it still holds the tuple, the later (unchosen) incarnation's once that one began (port reuse);
- a connection carried under a VLAN tag and MPLS labels passes the pre-filter of the second pass."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import dpkt
import pytest

from tests.helpers import FIXTURES, midstat
from tests.rewrite_pcap import played_again

TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (scripts/install.sh --test)")


def _packets(name: str) -> tuple[list[tuple[float, bytes]], int]:
    with open(FIXTURES / name, "rb") as fh:
        reader = dpkt.pcap.Reader(fh)
        return [(ts, bytes(frame)) for ts, frame in reader], reader.datalink()


def _write(path: Path, packets: list[tuple[float, bytes]], link: int) -> None:
    with open(path, "wb") as fh:
        writer = dpkt.pcap.Writer(fh, snaplen=65535, linktype=link)
        for ts, frame in sorted(packets, key=lambda p: p[0]):
            writer.writepkt(frame, ts)


def _frames(path: Path) -> list[tuple[float, bytes]]:
    with open(path, "rb") as fh:
        return [(round(ts, 6), bytes(frame)) for ts, frame in dpkt.pcap.Reader(fh)]


def _tshark(path: Path, *fields: str, display: str | None = None) -> list[list[str]]:
    cmd = [TSHARK, "-r", str(path), "-T", "fields", *[a for f in fields for a in ("-e", f)]]
    if display:
        cmd += ["-Y", display]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return [line.split("\t") for line in out.splitlines() if line]


def _damaged(frame: bytes) -> bytes:
    """The frame with its TCP checksum spoiled (Ethernet, IPv4 without options)."""
    at = 14 + 20 + 16
    return frame[:at] + bytes([frame[at] ^ 0x5A]) + frame[at + 1:]


@needs_tshark
def test_a_bad_checksum_after_the_chosen_incarnation_goes_to_the_incarnation_of_that_moment(tmp_path):
    """close_client_first.pcap, then the same conversation on the same ports 5 s later with other ISNs (a port
    reuse: the first incarnation, its client in TIME_WAIT, ends 'port_reuse'; the second stays in TIME_WAIT at the
    end, so `--match ended` chooses the first only). A damaged copy of a segment of the tuple lands between the
    first one's last packet and the second one's SYN (the first still holds the tuple: its own), and another in the
    middle of the second one (the second's: not written)."""
    packets, link = _packets("close_client_first.pcap")
    second = played_again(packets, 5.0)
    first_last = packets[-1][0]
    between = (first_last + 1.0, _damaged(packets[-1][1]))
    within = ((second[2][0] + second[3][0]) / 2, _damaged(second[3][1]))
    capture = tmp_path / "reuse_damaged.pcap"
    _write(capture, packets + second + [between, within], link)

    out = tmp_path / "out.pcap"
    proc = midstat("-r", str(capture), "--write", str(out), "--match", "ended")
    assert proc.returncode == 0, proc.stderr
    written = _frames(out)
    # tshark's streams: the damaged segment goes to the incarnation that holds the tuple then
    streams = _tshark(capture, "frame.time_epoch", "tcp.stream")
    assert len({s for _, s in streams}) == 2
    first_stream = [round(float(t), 6) for t, s in streams if s == "0"]
    assert [ts for ts, _ in written] == first_stream
    assert round(between[0], 6) in first_stream and round(within[0], 6) not in first_stream
    assert written == [(round(ts, 6), f) for ts, f in packets + [between]]
    assert f"wrote {len(packets) + 1} packets of 1 connection to" in proc.stderr.decode()


def _under_vlan_and_mpls(frame: bytes, vid: int, label: int) -> bytes:
    """An Ethernet/IPv4 frame re-carried as Ethernet / 802.1Q `vid` / MPLS `label` (bottom of stack) / IPv4."""
    tag = struct.pack("!HH", 0x8100, vid)
    mpls = struct.pack("!HH", 0x8847, 0) + struct.pack("!I", (label << 12) | (1 << 8) | 64)
    return frame[:12] + tag + mpls[:2] + mpls[4:] + frame[14:]


@needs_tshark
@pytest.mark.parametrize("tags", [1, 2])
def test_mpls_under_vlan_tags_passes_the_prefilter(tmp_path, tags):
    """Two connections of mixed_traffic.pcap's, one of them carried under VLAN tag(s) and an MPLS label: `--write
    --match` of it writes all its packets (the pre-filter let none through before), as tshark counts them."""
    packets, link = _packets("mixed_traffic.pcap")
    built = []
    for ts, frame in packets:
        eth = dpkt.ethernet.Ethernet(frame)
        tcp = getattr(eth.data, "data", None)
        if isinstance(tcp, dpkt.tcp.TCP) and 6002 in (tcp.sport, tcp.dport):
            frame = _under_vlan_and_mpls(frame, 30, 1000)
            if tags == 2:  # QinQ: an outer tag first
                frame = frame[:12] + struct.pack("!HH", 0x88A8, 7) + frame[12:]
        built.append((ts, frame))
    capture = tmp_path / "vlan_mpls.pcap"
    _write(capture, built, link)
    wanted = [(round(ts, 6), f) for ts, f in built if _is_6002(f)]
    assert len(wanted) > 6

    out = tmp_path / "out.pcap"
    proc = midstat("-r", str(capture), "--write", str(out), "--match", "port 6002")
    assert proc.returncode == 0, proc.stderr
    assert _frames(out) == wanted
    theirs = _tshark(capture, "frame.time_epoch", display="tcp.port == 6002 && mpls")
    assert [round(float(t), 6) for (t,) in theirs] == [ts for ts, _ in wanted]


def _is_6002(frame: bytes) -> bool:
    """One of the frames built here (only the port-6002 connection's are tagged)."""
    return frame[12:14] in (b"\x81\x00", b"\x88\xa8")
