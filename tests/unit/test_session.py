"""The background session the TUI reads: replay, pause, step, seek (time travel) and the pulled deltas."""

from __future__ import annotations

import time

import pytest

from midstat_tui.capture.files import FileSource
from midstat_tui.engine import session as session_mod
from midstat_tui.engine.pipeline import Engine, run_file
from midstat_tui.engine.records import row_of
from midstat_tui.engine.session import Session
from tests.helpers import FIXTURES, apply_pulled, shared

SSH = shared("zeek/Traces/ssh/ssh.pcap")


def _session(path, speed=0.0, paused=False) -> Session:
    source = FileSource(str(path))
    session = Session(Engine(source.datalink), source, live=False, speed=speed)
    session.paused = paused
    session.start()
    return session


def _wait(cond, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.01)
    raise AssertionError("timed out")


def _reference_rows(path, until):
    source = FileSource(str(path))
    engine = Engine(source.datalink)
    snap = run_file(engine, source.batches(), until=until)
    return {conn.id: row_of(conn) for conn in snap.connections}


def test_replay_to_the_end_matches_the_batch_engine():
    session = _session(SSH)
    try:
        _wait(lambda: session.at_end)
        rows = apply_pulled({}, session.pull())
    finally:
        session.stop()
    expected = _reference_rows(SSH, until=None)
    assert rows == expected


def test_pulls_carry_only_what_changed():
    session = _session(FIXTURES / "lossy_transfer.pcap")
    try:
        _wait(lambda: session.at_end)
        first = session.pull()
        second = session.pull()
    finally:
        session.stop()
    assert first.changes and second.changes == {}


@pytest.mark.parametrize("back", [True, False])
def test_seek_equals_a_fresh_replay_to_that_moment(back, monkeypatch):
    monkeypatch.setattr(session_mod, "CHECKPOINT_EVERY", 5.0)
    reference = _reference_rows(SSH, until=None)
    first = min(r.first for r in reference.values())
    target = first + 60 * 60 * 24 * 12  # inside the capture, after several of its quiet gaps
    session = _session(SSH)
    try:
        if back:
            _wait(lambda: session.at_end)
            session.pull()
            assert len(session._checkpoints) > 2
        session.toggle_pause()  # paused: the replay stays at the target
        session.seek(target)
        _wait(lambda: session._reset or (session.position == target))
        pulled = session.pull()
        assert pulled.reset and pulled.position == target
        rows = apply_pulled({}, pulled)
    finally:
        session.stop()
    assert rows == _reference_rows(SSH, until=target)


def test_pause_and_step_one_second():
    session = _session(FIXTURES / "lossy_transfer.pcap", speed=1.0, paused=True)
    try:
        time.sleep(0.3)
        assert session.position is None  # nothing replayed while paused
        session.step(1.0)
        _wait(lambda: session.position is not None)
        assert session.paused
        # the step stops at the first tick past the start, one second of packet time at most
        assert session.first_ts is not None and session.position - session.first_ts <= 1.0
    finally:
        session.stop()


def test_speed_one_follows_capture_pace():
    path = FIXTURES / "half_close.pcap"  # 0.8 s of packets
    session = _session(path, speed=1.0)
    try:
        time.sleep(0.2)
        assert not session.at_end
        _wait(lambda: session.at_end, timeout=10)
    finally:
        session.stop()


def test_timers_fire_on_the_replay_clock_between_packets(tmp_path):
    """At capture pace, a quiet stretch of the capture still ticks: a TIME_WAIT ends when its time comes, not
    when the next packet happens to arrive (which matters most to a file's shard, that sees only its own share)."""
    import sys

    import dpkt

    from midstat_tui.tcp.tracker import TrackerConfig
    from tests.helpers import ROOT

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from synth import ACK, FIN, SYN, frame

    c, s, other = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]), bytes([10, 0, 0, 3])
    t0 = 1_700_000_000.0
    packets = [(0.00, c, s, 1, 0, SYN), (0.01, s, c, 100, 2, SYN | ACK), (0.02, c, s, 2, 101, ACK),
               (0.03, c, s, 2, 101, FIN | ACK), (0.04, s, c, 101, 3, FIN | ACK), (0.05, c, s, 3, 102, ACK),
               (3.50, other, s, 7, 0, SYN)]  # then nothing for 3.45 s
    path = tmp_path / "quiet.pcap"
    with open(path, "wb") as fh:
        writer = dpkt.pcap.Writer(fh, linktype=dpkt.pcap.DLT_EN10MB)
        for dt, src, dst, seq, ack, flags in packets:
            sport, dport = (40000, 80) if src != s else (80, 40000)
            writer.writepkt(frame(src, dst, sport, dport, seq, ack, flags, 0, None), ts=t0 + dt)
    source = FileSource(str(path))
    session = Session(Engine(source.datalink, TrackerConfig(time_wait=1.0)), source, live=False, speed=1.0)
    session.start()
    rows: dict = {}
    try:
        _wait(lambda: session.position is not None and session.position >= t0 + 2.0, timeout=10)
        rows = apply_pulled(rows, session.pull())
        assert session.position < t0 + 3.5  # the SYN at 3.5 s has not been played yet
    finally:
        session.stop()
    (closed,) = rows.values()
    assert closed.ended == "time_wait_expired"


MIXED = FIXTURES / "mixed_traffic.pcap"  # 2.5 s, two dozen real connections of every kind


def _seek_and_pull(session, target: float) -> dict:
    session.seek(target)
    deadline = time.monotonic() + 30
    while not (pulled := session.pull()).reset:
        assert time.monotonic() < deadline, "no reset after the seek"
        time.sleep(0.02)
    assert pulled.position == target
    return apply_pulled({}, pulled)


# before the first packet, in it, before it again, past the last packet, and back inside: each the table as it was
SEEKS = (-9.0, 1.5, -0.5, 0.5, 2.0, 40.0, 1000.0, 1.0, -3.0, 2.5)


@pytest.mark.parametrize("compressed", [False, True])
def test_seeks_across_the_start_and_the_end_give_the_table_of_that_moment(compressed, tmp_path):
    """Issue 9 §4: a seek before the first packet used to empty the session for good (the reader was at the end of
    the file; every later seek and the resume showed 0 connections). A .gz capture (read through a feeder) too."""
    import gzip

    reference = _reference_rows(MIXED, until=None)
    first = min(r.first for r in reference.values())
    path = MIXED
    if compressed:
        path = tmp_path / "mixed.pcap.gz"
        path.write_bytes(gzip.compress(MIXED.read_bytes()))
    session = _session(path)
    try:
        _wait(lambda: session.at_end)
        session.pull()
        session.toggle_pause()
        for offset in SEEKS:
            rows = _seek_and_pull(session, first + offset)
            assert rows == _reference_rows(MIXED, until=first + offset), offset
            if offset < 0:
                assert rows == {}
        # from before the start, resumed: the whole file again, as a replay from scratch shows it
        _seek_and_pull(session, first - 5)
        session.toggle_pause()
        _wait(lambda: session.at_end)
        rows = apply_pulled({}, session.pull())
    finally:
        session.stop()
    assert len(rows) == len(reference) == 21 and rows == reference


def test_the_capture_span_is_read_on_the_side():
    session = _session(MIXED, speed=1.0, paused=True)
    try:
        _wait(lambda: session.span is not None)
        assert session.position is None  # the replay has not moved: the range comes from a side scan
    finally:
        session.stop()
    reference = _reference_rows(MIXED, until=None)
    assert session.span == (min(r.first for r in reference.values()), max(r.last for r in reference.values()))


def test_after_a_seek_the_rates_count_afresh():
    """A rate measured across a seek is no rate: none until the replay has run on from where it landed."""
    reference = _reference_rows(MIXED, until=None)
    first = min(r.first for r in reference.values())
    session = _session(MIXED)
    try:
        _wait(lambda: session.at_end)
        assert session.pull().rates.get("pps")  # the end of a replay at full speed has a rate
        session.toggle_pause()
        _seek_and_pull(session, first + 0.5)
        assert session.pull().rates == {}
    finally:
        session.stop()
