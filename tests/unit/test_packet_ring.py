"""#13: the packet ring (live: the compiled core keeps each connection's last packet headers), checked against the
same connections' packets read from the capture file again, on real captures; and the compiled scanner that finds
a file's flow (the ladder), checked against the decoder over every packet of the file."""

from __future__ import annotations

import gc
import shutil
import subprocess

import pytest

from midstat_tui.capture.files import FileSource
from midstat_tui.decode.frame import LinkTypeError
from midstat_tui.engine.flow_packets import (
    FlowReader,
    FlowRef,
    attribute,
    ring_on,
    ring_packets,
    ring_stats,
    seeded_watch,
)
from midstat_tui.engine.pipeline import Engine
from midstat_tui.errors import MidstatError
from midstat_tui.output.ladder import ladder
from midstat_tui.tcp.connection import COMPILED
from tests.helpers import FIXTURES

pytestmark = pytest.mark.skipif(not COMPILED, reason="the packet ring lives in the compiled core")


@pytest.fixture
def ring():
    """The ring on for one test, off again after it (it is a process-wide setting)."""
    before = ring_stats()
    yield ring_on
    ring_on(before["packets"], before["budget"])


def _track(path, on_remove=None) -> Engine:
    source = FileSource(str(path))
    engine = Engine(source.datalink)
    engine.tracker.on_remove = on_remove
    try:
        for batch in source.batches():
            engine.feed_batch(batch)
    finally:
        source.close()
    return engine


def _headers(packets) -> list[tuple]:
    return [(round(p.ts, 6), p.seg.flags, p.seg.seq, p.seg.ack, p.seg.win, p.seg.payload, p.from_client)
            for p in packets]


@pytest.mark.parametrize("name", ["lossy_transfer", "close_client_first", "reset_by_server", "vlan_close",
                                  "ipv6_close", "mixed_traffic"])
@pytest.mark.parametrize("size", [4, 64])
def test_the_ring_holds_the_last_packets_the_file_holds(ring, name, size):
    ring(size, 1 << 30)
    path = FIXTURES / f"{name}.pcap"
    engine = _track(path)
    reader = FlowReader(str(path))
    try:
        checked = 0
        for conn in list(engine.tracker.table.values()):
            seen, held = ring_packets(conn)
            assert seen == conn.c.packets + conn.s.packets - conn.bad_flags  # every packet the machines ran on
            assert len(held) == min(seen, size)
            whole = reader.flow(FlowRef.of(conn)).packets
            tracked = [p for p in whole if not ({"bad_flags", "bad_csum", "late"} & set(p.marks))
                       and hasattr(p.seg, "win")]
            want = _headers(tracked)[-len(held):] if held else []
            got = [(round(ts, 6), s.flags, s.seq, s.ack, s.win, s.payload, s.src == conn.c_addr and
                    s.sport == conn.c_port) for ts, s in held]
            assert got == want, conn
            checked += 1
        assert checked
    finally:
        reader.close()


def test_a_watch_opened_after_the_fact_shows_the_rings_packets_as_a_ladder(ring):
    """What the flow screen shows for a live flow opened at its end: its last packets, through the real state
    machines, ending in the states the engine has."""
    ring(64, 1 << 30)
    engine = _track(FIXTURES / "lossy_transfer.pcap")
    (conn,) = [c for c in engine.tracker.table.values() if c.c.packets + c.s.packets > 10]
    watch = seeded_watch(engine, FlowRef.of(conn))
    flow = watch.flow()
    assert watch.ring_seen == conn.c.packets + conn.s.packets
    assert len(flow.packets) == min(64, watch.ring_seen) and all(p.frame is None for p in flow.packets)
    assert flow.packets[-1].states == (conn.c.state, conn.s.state)
    lines = ladder(flow, fold=False)
    assert sum(1 for line in lines if line.kind == "packet") == len(flow.packets)
    # a watch on another incarnation (another first packet time) gets nothing from this one's ring
    other = FlowRef(conn.c_addr, conn.c_port, conn.s_addr, conn.s_port, tuple(conn.vlan), conn.first + 1.0,
                    conn.last)
    assert seeded_watch(engine, other).ring == []


def test_the_ring_is_off_by_default_and_bounded_in_memory(ring):
    ring(0, 0)
    engine = _track(FIXTURES / "mixed_traffic.pcap")
    assert all(ring_packets(c) == (0, []) for c in engine.tracker.table.values())
    # a budget of a few rings: the first connections get one, the rest none, and the bytes stay within it
    gc.collect()  # rings of connections other tests left for the collector go first
    before = ring_stats()["used"]  # rings of connections other tests left alive count against the budget too
    ring(64, before + 200)
    engine = _track(FIXTURES / "mixed_traffic.pcap")
    assert ring_stats()["used"] - before <= 200
    kept = [c for c in engine.tracker.table.values() if ring_packets(c)[0]]
    assert 0 < len(kept) < len(engine.tracker.table)
    # the bytes go back when the connections go
    del engine, kept
    gc.collect()
    assert ring_stats()["used"] == before


def _every_flow_both_ways(path) -> int:
    """Each connection of the capture read by the compiled scanner and from every packet of the file (the
    decoder deciding each): the same packets, the same marks and states. (Not libpcap's filter: it cannot see
    through MPLS, and such a capture's flows came back empty.)"""
    reader = FlowReader(str(path))
    try:
        rows = reader.select(None)
        if reader.scanned(FlowRef.of(rows[0])) is None if rows else True:
            return 0
        for row in rows:
            ref = FlowRef.of(row)
            fast = reader.flow(ref, keep_frames=True)
            slow = attribute(reader.packets(None), ref, reader.datalink, None, None, True)
            assert [(p.ts, p.frame, p.states, p.marks) for p in fast.packets] == \
                [(p.ts, p.frame, p.states, p.marks) for p in slow.packets], row
            assert fast.packets, row
        return len(rows)
    finally:
        reader.close()


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.pcap")))
def test_the_scanner_finds_what_the_filter_finds_on_the_fixtures(name):
    assert _every_flow_both_ways(FIXTURES / name)


def test_the_scanner_finds_what_the_filter_finds_on_public_captures():
    from tests.helpers import SHARED

    checked = 0
    for path in sorted(SHARED.rglob("*.pcap*")):
        if path.suffix == ".gz" or path.stat().st_size > 5_000_000:
            continue
        try:
            checked += _every_flow_both_ways(path) > 0
        except (MidstatError, LinkTypeError):
            continue  # a capture midstat refuses is no scanner question
    assert checked >= 10


@pytest.mark.skipif(shutil.which("editcap") is None, reason="editcap (wireshark-common) is not installed")
@pytest.mark.parametrize("form", ["pcapng", "nsecpcap", "nsec-pcapng"])
@pytest.mark.parametrize("name", ["lossy_transfer", "vlan_close", "ipv6_close", "mixed_traffic"])
def test_the_scanner_reads_pcapng_and_nanosecond_files(tmp_path, form, name):
    """The fixtures rewritten by Wireshark's editcap as pcapng, as nanosecond pcap and as nanosecond pcapng: the
    scanner reads each (no fall-back to libpcap) and finds what the decoder finds in every packet."""
    src = FIXTURES / f"{name}.pcap"
    out = tmp_path / f"{name}.{form}"
    if form == "nsec-pcapng":
        nsec = tmp_path / "nsec.pcap"
        subprocess.run(["editcap", "-F", "nsecpcap", str(src), str(nsec)], check=True, capture_output=True)
        subprocess.run(["editcap", "-F", "pcapng", str(nsec), str(out)], check=True, capture_output=True)
    else:
        subprocess.run(["editcap", "-F", form, str(src), str(out)], check=True, capture_output=True)
    reader = FlowReader(str(out))
    try:
        rows = reader.select(None)
        assert rows and all(reader.scanned(FlowRef.of(row)) is not None for row in rows)
    finally:
        reader.close()
    assert _every_flow_both_ways(out) == len(rows)
