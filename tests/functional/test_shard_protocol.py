"""One shard worker, one core-0 merger, one message protocol for every face (issue #11): real workers forked on a
real capture, their messages read as core 0 reads them.

- every message either way is one envelope (kind, ts, payload) with a kind the protocol names (engine.shard_protocol);
- a headless worker's stream is in packet-time order up to its end, and a TUI file worker's Ticks carry the same
  envelope, through the same worker entry (engine.shard_worker.shard_worker);
- a worker killed by a signal is the same line for the headless outputs and the TUI; a worker that fails is one
  ERROR line for both, and the other shards go on.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from midstat_tui.engine import shard_protocol as protocol
from midstat_tui.engine.driver import Tick
from midstat_tui.engine.headless import Job, SignalFlag
from midstat_tui.engine.shard_protocol import ShardProcesses
from midstat_tui.engine.shard_worker import HeadlessShard, TuiFileShard, shard_worker
from midstat_tui.tcp.tracker import TrackerConfig
from tests.helpers import FIXTURES

PATH = FIXTURES / "mixed_traffic.pcap"  # two dozen real connections of every kind
KINDS = {value for name, value in vars(protocol).items() if name.isupper() and isinstance(value, str)}


def _job(**kw) -> Job:
    return Job(str(PATH), None, TrackerConfig(), verify_checksums=False, **kw)


def _read_all(pipe, until: set[str], timeout: float = 30) -> list[tuple]:
    got = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pipe.poll(0.2):
            continue
        message = pipe.recv()
        got.append(message)
        if message[0] in until:
            return got
    raise AssertionError(f"no {until} within {timeout} s: {[m[0] for m in got]}")


def _envelope(message: tuple) -> None:
    assert type(message) is tuple and len(message) == 3, message
    kind, ts, _ = message
    assert kind in KINDS, kind
    assert isinstance(ts, float), message


def test_the_protocol_names_each_kind_once():
    assert len(KINDS) == len([n for n, v in vars(protocol).items() if n.isupper() and isinstance(v, str)])
    assert protocol.FINAL <= KINDS


def test_a_headless_worker_speaks_the_envelope_in_packet_time_order():
    job = _job(events=True, snapshots=True, summary=True)
    workers = ShardProcesses(2)
    halt, stop = SignalFlag(), SignalFlag()
    workers.start(shard_worker, lambda shard, link: (HeadlessShard(), job, shard, 2, link, stop, halt, None))
    try:
        streams = [_read_all(pipe, {protocol.EOF, protocol.ERROR}) for pipe in workers.pipes]
        for shard, stream in enumerate(streams):
            assert stream[-1][0] == protocol.EOF, stream[-1]
            for message in stream:
                _envelope(message)
            times = [ts for _, ts, _ in stream]
            assert times == sorted(times)  # each shard in its own packet-time order: core 0 heap-merges them
            kinds = {kind for kind, _, _ in stream}
            assert {protocol.EVENT, protocol.TICK} <= kinds
            ticks = [payload for kind, _, payload in stream if kind == protocol.TICK]
            assert all(isinstance(t, Tick) and t.connections is not None for t in ticks)
            assert all(r["shard"] == shard for t in ticks for r in t.connections)
        end = max(stream[-1][1] for stream in streams)
        for shard in range(2):
            assert workers.order(shard, protocol.END, end)  # the common end time: then the last report and rows
        for shard, pipe in enumerate(workers.pipes):
            rest = _read_all(pipe, {protocol.ROWS_END, protocol.ERROR})
            for message in rest:
                _envelope(message)
            kinds = [kind for kind, _, _ in rest]
            assert protocol.LAST in kinds and kinds[-1] == protocol.ROWS_END
            last = rest[kinds.index(protocol.LAST)][2]
            assert last[0] == end  # its timers ran to the common end
            rows = [r for kind, _, chunk in rest if kind == protocol.ROWS for r in chunk]
            assert rows and rows == sorted(rows, key=lambda r: (r[0], r[1]))
            assert {r[1] % 2 for r in rows} == {shard}  # a shard's ids: id % shards is the shard
    finally:
        workers.end()


def test_a_tui_file_worker_runs_through_the_same_entry_and_envelope():
    job = _job()
    workers = ShardProcesses(2)
    stop = workers.ctx.Event()
    workers.start(shard_worker, lambda shard, link: (TuiFileShard(0.0, None), job, shard, 2, link, stop, None))
    try:
        for pipe in workers.pipes:
            ready = _read_all(pipe, {protocol.READY, protocol.ERROR})
            assert [m[0] for m in ready] == [protocol.READY] and "packets" in ready[0][2]
        for shard, pipe in enumerate(workers.pipes):
            got: list[tuple] = []
            while not (got and got[-1][0] == protocol.TICK and got[-1][2].at_end):
                got += _read_all(pipe, {protocol.TICK})
            for message in got:
                _envelope(message)
                assert message[1] == message[2].position  # a Tick's ts is its moment
            rows = {}
            for _, _, tick in got:
                rows.update(tick.changes)
            assert rows and {row.shard for row in rows.values() if row is not None} == {shard}
        # an order and its answer, in the same envelope
        conn_id = next(i for i, row in rows.items() if row is not None)
        assert workers.order(conn_id % 2, protocol.CONN, protocol.UNTIMED, (7, conn_id))
        reply = next(m for m in _read_all(workers.pipes[conn_id % 2], {protocol.REPLY}) if m[0] == protocol.REPLY)
        _envelope(reply)
        req_id, detail = reply[2]
        assert req_id == 7 and detail[0].id == conn_id
    finally:
        stop.set()
        workers.end(grace=3)


class _Lost:
    def __init__(self) -> None:
        self.lost: list[tuple[int, str]] = []
        self.everything: list = []

    def event(self, record): ...
    def snapshot(self, ts, stats, conns): ...
    def quiet(self, ts, stats, conns): ...
    def names(self, ts, pairs): ...
    def ready(self): ...
    def clock(self, now): ...
    def end_time(self, ts): return ts
    streams_summary = False

    def last(self, ts, stats, conns, everything, warning):
        self.everything = list(everything)

    def worker_lost(self, shard, reason):
        self.lost.append((shard, reason))


def _tui_error(monkeypatch, broken) -> str:
    from midstat_tui.engine.shard_sessions import ShardedFileSession

    monkeypatch.setattr(TuiFileShard, "run", broken)  # the forked workers inherit it
    session = ShardedFileSession(_job(), 2, speed=0)
    session.start()
    try:
        deadline = time.monotonic() + 20
        while not session.error:
            assert time.monotonic() < deadline, "the lost shard was not said"
            time.sleep(0.05)
        assert session.dead == {1}
        return session.error
    finally:
        session.stop()


def _headless_lost(monkeypatch, broken) -> str:
    from midstat_tui.engine import headless

    monkeypatch.setattr(headless, "run_shard", broken)
    sink = _Lost()
    headless.run_sharded(_job(summary=True, summary_json=True), 2, sink)
    assert [shard for shard, _ in sink.lost] == [1]
    assert sink.everything  # the other shard's connections are kept
    return sink.lost[0][1]


def test_a_killed_worker_is_the_same_line_for_headless_and_the_tui(monkeypatch):
    from midstat_tui.engine import headless

    real_run, real_shard = TuiFileShard.run, headless.run_shard

    def killed_tui(self, job, shard, count, source, link, stop, halt):
        if shard == 1:
            link.send(protocol.READY, protocol.UNTIMED, {})  # started, then killed
            os.kill(os.getpid(), signal.SIGKILL)
        return real_run(self, job, shard, count, source, link, stop, halt)

    def killed_headless(job, shard, count, sink, source=None, halt=None):
        if shard == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        return real_shard(job, shard, count, sink, source, halt)

    line = "worker 1 died (killed by signal 9 (SIGKILL))"
    assert _headless_lost(monkeypatch, killed_headless) == \
        f"{line}; its share of the connections is missing from the output"
    assert _tui_error(monkeypatch, killed_tui) == \
        f"{line}: its connections stay as it last reported them; the other shards go on"


def test_a_failing_worker_is_one_error_line_for_headless_and_the_tui(monkeypatch):
    from midstat_tui.engine.headless import run_shard

    def broken_tui(self, job, shard, count, source, link, stop, halt):
        link.send(protocol.READY, protocol.UNTIMED, {})  # started, then failing
        raise RuntimeError("disk on fire")

    def broken_headless(job, shard, count, sink, source=None, halt=None):
        if shard == 1:
            raise RuntimeError("disk on fire")
        return run_shard(job, shard, count, sink, source, halt)

    assert _headless_lost(monkeypatch, broken_headless).startswith("worker 1 failed: RuntimeError: disk on fire")
    # the TUI: before, a failing shard worker printed a traceback and was "shard 1 died (exit status 1)"
    real = TuiFileShard.run

    def one_broken(self, job, shard, count, source, link, stop, halt):
        if shard == 1:
            return broken_tui(self, job, shard, count, source, link, stop, halt)
        return real(self, job, shard, count, source, link, stop, halt)

    assert _tui_error(monkeypatch, one_broken).startswith("worker 1 failed: RuntimeError: disk on fire")


@pytest.mark.parametrize("kind", [protocol.ERROR, "dead"])
def test_a_worker_lost_before_its_share_is_open_stops_the_tui_with_its_line(monkeypatch, kind):
    """A worker that cannot open its share says why (ERROR); the session does not start."""
    from midstat_tui.engine.shard_sessions import ShardedFileSession
    from midstat_tui.errors import MidstatError

    def not_opened(job, shard, count, packets=None):
        if kind == protocol.ERROR:
            raise MidstatError(f"{job.path}: no such share")
        os._exit(3)

    monkeypatch.setattr("midstat_tui.engine.shard_worker.open_share", not_opened)
    session = ShardedFileSession(_job(), 2, speed=0)
    with pytest.raises(MidstatError) as raised:
        session.start()
    want = "mixed_traffic.pcap: no such share" if kind == protocol.ERROR else "died (exit status 3)"
    assert want in str(raised.value)


# -- the wire: big arrays out of band ------------------------------------------------------------------------------
def _forked_sender(messages, then_close_mid_message: bool = False):
    """A forked process sending `messages` on a shard pipe as a worker does (`Link.send`); core 0's end returned."""
    workers = ShardProcesses(1)
    stop = workers.ctx.Event()

    def send_all(link, *_):
        for message in messages:
            link.send(*message)
        if then_close_mid_message:  # a frame that says an array follows, and then the pipe ends
            link.out.send_bytes(protocol._SIZES.pack(1) + protocol._SIZE.pack(1 << 20) + b"\x80\x05N.")
        link.close()

    workers.start(send_all, lambda shard, link: (link, stop))
    return workers


def test_a_workers_big_arrays_cross_the_pipe_whole_writable_and_in_order():
    """A TUI shard's row changes are numpy records (rowcols.RowBlock): they cross out of band, equal to what was
    sent, writable (the view keeps them by reference and settles them), between small messages in their order."""
    np = pytest.importorskip("numpy")
    from midstat_tui.engine.rowcols import ROW_DTYPE, RowBlock, available

    if not available():
        pytest.skip("no compiled core: row changes go as dicts of ConnRow")
    recs = np.zeros(200_000, dtype=ROW_DTYPE)  # 67 MB: far more than a pipe holds at once
    recs["id"] = np.arange(200_000)
    recs["bytes_c2s"] = np.arange(200_000) * 3
    block = RowBlock(recs, {7: None})
    odd = np.arange(10)[::2]  # not contiguous: goes in band
    workers = _forked_sender([(protocol.READY, protocol.UNTIMED, {"packets": 1}),
                              (protocol.TICK, 1.0, Tick(1.0, {}, block)),
                              (protocol.NAMES, 2.0, [("10.0.0.1", "a.example")]),
                              (protocol.ERROR, protocol.UNTIMED, odd)])
    try:
        got = _read_all(workers.pipes[0], {protocol.ERROR})
        assert [m[0] for m in got] == [protocol.READY, protocol.TICK, protocol.NAMES, protocol.ERROR]
        sent = got[1][2].changes
        assert isinstance(sent, RowBlock) and len(sent.parts) == 1
        arrived, rows = sent.parts[0]
        assert arrived.dtype == ROW_DTYPE and np.array_equal(arrived, recs) and rows == {7: None}
        arrived["bytes_c2s"][0] = 1  # writable, as the face's record store needs
        assert got[2][2] == [("10.0.0.1", "a.example")] and list(got[3][2]) == [0, 2, 4, 6, 8]
    finally:
        workers.end(grace=3)


def test_a_pipe_that_ends_within_a_message_is_the_pipes_end():
    """A worker killed between a message's frames: core 0 reads the pipe's end (EOFError), as for any dead worker,
    never half a message."""
    workers = _forked_sender([(protocol.READY, protocol.UNTIMED, None)], then_close_mid_message=True)
    try:
        pipe = workers.pipes[0]
        assert pipe.poll(10) and pipe.recv()[0] == protocol.READY
        assert pipe.poll(10)
        with pytest.raises(EOFError):
            pipe.recv()
    finally:
        workers.end(grace=3)


def test_a_tui_file_workers_row_changes_are_records_made_in_c():
    """The TUI's shards hand their row changes over as the compiled core's records, as one engine hands them to
    the face (a flood's second is hundreds of thousands of rows: as pickled ConnRows the 2-core TUI took 24 s to
    show a million-SYN flood, benchmarks/tui_flood.py --cores 2), and they read as the same rows."""
    from midstat_tui.capture.files import FileSource
    from midstat_tui.engine.pipeline import Engine, run_file
    from midstat_tui.engine.records import row_of
    from midstat_tui.engine.rowcols import RowBlock, available

    if not available():
        pytest.skip("no compiled core: row changes go as dicts of ConnRow")
    job = _job()
    workers = ShardProcesses(1)
    stop = workers.ctx.Event()
    workers.start(shard_worker, lambda shard, link: (TuiFileShard(0.0, None), job, shard, 1, link, stop, None))
    try:
        pipe = workers.pipes[0]
        _read_all(pipe, {protocol.READY})
        got: list[tuple] = []
        while not (got and got[-1][0] == protocol.TICK and got[-1][2].at_end):
            got += _read_all(pipe, {protocol.TICK})
        blocks = [m[2].changes for m in got if m[0] == protocol.TICK and m[2].changes]
        assert blocks and all(isinstance(b, RowBlock) for b in blocks)
        assert sum(len(recs) for b in blocks for recs, _ in b.parts) >= 20  # the rows as records, not ConnRows
        rows: dict = {}
        for block in blocks:
            rows.update(block)
        source = FileSource(str(PATH))  # one engine on the whole file, as the shard's job tracks it
        whole = run_file(Engine(source.datalink, verify_checksums=False), source.batches()).connections
        assert {i: r for i, r in rows.items() if r is not None} == {conn.id: row_of(conn) for conn in whole}
    finally:
        stop.set()
        workers.end(grace=3)
