"""The `midstat` command: argument parsing and the headless faces over the engine."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from typing import TextIO

from midstat_tui import __version__
from midstat_tui.decode.frame import LinkTypeError
from midstat_tui.decode.linktypes import link_type_name
from midstat_tui.engine.pipeline import Engine, Snapshot, run_file, run_live
from midstat_tui.engine.views import connection_dict, row_of
from midstat_tui.errors import MidstatError
from midstat_tui.output.events import EventWriter
from midstat_tui.output.plain import midstat_table, summary_table
from midstat_tui.query import QueryError, compile_query
from midstat_tui.tcp.connection import Connection
from midstat_tui.tcp.states import parse_state
from midstat_tui.tcp.tracker import TrackerConfig

EXIT_OK = 0
EXIT_DAMAGED = 1   # the capture was damaged; everything before the damage was processed and reported
EXIT_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="midstat",
        description="A middlebox netstat: the TCP state of both sides of every connection seen on a link "
                    "or in a capture file.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("-r", "--read", metavar="FILE",
                     help="read a capture file (pcap, pcapng, optionally gzip-compressed; - for standard input)")
    src.add_argument("-i", "--interface", metavar="IFACE", help="capture live on an interface")
    p.add_argument("-f", "--filter", metavar="BPF", help="capture filter (BPF, as tcpdump takes it)")
    p.add_argument("--snaplen", type=int, default=262144, help="live: bytes captured per packet (default 262144)")
    p.add_argument("--no-promisc", action="store_true", help="live: do not put the interface in promiscuous mode")

    out = p.add_argument_group("headless output (without one of these, the interactive TUI opens)")
    out.add_argument("--plain", action="store_true",
                     help="every second, the original midstat table (client and server state of each connection)")
    out.add_argument("--json", action="store_true",
                     help="every second, a JSON snapshot (one per line); with --summary or --at, one document")
    out.add_argument("--events", action="store_true",
                     help="one JSON line per connection start, per-side state change and end")
    out.add_argument("--summary", action="store_true",
                     help="at the end, every connection seen (a table, or JSON with --json)")
    out.add_argument("--match", metavar="EXPR",
                     help="only connections matching a filter expression, e.g. 'dport 443 and sstate close-wait' "
                          "(see README: host, net, port, sport, dport, state, cstate, sstate, vlan, midstream, "
                          "ended, zeek; and, or, not)")
    out.add_argument("--speed", type=float, default=1.0, metavar="X",
                     help="TUI, files: replay speed (1 = capture pace, 10 = ten times faster, 0 = as fast as "
                          "possible; default 1)")
    out.add_argument("--at", metavar="TIME",
                     help="only the snapshot at TIME: epoch seconds, or +SECONDS from the first packet")

    trk = p.add_argument_group("tracking")
    trk.add_argument("--no-checksum", action="store_true",
                     help="do not verify TCP checksums (captures taken on a host with checksum offload)")
    trk.add_argument("--time-wait", type=float, default=60.0, metavar="SEC",
                     help="how long a side is held in TIME_WAIT (default 60)")
    trk.add_argument("--linger", type=float, default=60.0, metavar="SEC",
                     help="how long an ended connection stays visible (default 60)")
    trk.add_argument("--max-conns", type=int, default=1_000_000, metavar="N",
                     help="most connections in the table; the oldest handshakes and idle ones are evicted first "
                          "(default 1000000)")
    trk.add_argument("--timeout", action="append", default=[], metavar="STATE=SEC",
                     help="idle timeout of a state, e.g. ESTABLISHED=3600 or syn-sent=30 (repeatable)")
    p.add_argument("--version", action="version", version=f"midstat {__version__}")
    return p


def _tracker_config(args: argparse.Namespace) -> TrackerConfig:
    config = TrackerConfig(time_wait=args.time_wait, linger=args.linger, max_conns=args.max_conns)
    for item in args.timeout:
        name, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            seconds = float(value)
            state = parse_state(name)
        except ValueError:
            raise MidstatError(f"--timeout {item!r}: expected STATE=SECONDS, e.g. ESTABLISHED=3600") from None
        config.idle_timeouts[state] = seconds
    if args.speed < 0:
        raise MidstatError("--speed must not be negative (0 plays as fast as possible)")
    if config.max_conns < 1:
        raise MidstatError("--max-conns must be at least 1")
    for name, value in (("--time-wait", config.time_wait), ("--linger", config.linger)):
        if value < 0:
            raise MidstatError(f"{name} must not be negative")
    return config


def _parse_at(text: str) -> tuple[float | None, float | None]:
    """`--at` as (absolute time, offset from the first packet)."""
    try:
        if text.startswith("+"):
            return None, float(text[1:])
        return float(text), None
    except ValueError:
        raise MidstatError(f"--at {text!r}: expected epoch seconds or +SECONDS from the first packet") from None


def _write_lines(out: TextIO, lines: list[str]) -> None:
    out.write("\n".join(lines))
    out.write("\n")


class _Stop:
    """SIGINT/SIGTERM: stop capturing, then print what was asked for."""

    def __init__(self) -> None:
        self.requested = False
        self.source = None

    def __call__(self, signum: int, frame: object) -> None:
        self.requested = True
        if self.source is not None and hasattr(self.source, "stop"):
            self.source.stop()
        else:
            raise KeyboardInterrupt


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    headless = args.plain or args.json or args.events or args.summary or args.at is not None
    config = _tracker_config(args)
    match = None
    if args.match is not None:
        try:
            match = compile_query(args.match)
        except QueryError as exc:
            raise MidstatError(f"--match {args.match!r}: {exc}") from None
    if args.at is not None and args.interface is not None:
        raise MidstatError("--at replays a capture file to a moment: use it with -r FILE")
    at_abs, at_off = _parse_at(args.at) if args.at is not None else (None, None)

    from midstat_tui.capture.files import FileSource
    from midstat_tui.capture.live import LiveSource

    source: FileSource | LiveSource
    if args.read is not None:
        source = FileSource(args.read, args.filter)
    else:
        source = LiveSource(args.interface, args.filter, snaplen=args.snaplen, promisc=not args.no_promisc)

    if not headless:
        return run_tui(args, config, source, err)

    stop = _Stop()
    stop.source = source if args.interface is not None else None
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)

    everything: list[Connection] = []
    event_writer = EventWriter(out) if args.events and not args.summary and args.at is None else None

    def on_event(kind: str, conn: Connection, change: tuple | None, states: tuple[int, int] | None) -> None:
        if kind == "start" and args.summary:
            everything.append(conn)
        if event_writer is not None and (match is None or match(row_of(conn))):
            event_writer(kind, conn, change, states)

    def chosen(connections: list[Connection]) -> list[Connection]:
        return connections if match is None else [c for c in connections if match(row_of(c))]

    try:
        engine = Engine(source.datalink, config, verify_checksums=not args.no_checksum,
                        on_event=on_event if (args.summary or event_writer) else None)
    except LinkTypeError as exc:
        raise MidstatError(f"{source.path}: {exc}") from None
    if isinstance(source, LiveSource):
        engine.capture_stats = source.stats

    on_snapshot = None
    if args.at is None and not args.summary:
        if args.plain:
            def on_snapshot(snap: Snapshot) -> None:
                _write_lines(out, midstat_table(chosen(snap.connections)))
                out.flush()
        elif args.json and not args.events:
            def on_snapshot(snap: Snapshot) -> None:
                out.write(json.dumps(snap.to_json(chosen(snap.connections)), separators=(",", ":")))
                out.write("\n")
                out.flush()

    interrupted = False
    try:
        if isinstance(source, LiveSource):
            err.write(f"midstat: listening on {source.iface}, link type {link_type_name(source.datalink)}"
                      f"{', filter ' + repr(args.filter) if args.filter else ''}\n")
            err.flush()
            last = run_live(engine, source, on_snapshot)
        else:
            last = run_file(engine, source.batches(), on_snapshot, until=at_abs, until_offset=at_off)
    except KeyboardInterrupt:
        interrupted = True
        now = engine.last_ts or 0.0
        last = engine.snapshot(now)

    if args.summary:
        if args.json:
            doc = {"stats": last.stats, "connections": [connection_dict(c) for c in chosen(everything)]}
            out.write(json.dumps(doc, separators=(",", ":")))
            out.write("\n")
        else:
            _write_lines(out, summary_table(chosen(everything)))
    elif args.at is not None:
        if args.plain:
            _write_lines(out, midstat_table(chosen(last.connections)))
        else:
            out.write(json.dumps(last.to_json(chosen(last.connections)), separators=(",", ":")))
            out.write("\n")
    elif on_snapshot is not None and not interrupted:
        on_snapshot(last)  # the last one, at the end of the capture
    out.flush()
    warning = source.warning
    if warning:
        err.write(f"midstat: warning: {warning}\n")
        return EXIT_DAMAGED
    return EXIT_OK


def run_tui(args: argparse.Namespace, config: TrackerConfig, source, err: TextIO) -> int:
    """The interactive face: the engine runs in a background session, the Textual app reads its snapshots."""
    from midstat_tui.engine.session import Session
    from midstat_tui.ui.app import MidstatApp

    try:
        engine = Engine(source.datalink, config, verify_checksums=not args.no_checksum)
    except LinkTypeError as exc:
        raise MidstatError(f"{source.path}: {exc}") from None
    live = args.interface is not None
    session = Session(engine, source, live=live, speed=args.speed)
    app = MidstatApp(session)
    if args.match:
        try:
            app.view.set_query(args.match)
        except QueryError as exc:
            raise MidstatError(f"--match {args.match!r}: {exc}") from None
    session.start()
    try:
        app.run()
    finally:
        session.stop()
        if hasattr(source, "close"):
            source.close()
    if session.error:
        err.write(f"midstat: {session.error}\n")
        return EXIT_DAMAGED
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return run(args, sys.stdout, sys.stderr)
    except MidstatError as exc:
        sys.stderr.write(f"midstat: {exc}\n")
        return exc.status
    except BrokenPipeError:
        # the reader went away (| head): not an error of ours; keep the interpreter's final flush quiet
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK

