"""The compiled capture reader (`_core.Reader`, capture/files.py's `batches(frames=True)`) against libpcap's reading
(`batches()`): the same frames, the same timestamps, in the same order, the same late-packet count, the same warning
on damage, on every capture of the project and of the shared set, whole, in shares, and on hostile files made here
(classic pcap in both byte orders with micro- and nanosecond times, pcapng with several interfaces, timestamp
resolutions and offsets, blocks it skips or leaves to libpcap), cut and flipped at random (hypothesis)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from midstat_tui.capture.files import FileSource
from midstat_tui.engine.placement import Placer, Share
from midstat_tui.errors import MidstatError
from tests.helpers import FIXTURES, SHARED, supported_link_type

_core = pytest.importorskip("midstat_tui._core")
if not hasattr(_core, "Reader"):
    pytest.skip("a compiled core without the reader", allow_module_level=True)

CAPTURES = sorted(p for p in SHARED.rglob("*") if p.suffix in (".pcap", ".pcapng")) + sorted(
    FIXTURES.rglob("*.pcap"))


def read(path, frames: bool, share: tuple[int, int] | None = None) -> tuple[list, str | None, int, int, bool]:
    """(packets, warning, packets read, late packets kept, whether the compiled reader took any batch)."""
    source = FileSource(str(path))
    if share is not None:
        source.share = Share(Placer(source.datalink, share[0]), share[1])
    packets: list = []
    compiled = False
    for batch in source.batches(frames=frames):
        compiled = compiled or isinstance(batch, _core.Frames)
        packets.extend(batch[:])
    return packets, source.warning, source.delivered, source.clock.late, compiled


def same_as_libpcap(path, share: tuple[int, int] | None = None) -> bool:
    """Assert both readings agree; return whether the compiled reader read any of it."""
    expected = read(path, False, share)
    got = read(path, True, share)
    assert got[0] == expected[0]            # frames and timestamps, in order
    assert got[1:4] == expected[1:4]        # warning, packets read, late packets
    return got[4]


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_every_capture_reads_as_libpcap_reads_it(path):
    try:
        compiled = same_as_libpcap(path)
    except MidstatError:
        pytest.skip("libpcap cannot open it")
    if supported_link_type(path) and path.name != "llc.pcap":
        assert compiled  # the project's link types are the compiled reader's


@pytest.mark.parametrize("path", [p for p in CAPTURES if p.stat().st_size > 20_000], ids=lambda p: p.name)
@pytest.mark.parametrize("count", [2, 3])
def test_each_share_is_what_libpcap_and_the_placer_keep(path, count):
    if not supported_link_type(path):
        pytest.skip("a link type midstat does not track")
    shares = [read(path, True, (count, shard)) for shard in range(count)]
    for shard in range(count):
        expected = read(path, False, (count, shard))
        assert shares[shard][:4] == expected[:4]
    assert sum(len(s[0]) for s in shares) == len(read(path, False)[0])


def test_the_packet_loop_takes_frames_as_it_takes_a_list():
    """A batch from the file's block and the list of the same packets leave the engine in the same state."""
    from midstat_tui.engine.pipeline import Engine, run_file
    from midstat_tui.engine.records import record_text

    path = FIXTURES / "mixed_traffic.pcap"
    results = []
    for frames in (False, True):
        source = FileSource(str(path))
        engine = Engine(source.datalink)
        snap = run_file(engine, source.batches(frames=frames))
        results.append((snap.stats, sorted(record_text(c) for c in engine.tracker.table.values())))
    assert results[0] == results[1]


def test_frames_behave_as_the_list_of_packets():
    reader = _core.Reader(str(FIXTURES / "half_close.pcap"), 1, 0, 16)
    batch = reader.next()
    packets = FileSource(str(FIXTURES / "half_close.pcap")).batches().__next__()[:16]
    assert len(batch) == 16 and batch[:] == packets and batch[-1] == packets[-1] and list(batch) == packets
    assert batch[3:9:2] == packets[3:9:2]
    with pytest.raises(IndexError):
        batch[16]
    kept, late = batch.drop([0, 5])
    assert kept[:] == [p for i, p in enumerate(packets) if i not in (0, 5)] and late == 0
    assert reader.delivered == 16


HOSTILE_CHECKS = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]


# -- files made here ---------------------------------------------------------------------------------------------
def frame(i: int, size: int) -> bytes:
    """An Ethernet/IPv4/TCP frame of `size` bytes (at least 54), its ports from `i`."""
    eth = b"\x02\0\0\0\0\x01\x02\0\0\0\0\x02\x08\x00"
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, size - 14, i & 0xFFFF, 0, 64, 6, 0, bytes([10, 0, 0, 1]),
                     bytes([10, 0, 0, 2]))
    tcp = struct.pack("!HHIIBBHHH", 1024 + i % 4000, 80, i, 0, 0x50, 0x10, 1000, 0, 0)
    return (eth + ip + tcp + bytes(size))[:size]


def classic(records: list[tuple[int, int, bytes]], big: bool, nano: bool, snaplen: int = 65535,
            linktype: int = 1) -> bytes:
    order = ">" if big else "<"
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = bytearray(struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype))
    for sec, frac, data in records:
        out += struct.pack(order + "IIII", sec, frac, len(data), len(data)) + data
    return bytes(out)


def block(order: str, kind: int, body: bytes) -> bytes:
    body += bytes(-len(body) % 4)
    size = len(body) + 12
    return struct.pack(order + "II", kind, size) + body + struct.pack(order + "I", size)


def option(order: str, code: int, value: bytes) -> bytes:
    return struct.pack(order + "HH", code, len(value)) + value + bytes(-len(value) % 4)


def pcapng(ifaces: list[tuple[int, int | None, int]], packets: list[tuple[int, int, bytes]], big: bool,
           extra: list[tuple[int, int]] | None = None) -> bytes:
    """ifaces: (link type, if_tsresol byte or None, if_tsoffset); packets: (interface, timestamp in its units,
    frame); extra: (position in the packets, block type) of other blocks (statistics, names, a simple packet)."""
    o = ">" if big else "<"
    out = bytearray(block(o, 0x0A0D0D0A, struct.pack(o + "IHHq", 0x1A2B3C4D, 1, 0, -1)))
    for linktype, resol, offset in ifaces:
        opts = b""
        if resol is not None:
            opts += option(o, 9, bytes([resol]))
        if offset:
            opts += option(o, 14, struct.pack(o + "q", offset))
        out += block(o, 1, struct.pack(o + "HHI", linktype, 0, 0) + opts + (option(o, 0, b"") if opts else b""))
    inserts = dict(extra or [])
    for n, (iface, ts, data) in enumerate(packets):
        if n in inserts:
            kind = inserts[n]
            body = struct.pack(o + "I", len(data)) + data if kind == 3 else struct.pack(o + "I", 0) + bytes(8)
            out += block(o, kind, body)
        out += block(o, 6, struct.pack(o + "IIIII", iface, ts >> 32, ts & 0xFFFFFFFF, len(data), len(data)) + data)
    return bytes(out)


COMPILED_READ: list[bool] = []  # (manual check that the hostile files reach the compiled reader: not asserted)


def check(tmp_path, data: bytes, name: str = "made.pcap") -> bool:
    path = tmp_path / name
    path.write_bytes(data)
    try:
        compiled = same_as_libpcap(path)
    except MidstatError:  # libpcap cannot open it: neither reads it (the compiled reader is never asked)
        compiled = False
    COMPILED_READ.append(compiled)
    return compiled


@pytest.mark.parametrize("big", [False, True])
@pytest.mark.parametrize("nano", [False, True])
def test_classic_byte_orders_and_nanoseconds(tmp_path, big, nano):
    records = [(1_700_000_000 + i // 3, (i * 123_457 % 1_000_000) * (1000 if nano else 1) + (999 if nano else 0),
                frame(i, 60 + i % 40)) for i in range(3000)]
    records[500] = (1_600_000_000, 5, records[500][2])  # a late packet: dated at the latest time, counted
    assert check(tmp_path, classic(records, big, nano))


def test_pcapng_several_interfaces_resolutions_and_offsets(tmp_path):
    ifaces = [(1, None, 0), (1, 9, 0), (1, 3, 0), (1, 6, 3600)]
    units = [10**6, 10**9, 10**3, 10**6]
    packets = []
    for i in range(4000):
        iface = i % 4
        packets.append((iface, (1_700_000_000 * units[iface]) + i * units[iface] // 1000 + i % 7, frame(i, 74)))
    for big in (False, True):
        assert check(tmp_path, pcapng(ifaces, packets, big, extra=[(10, 5), (20, 4), (3000, 0xBAD)]), "m.pcapng")


@pytest.mark.parametrize("kind", [3, 2])
def test_pcapng_blocks_left_to_libpcap(tmp_path, kind):
    """A simple packet block (no time, no interface) and the obsolete packet block: libpcap reads on from there."""
    packets = [(0, 1_700_000_000_000_000 + i, frame(i, 60)) for i in range(100)]
    assert check(tmp_path, pcapng([(1, None, 0)], packets, False, extra=[(50, kind)]), "s.pcapng")


def test_binary_resolution_and_other_link_types_are_libpcaps(tmp_path):
    packets = [(0, (1_700_000_000 << 20) + i, frame(i, 60)) for i in range(100)]
    assert not check(tmp_path, pcapng([(1, 0x94, 0)], packets, False), "b.pcapng")
    assert not check(tmp_path, classic([(1, 2, b"\0" * 40)], False, False, linktype=147))


@settings(max_examples=120, deadline=None, suppress_health_check=HOSTILE_CHECKS)
@given(big=st.booleans(), nano=st.booleans(), snaplen=st.sampled_from([0, 64, 100, 65535, 262144, 0x7FFFFFFF]),
       sizes=st.lists(st.integers(54, 160), min_size=1, max_size=60), jitter=st.lists(st.integers(-3, 3), max_size=60),
       cut=st.integers(0, 12000), flips=st.lists(st.tuples(st.integers(0, 12000), st.integers(1, 255)), max_size=4))
def test_hostile_classic_files(tmp_path, big, nano, snaplen, sizes, jitter, cut, flips):
    records = [(1_700_000_000 + (jitter[i] if i < len(jitter) else i), i * (1000 if nano else 1), frame(i, size))
               for i, size in enumerate(sizes)]
    data = bytearray(classic(records, big, nano, snaplen))
    for at, value in flips:
        if at < len(data):
            data[at] ^= value
    check(tmp_path, bytes(data[:max(cut, 24)]) if cut < len(data) else bytes(data))


IDB_OPTIONS_LIBPCAP_REFUSES = {
    "decimal resolution past 10^-19": [(9, bytes([20]))],
    "binary resolution past 2^-63": [(9, bytes([0x80 | 64]))],
    "two resolutions": [(9, bytes([6])), (9, bytes([9]))],
    "two offsets": [(14, bytes(8)), (14, bytes(8))],
    "an end of options with a length": [(0, b"\0\0\0\0")],
}


@pytest.mark.parametrize("where", ["first", "second"])
@pytest.mark.parametrize("options", IDB_OPTIONS_LIBPCAP_REFUSES.values(), ids=IDB_OPTIONS_LIBPCAP_REFUSES.keys())
def test_an_interface_libpcap_refuses_is_left_to_libpcap(tmp_path, options, where):
    """An Interface Description Block libpcap refuses (its error ends the file there) is refused here too: the
    packets before it and the error are libpcap's (test_hostile_pcapng_files found a flipped if_tsresol of 20,
    which this reader took as 10^-19 and read on)."""
    o = "<"
    shb = block(o, 0x0A0D0D0A, struct.pack(o + "IHHq", 0x1A2B3C4D, 1, 0, -1))
    good = block(o, 1, struct.pack(o + "HHI", 1, 0, 0))
    bad = block(o, 1, struct.pack(o + "HHI", 1, 0, 0) + b"".join(option(o, c, v) for c, v in options)
                + option(o, 0, b""))
    stamps = [1_700_000_000_000_000 + i for i in range(5)]
    packets = [block(o, 6, struct.pack(o + "IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, 60, 60) + frame(i, 60))
               for i, ts in enumerate(stamps)]
    data = shb + (bad + b"".join(packets) if where == "first" else good + packets[0] + bad + b"".join(packets[1:]))
    check(tmp_path, data, "i.pcapng")
    if where == "first":  # libpcap cannot open it: one line, never a packet
        with pytest.raises(MidstatError, match="cannot read capture: Interface Description Block"):
            read(tmp_path / "i.pcapng", True)
        return
    packets_read, warning = read(tmp_path / "i.pcapng", True)[:2]
    assert len(packets_read) == 1 and "cut off after packet 1: Interface Description Block" in warning


@settings(max_examples=120, deadline=None, suppress_health_check=HOSTILE_CHECKS)
@given(big=st.booleans(), resols=st.lists(st.sampled_from([None, 0, 3, 6, 9, 0x94]), min_size=1, max_size=3),
       seq=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2000), st.integers(54, 120)), min_size=1, max_size=40),
       extra=st.lists(st.tuples(st.integers(0, 40), st.sampled_from([3, 4, 5, 2, 0x40000BAD])), max_size=3),
       cut=st.integers(0, 8000), flips=st.lists(st.tuples(st.integers(0, 8000), st.integers(1, 255)), max_size=3))
def test_hostile_pcapng_files(tmp_path, big, resols, seq, extra, cut, flips):
    ifaces = [(1, resol, 0) for resol in resols]
    packets = [(iface % (len(ifaces) + 1), (1_700_000_000 << 10) + step * 1000, frame(i, size))
               for i, (iface, step, size) in enumerate(seq)]
    data = bytearray(pcapng(ifaces, packets, big, extra))
    for at, value in flips:
        if at < len(data):
            data[at] ^= value
    check(tmp_path, bytes(data[:max(cut, 28)]) if cut < len(data) else bytes(data), "h.pcapng")


@pytest.mark.parametrize("cut", [True, False])
def test_a_time_past_2038(tmp_path, cut):
    """libpcap's batches read such a time unsigned, its packet-by-packet walk (after damage) signed: from such a
    packet on, libpcap reads (found by hypothesis)."""
    records = [(1_700_000_000 + i, i, frame(i, 54)) for i in range(3)]
    records[1] = (0x80000000 + 5, 1, records[1][2])
    data = classic(records, False, False)
    assert check(tmp_path, data[:-30] if cut else data)  # libpcap's reading; the first packet the compiled reader's
