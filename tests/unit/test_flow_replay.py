"""#13: the ladder's replay of a flow in the compiled core (`_core.flow_run`) against the same replay in Python.

Every connection of real captures (kernel-made fixtures and public captures: retransmissions, reordering, zero
windows, resets, VLANs, IPv6, mid-stream pickups, Linux cooked captures) is re-read and replayed both ways; each
packet's segment, states, state change and marks, and the private tracker's record at the end, must be the same.
The compiled way must have taken most packets (else the comparison would prove nothing)."""

from __future__ import annotations

import pytest

from midstat_tui.decode.checksum import ChecksumPolicy
from midstat_tui.decode.segment import Segment
from midstat_tui.engine import flow_packets
from midstat_tui.engine.flow_packets import FlowReader, FlowRef, attribute, flow_bpf
from midstat_tui.tcp.connection import COMPILED
from midstat_tui.tcp.tracker import TrackerConfig
from tests.helpers import FIXTURES, shared

pytestmark = pytest.mark.skipif(not COMPILED or flow_packets._core_flow_run is None,
                                reason="the compiled core is not built")

CAPTURES = [
    *(str(FIXTURES / f"{name}.pcap") for name in (
        "lossy_transfer", "mixed_traffic", "half_close", "ipv6_close", "simultaneous_close", "vlan_close",
        "reset_by_server", "reset_by_client", "midstream", "unreachable", "refused")),
    *(str(shared(rel)) for rel in (
        "zeek/Traces/tcp/ssh-dups.pcap", "arkime/tests/pcap/wireshark-retrans.pcap",
        "zeek/Traces/tcp/retransmit-fast009.pcap", "zeek/Traces/tcp/handshake-reorder.pcap",
        "zeek/Traces/tcp/missing-syn.pcap", "zeek/Traces/vlan-collisions.pcap", "zeek/Traces/wikipedia.pcap",
        "zeek/Traces/ssh/ssh.pcap", "ndpi/tests/cfgs/default/pcap/reddit.pcap", "zeek/Traces/ftp/ipv6.pcap",
        "zeek/Traces/smtp.pcap")),
]
# captures taken where the NIC fills the checksums in: read with checksums ignored (two VLAN tags; Linux SLL2)
UNCHECKED = [str(shared(rel)) for rel in ("arkime/tests/pcap/twovlan.pcap",
                                          "lwerdna-filesamples/simple_http_sll2.pcap")]


def _packet(p) -> tuple:
    seg = p.seg
    return (p.index, p.ts, p.frame, p.from_client, p.states, p.changed, p.marks, type(seg).__name__,
            tuple(getattr(seg, name) for name in type(seg).__slots__))


def _end(conn) -> tuple:
    if conn is None:
        return ()
    return tuple((side.state, side.packets, side.payload, side.retrans, side.ooo, side.zero_win, side.snd_nxt)
                 for side in (conn.c, conn.s)) + (conn.ended, conn.end_ts, conn.last, conn.history, conn.deadline)


def _both(stream, ref, datalink, config=None, keep_frames=False, checksums=None):
    fast = attribute(stream, ref, datalink, config, checksums, keep_frames)
    slow = attribute(stream, ref, datalink, config, checksums, keep_frames, compiled=False)
    return fast, slow


def _same(fast, slow, where: str) -> None:
    assert (fast.midstream, fast.initial) == (slow.midstream, slow.initial), where
    assert [_packet(p) for p in fast.packets] == [_packet(p) for p in slow.packets], where
    assert _end(fast.conn) == _end(slow.conn), where


@pytest.fixture
def counted(monkeypatch):
    """The packets the compiled replay took (the real function, counted)."""
    real = flow_packets._core_flow_run
    taken = [0]

    def run(*args):
        result = real(*args)
        taken[0] += result[2]
        return result

    monkeypatch.setattr(flow_packets, "_core_flow_run", run)
    return taken


@pytest.mark.parametrize("path", CAPTURES + UNCHECKED, ids=lambda p: p.rsplit("/", 1)[-1])
def test_compiled_replay_is_the_python_replay(path, counted):
    checksums = ChecksumPolicy("ignore") if path in UNCHECKED else None
    reader = FlowReader(path, checksums=checksums)
    try:
        rows = reader.select(None)
        assert rows
        total = 0
        for row in rows:
            ref = FlowRef.of(row)
            found = reader.scanned(ref)
            stream = found if found is not None else list(reader.packets(flow_bpf(ref, reader.datalink)))
            fast, slow = _both(stream, ref, reader.datalink, keep_frames=True, checksums=checksums)
            _same(fast, slow, f"{path} {row.c_port}->{row.s_port}")
            # every segment the tracker counted on it, and only those
            segments = sum(1 for p in fast.packets if type(p.seg) is Segment)
            assert segments == row.packets_c2s + row.packets_s2c + row.bad_checksum
            total += len(fast.packets)
    finally:
        reader.close()
    # the compiled way took the common packets: all but a connection's first, its SYNs, and those after a timer
    assert counted[0] >= total // 2 or total < 20


def test_live_watch_and_ring_replay_alike(counted):
    """The live watch's replay (tail: no first or last, the ring's headers as Segments first) both ways."""
    reader = FlowReader(str(FIXTURES / "lossy_transfer.pcap"))
    try:
        (row,) = [r for r in reader.select(None) if r.packets_c2s + r.packets_s2c > 50]
        ref = FlowRef.of(row)
        frames = reader.scanned(ref)
        # the first 20 packets as the ring has them (already decoded segments), the rest as frames
        decoded = attribute(frames[:20], ref, reader.datalink, None, None, False, compiled=False)
        held = [(p.ts, p.seg) for p in decoded.packets] + frames[20:]
        fast = attribute(held, ref, reader.datalink, None, None, True, tail=True)
        slow = attribute(held, ref, reader.datalink, None, None, True, tail=True, compiled=False)
        _same(fast, slow, "tail")
        whole = attribute(frames, ref, reader.datalink, None, None, False)
        assert [p.states for p in fast.packets] == [p.states for p in whole.packets]
    finally:
        reader.close()
    assert counted[0] >= len(frames) - 25


@pytest.mark.parametrize(("name", "seconds"), [("ndpi/tests/cfgs/default/pcap/reddit.pcap", 0.3),
                                               ("zeek/Traces/smtp.pcap", 0.05)])
def test_short_timers_replay_alike(counted, name, seconds):
    """With timeouts short enough to end connections between their packets (timers firing mid-flow, packets
    after the end, the tuple taken again)."""
    idle = dict(TrackerConfig().idle_timeouts)
    config = TrackerConfig(time_wait=seconds, linger=3 * seconds, idle_timeouts={state: seconds for state in idle})
    reader = FlowReader(str(shared(name)), config)
    try:
        rows = reader.select(None)
        ended_by_timer = [r for r in rows if r.ended in ("idle_timeout", "time_wait_expired")]
        assert len(ended_by_timer) >= 10
        for row in rows:
            ref = FlowRef.of(row)
            fast, slow = _both(reader.scanned(ref), ref, reader.datalink, config)
            _same(fast, slow, f"{row.c_port}->{row.s_port}")
    finally:
        reader.close()
    assert counted[0] > 0
