"""The one message protocol between shard workers and core 0, and the one lifecycle of the workers (issue #11).

Every face that runs on several cores (headless and the TUI, files and live) starts its shards through
`ShardProcesses`: each worker is a forked process (lifecycle.start_worker: it dies with core 0) running
engine.shard_worker.shard_worker, with two pipes: its messages to core 0 and core 0's orders to it (`Link`, the
worker's side of both). Every message either way is one envelope, a tuple

    (kind, ts, payload)

`kind` is one of the names below (never a string literal elsewhere); `ts` is the packet time (or clock) the message
belongs to, which core 0 merges the shards' streams by (headless: events in packet-time order), UNTIMED for a
message outside that order; `payload` depends on the kind.

Worker to core 0:

| kind | ts | payload | sent by |
|---|---|---|---|
| READY | UNTIMED | the shard's counters (TUI) or None (headless live) | once its share is open and root given up |
| TICK | the second | `driver.Tick` (headless: the records in `connections`; TUI: row changes) | each second |
| QUIET | the second | `Tick` | headless: a second when only a connection left the shard's table |
| EVENT | the event's time | the event record (`--events`) | headless |
| NAMES | packet time | [(address text, name)] learned (engine.names) | headless (the TUI's ride in `Tick.names`) |
| CLOCK | the clock | None | headless live: the shard's clock, so core 0 can release events in order |
| FRAMES | the clock | (connections chosen since the last, [(ts, frame)]) | headless live `--write` (live_write) |
| EOF | its last packet | the same time | headless file: read to the end; core 0 answers END |
| LAST | UNTIMED | (ts, stats, records, warning) | headless: the last report |
| ROWS | UNTIMED | a chunk of `--summary` records | headless, after LAST |
| ROWS_END | UNTIMED | None | headless: the end of ROWS |
| STOPPED | UNTIMED | why | TUI live: its capture ended; it keeps answering |
| REPLY | UNTIMED | (request id, the flow's row, counters, history or None) | TUI: answers CONN |
| WATCHING | UNTIMED | (key, datalink, packets seen, ring) | TUI live: answers WATCH (flow_packets.ShardWatches) |
| WATCHED | UNTIMED | (key, frames) | TUI live: a watched flow's frames, once a tick |
| ERROR | UNTIMED | the line to show | any worker that fails (then it ends) |

Core 0 to a worker:

| kind | ts | payload | |
|---|---|---|---|
| END | the common end time | None | headless: answers EOF; every shard runs its timers to there |
| CONN | UNTIMED | (request id, connection id) | TUI: a flow's history |
| PAUSE | UNTIMED | (paused, pacing anchor) | TUI file |
| SPEED | UNTIMED | (speed, pacing anchor) | TUI file |
| STEP | the target | None | TUI file |
| SEEK | the target | (the seek's number, pacing anchor) | TUI file: its Ticks say the last seek done (Tick.seek) |
| RUN_TO | the file's end | None | TUI file: a shard at the end of its share runs its timers on to the file's end |
| WATCH | UNTIMED | flow_packets.FlowRef | TUI live: keep that flow's packets |
| UNWATCH | UNTIMED | the flow's key | TUI live |

Core 0 to a headless worker whose packets it reads from a once-only source (a pipe, a FIFO), on a third pipe:

| kind | ts | payload | |
|---|---|---|---|
| PACKETS | UNTIMED | (the shard's packets of a batch, how many of them were late) | headless._dispatch |
| PACKETS_END | UNTIMED | the source's damage warning or None | the end of the source |

On the wire (worker to core 0), a message is pickled with its big arrays out of band (`send_message`,
`MessagePipe.recv`): the TUI's row changes are numpy records (engine.rowcols.RowBlock, 336 bytes a connection), and a
flood's second is hundreds of thousands of them; pickled in band they were copied four times over and took 0.4 s a
half-million-row tick end to end, out of band they go from the worker's array to core 0's in one read.

DEAD is core 0's own kind (never sent): a worker whose pipe ended or that a signal killed, with the line
`worker N died (killed by signal 9 (SIGKILL))` (`ShardProcesses.died`), the same for every face.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import multiprocessing
import os
import pickle
import signal
import struct
import threading
from collections.abc import Callable

from midstat_tui.lifecycle import how_it_ended, start_worker

UNTIMED = float("inf")  # the `ts` of a message outside the packet-time order

# worker -> core 0
READY = "ready"
TICK = "tick"
QUIET = "quiet"
EVENT = "event"
NAMES = "names"
CLOCK = "clock"
FRAMES = "frames"
EOF = "eof"
LAST = "last"
ROWS = "rows"
ROWS_END = "rows_end"
STOPPED = "stopped"
REPLY = "reply"
WATCHING = "watching"
WATCHED = "watched"
ERROR = "error"
DEAD = "dead"  # core 0's own: the worker is gone

# core 0 -> worker
END = "end"
CONN = "conn"
PAUSE = "pause"
SPEED = "speed"
STEP = "step"
SEEK = "seek"
RUN_TO = "run_to"
WATCH = "watch"
UNWATCH = "unwatch"
PACKETS = "packets"
PACKETS_END = "packets_end"

# the last message a worker sends before its stream is over (or, READY, before core 0 goes on with the others)
FINAL = frozenset({EOF, LAST, ERROR, READY})


F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
PIPE_BYTES = 1 << 20  # Linux's default most for an unprivileged process (/proc/sys/fs/pipe-max-size)
_SIZES = struct.Struct("<I")   # how many arrays go out of band after the pickle
_SIZE = struct.Struct("<Q")


def send_message(conn, message: tuple) -> None:
    """One message on a worker's pipe: a frame with the pickle (and the out-of-band arrays' sizes), then each array's
    bytes as they are in its memory (pickle protocol 5: numpy gives contiguous arrays out of band)."""
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(message, protocol=5, buffer_callback=buffers.append)
    raws = [buffer.raw() for buffer in buffers]
    conn.send_bytes(b"".join([_SIZES.pack(len(raws)), *(_SIZE.pack(raw.nbytes) for raw in raws), data]))
    fd = conn.fileno()
    for raw in raws:
        while raw:
            raw = raw[os.write(fd, raw):]


class MessagePipe:
    """Core 0's end of a worker's pipe, reading what `send_message` sent (`wait()` and `poll` see it as the pipe)."""

    def __init__(self, conn) -> None:
        self.conn = conn
        self._raw = io.FileIO(conn.fileno(), closefd=False)  # (reads straight into the arrays' memory)

    def fileno(self) -> int:
        return self.conn.fileno()

    def poll(self, timeout: float | None = 0.0) -> bool:
        return self.conn.poll(timeout)

    def close(self) -> None:
        self.conn.close()

    def recv(self) -> tuple:
        """The next message; EOFError or OSError once the pipe has ended (even between a message's frames)."""
        head = self.conn.recv_bytes()
        count = _SIZES.unpack_from(head)[0]
        start = _SIZES.size + count * _SIZE.size
        buffers = []
        for i in range(count):
            buffer = bytearray(_SIZE.unpack_from(head, _SIZES.size + i * _SIZE.size)[0])  # (writable arrays)
            view, got = memoryview(buffer), 0
            while got < len(buffer):
                read = self._raw.readinto(view[got:])
                if not read:
                    raise EOFError("the worker's pipe ended within a message")
                got += read
            buffers.append(buffer)
        return pickle.loads(memoryview(head)[start:], buffers=buffers)


class Link:
    """A worker's side of its two pipes: `send` its messages to core 0, `order` reads core 0's. Sends are one at a
    time (a TUI file shard sends from two threads)."""

    def __init__(self, out, orders) -> None:
        self.out = out
        self.orders = orders
        self._sending = threading.Lock()

    def send(self, kind: str, ts: float = UNTIMED, payload: object = None) -> None:
        with self._sending:
            send_message(self.out, (kind, ts, payload))

    def order(self, timeout: float | None = None) -> tuple | None:
        """Core 0's next order, waiting up to `timeout` seconds (None: until it comes); None if none came."""
        if timeout is not None and not self.orders.poll(timeout):
            return None
        return self.orders.recv()

    def close(self) -> None:
        self.out.close()


class ShardProcesses:
    """The shard workers of one run and their pipes: started together, watched for a kill, ended together."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.ctx = multiprocessing.get_context("fork")
        self.pipes: list = []      # each worker's messages (core 0 reads)
        self.orders: list = []     # core 0's orders to each worker
        self.processes: list = []

    def start(self, target: Callable[..., object], args_of: Callable[[int, Link], tuple],
              given: Callable[[int], list] | None = None) -> None:
        """Start `count` workers, each `target(*args_of(shard, link))`; `given(shard)`: the worker's ends of other
        pipes, closed here once it has them."""
        for shard in range(self.count):
            parent, child = self.ctx.Pipe(duplex=False)
            with contextlib.suppress(OSError):  # a bigger pipe: a flood's arrays in fewer, longer reads
                fcntl.fcntl(parent.fileno(), F_SETPIPE_SZ, PIPE_BYTES)
            order_in, order_out = self.ctx.Pipe(duplex=False)
            link = Link(child, order_in)
            process = start_worker(self.ctx, target, args_of(shard, link), f"midstat-shard-{shard}")
            child.close()
            order_in.close()
            for end in given(shard) if given is not None else ():
                end.close()
            self.pipes.append(MessagePipe(parent))
            self.orders.append(order_out)
            self.processes.append(process)

    def order(self, shard: int, kind: str, ts: float = UNTIMED, payload: object = None) -> bool:
        """Send a worker an order; False if it is gone."""
        try:
            self.orders[shard].send((kind, ts, payload))
        except OSError:
            return False
        return True

    def died(self, shard: int, when: str = "") -> str:
        """The line that says a worker is gone and how (`when`: while doing what)."""
        return f"worker {shard} died ({how_it_ended(self.processes[shard])}){when}"

    def watch_for_kills(self, lose: Callable[[int, str], None], over: threading.Event) -> None:
        """Until `over` is set, a worker that a signal killed (kill -9, the OOM killer) is lost at once
        (`lose(shard, line)`), whatever core 0 is waiting on. (One that failed says why itself, through its pipe; the
        process is not reaped here: `end` does that.)"""
        threading.Thread(target=self._watch, args=(lose, over), name="midstat-watch", daemon=True).start()

    def _watch(self, lose: Callable[[int, str], None], over: threading.Event) -> None:
        from multiprocessing.connection import wait

        waiting = {process.sentinel: (shard, process) for shard, process in enumerate(self.processes)}
        while waiting and not over.is_set():
            # a worker's sentinel is the end of a pipe its own children (a .gz feeder) hold too, so it may not say
            # at once that the worker died: each worker's state is also asked every half second
            wait(list(waiting), timeout=0.5)
            for sentinel, (shard, process) in list(waiting.items()):
                try:
                    info = os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
                except ChildProcessError:
                    del waiting[sentinel]
                    continue
                if info is None:
                    continue  # still running
                del waiting[sentinel]
                if info.si_code in (os.CLD_KILLED, os.CLD_DUMPED) and not over.is_set():
                    try:
                        name = signal.Signals(info.si_status).name
                    except ValueError:
                        name = "?"
                    lose(shard, f"worker {shard} died (killed by signal {info.si_status} ({name}))")

    def end(self, grace: float = 0.0) -> None:
        """Make sure every worker is gone (`grace`: seconds each may take to end by itself first)."""
        for process in self.processes:
            if grace:
                process.join(timeout=grace)
            end_process(process)


def end_process(process) -> None:
    """Make sure a worker is gone: asked first (SIGTERM), then killed (a reporting shard ignores SIGTERM)."""
    # (a worker still opening its file or handle is root for that while: core 0, dropped, may not signal it; it
    # stops by itself once it sees the halt flag, and dies with core 0 in any case)
    if process.is_alive():
        with contextlib.suppress(PermissionError):
            process.terminate()
        process.join(timeout=2)
    if process.is_alive():
        with contextlib.suppress(PermissionError):
            process.kill()
    process.join(timeout=5)
