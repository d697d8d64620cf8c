"""The compiled core (midstat_tui/_core.c) against the pure-Python engine it translates.

Both engines read the same packets; afterwards every field of every connection (both sides, the Zeek view, the
packed state history, the timer deadline), the counters, the events in order and the one-second snapshots must be
equal. On every capture of the project and of ../shared/pcaps, with and without an event sink (the compiled packet
loop finishes a state change itself only without one), with a table small enough to evict, on a synthetic mix, and
on real packet sequences mutated by hypothesis.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from itertools import islice

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from midstat_tui.capture.files import FileSource
from midstat_tui.decode import linktypes
from midstat_tui.engine.pipeline import Engine, run_file
from midstat_tui.tcp import connection
from midstat_tui.tcp.connection import PyConnection, PySide
from midstat_tui.tcp.states import ESTABLISHED
from midstat_tui.tcp.tracker import TrackerConfig
from tests.helpers import FIXTURES, ROOT, SHARED, supported_link_type

sys.path.insert(0, str(ROOT / "scripts"))
from fuzz import captures, decode_input, seed_inputs  # noqa: E402

CAPTURES = [p for p in captures() if supported_link_type(p)]
SIDE_FIELDS = PySide.__slots__
CONN_FIELDS = tuple(name for name in PyConnection.__slots__ if name not in ("c", "s"))


def test_the_compiled_core_is_built():
    """pip builds it wherever there is a C compiler (CI has one); without it midstat runs, slower."""
    assert connection.COMPILED_AVAILABLE, "midstat_tui/_core.c was not built: run `pip install -e .`"


def state_of(conn) -> dict:
    """Every attribute of a connection, either implementation, in comparable form."""
    out = {}
    for name in CONN_FIELDS:
        value = getattr(conn, name)
        out[name] = bytes(value) if name == "_log" and value is not None else value
    for side_name in ("c", "s"):
        side = getattr(conn, side_name)
        for name in SIDE_FIELDS:
            value = getattr(side, name)
            out[f"{side_name}.{name}"] = "".join(sorted(value)) if name == "z_once" else value
    out["transitions"] = conn.transitions
    out["transitions_kept"] = conn.transitions_kept
    out["states"] = (conn.client_state, conn.server_state)
    return out


def run_engine(path, compiled: bool, events: bool, config: TrackerConfig | None = None, checksums=None) -> dict:
    source = FileSource(str(path))
    log: list[tuple] = []

    def on_event(kind, conn, change, states):
        log.append((kind, conn.id, change, states, conn.client_state, conn.server_state))

    engine = Engine(source.datalink, config, on_event=on_event if events else None, compiled=compiled,
                    checksums=checksums)
    snaps: list[tuple] = []
    last = run_file(engine, source.batches(),
                    lambda snap: snaps.append((snap.ts, snap.stats, sorted(c.id for c in snap.connections))))
    at_end = {key: state_of(conn) for key, conn in engine.tracker.table.items()}
    # then every timer: idle timeouts, TIME_WAIT and the linger of ended connections
    engine.tracker.advance((engine.last_ts or 0.0) + 500_000.0)
    return {"stats": engine.stats(), "last": last.ts, "snaps": snaps, "events": log, "table": at_end,
            "after_timers": {key: state_of(conn) for key, conn in engine.tracker.table.items()},
            "after_stats": engine.stats(), "compiled_loop": engine._run is not None}


def assert_same(path, events: bool, config: TrackerConfig | None = None, checksums=None) -> dict:
    compiled = run_engine(path, True, events, config, checksums)
    python = run_engine(path, False, events, config, checksums)
    assert python["compiled_loop"] is False
    for part in ("stats", "last", "snaps", "events", "after_stats"):
        assert compiled[part] == python[part], part
    for part in ("table", "after_timers"):
        assert compiled[part].keys() == python[part].keys(), part
        for key, conn in compiled[part].items():
            assert conn == python[part][key], (part, key)
    return compiled


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_every_capture_gives_the_same_connections(path):
    result = assert_same(path, events=False)
    assert result["compiled_loop"] == (FileSource(str(path)).datalink in (
        linktypes.DLT_EN10MB, linktypes.DLT_LINUX_SLL, linktypes.DLT_LINUX_SLL2))


@pytest.mark.parametrize("path", CAPTURES[::3], ids=lambda p: p.name)
def test_the_same_events_in_the_same_order(path):
    assert_same(path, events=True)


@pytest.mark.parametrize("path", CAPTURES[1::4], ids=lambda p: p.name)
def test_the_same_evictions_with_a_small_table(path):
    assert_same(path, events=False, config=TrackerConfig(max_conns=40))


@pytest.mark.parametrize("events", [False, True])
@pytest.mark.parametrize("name", ["lossy_transfer.pcap", "mixed_traffic.pcap", "ipv6_close.pcap", "vlan_close.pcap"])
def test_the_same_with_offloaded_checksums(name, events, tmp_path):
    """The capturing host's own packets with unfilled checksums (checksum offload), tracked by the compiled
    loop as by Tracker.segment, and a second sender's bad checksums counted alike."""
    import socket

    from midstat_tui.decode.checksum import ChecksumPolicy
    from tests.helpers import unfilled_copy

    path = tmp_path / name
    client4, client6 = socket.inet_aton("10.231.1.1"), socket.inet_pton(socket.AF_INET6, "fd31:1::1")
    server4, server6 = socket.inet_aton("10.231.2.1"), socket.inet_pton(socket.AF_INET6, "fd31:2::1")
    spoiled = unfilled_copy(FIXTURES / name, path, (client4, client6, server4, server6))
    for host in ((client4, client6), (server4, server6)):
        result = assert_same(path, events=events, checksums=ChecksumPolicy("auto", host=host))
        stats = result["stats"]
        assert stats["offloaded_checksum"] + stats["bad_checksum"] == spoiled
        assert stats["offloaded_checksum"] > 0 and stats["bad_checksum"] > 0


def test_a_synthetic_mix(tmp_path):
    """benchmarks/synth.py's mix: IPv6, VLAN tags, scans, mid-stream pickups, RST and FIN closes, overlap."""
    path = tmp_path / "mix.pcap"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "synth.py"), str(path), "--packets", "40000",
                    "--conns", "3000", "--seconds", "20"], check=True, capture_output=True)
    result = assert_same(path, events=False)
    assert result["compiled_loop"] and result["stats"]["started"] > 1500
    assert_same(path, events=False, config=TrackerConfig(max_conns=500))


def test_a_checkpoint_of_compiled_connections_resumes_where_it_was():
    """The TUI's seek checkpoints pickle the engine: a restored compiled engine goes on exactly as the original."""
    path = SHARED / "zeek" / "Traces" / "echo-connections.pcap.gz"
    source = FileSource(str(path))
    batches = list(source.batches())
    half = len(batches) // 2
    engine = Engine(source.datalink, compiled=True)
    run_file(engine, batches[:half])
    restored = pickle.loads(pickle.dumps(engine, protocol=pickle.HIGHEST_PROTOCOL))
    assert restored.tracker.compiled and restored._run is not None
    for each in (engine, restored):
        run_file(each, batches[half:])
    assert engine.stats() == restored.stats()
    assert {k: state_of(c) for k, c in engine.tracker.table.items()} == {
        k: state_of(c) for k, c in restored.tracker.table.items()}


def test_python_code_sees_the_same_attributes():
    """The parts of the engine that stay in Python (ICMP errors, bad checksums, the views) read and write the
    compiled records through the same attribute names and types, None included."""
    conn = connection._core.Connection(7, 1, b"k", (5,), b"\x0a\0\0\x01", 1000, b"\x0a\0\0\x02", 80, 12.5)
    reference = PyConnection(7, 1, b"k", (5,), b"\x0a\0\0\x01", 1000, b"\x0a\0\0\x02", 80, 12.5)
    assert state_of(conn) == state_of(reference)
    for target in (conn, reference):
        target.c.isn = 0xFFFFFFFF
        target.c.ttl = 64
        target.c.tw_since = 3.5
        target.c.z_once += "d"
        target.c.z_once += "a"
        target.s.z_counts = {"t": 1}
        target.end_ts = 20.0
        target.record(13.0, 0, 0, 2, 0, 2, 0xFFFFFFFF, 0, 0)
        target.record(14.0, 1, 0, 3, 1, -1, 5, 6, 7)
    assert state_of(conn) == state_of(reference)
    for target in (conn, reference):
        target.c.isn = None
        target.end_ts = None
    assert state_of(conn) == state_of(reference)
    with pytest.raises(ValueError):
        conn.c.isn = 1 << 32
    with pytest.raises(TypeError):
        conn.c = object()


def test_the_history_keeps_its_head_and_newest_past_the_cap():
    conn = connection._core.Connection(1, 0, b"k", (), b"\x01\x02\x03\x04", 1, b"\x01\x02\x03\x05", 2, 0.0)
    reference = PyConnection(1, 0, b"k", (), b"\x01\x02\x03\x04", 1, b"\x01\x02\x03\x05", 2, 0.0)
    for i in range(connection.HISTORY_CAP + 30):
        for target in (conn, reference):
            target.record(float(i), i % 2, i % 11, (i + 1) % 11, i % 2, i % 256, i, i * 3, i * 7)
    assert conn.transitions == reference.transitions
    assert conn.transitions_dropped == reference.transitions_dropped == 30


SEEDS = list(islice(seed_inputs(max_per_capture=6), 300))


def _feed(frames: list[bytes], dlt: int, compiled: bool, max_conns: int) -> tuple:
    engine = Engine(dlt, TrackerConfig(max_conns=max_conns), compiled=compiled)
    batch = [(1000.0 + i * 0.25, frame) for i, frame in enumerate(frames)]
    engine.feed_batch(batch)
    engine.tracker.advance(1000.0 + len(frames) * 0.25 + 30.0)
    return engine.stats(), {key: state_of(conn) for key, conn in engine.tracker.table.items()}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.sampled_from(SEEDS), flips=st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(1, 255)),
                                                   max_size=8), max_conns=st.sampled_from([3, 1000]))
def test_mutated_packet_sequences_give_the_same_connections(seed, flips, max_conns):
    """Real packet runs with bytes flipped (flags, sequence numbers, ports, lengths...): both engines agree."""
    dlt, frames = decode_input(seed)
    frames = list(frames)
    for where, value in flips:
        if frames:
            frame = bytearray(frames[where % len(frames)])
            if frame:
                frame[(where >> 4) % len(frame)] ^= value
                frames[where % len(frames)] = bytes(frame)
    assert _feed(frames, dlt, True, max_conns) == _feed(frames, dlt, False, max_conns)


@pytest.mark.parametrize("name", ["close_client_first", "close_server_first", "simultaneous_close", "half_close",
                                  "reset_by_client", "lossy_transfer"])
def test_a_deadline_set_inside_a_batch_fires_before_the_batch_goes_on(name):
    """One batch, a packet every 0.7 s, ESTABLISHED's timeout long and every other one 0.5 s: once a connection
    starts closing, its deadline is earlier than any timer pending when the batch started, and its next packet
    comes after it. The deadline must fire before that packet, as it does in the Python engine."""
    source = FileSource(str(FIXTURES / f"{name}.pcap"))
    frames = [frame for batch in source.batches() for _, frame in batch]
    batch = [(1000.0 + i * 0.7, frame) for i, frame in enumerate(frames)]
    timeouts = dict.fromkeys(range(11), 0.5)
    timeouts[ESTABLISHED] = 100.0
    config = TrackerConfig(time_wait=0.5, linger=100.0, idle_timeouts=timeouts)
    seen = []
    for compiled in (True, False):
        engine = Engine(source.datalink, config, compiled=compiled)
        engine.feed_batch(batch)
        seen.append((engine.stats(), {key: state_of(conn) for key, conn in engine.tracker.table.items()}))
    assert seen[0] == seen[1]
    assert {"idle_timeout", "time_wait_expired"} & set(seen[1][0]["end_reasons"])  # the case did come up
