"""The `midstat` command: argument parsing and the headless faces over the engine."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
from collections.abc import Iterable
from itertools import islice
from typing import NoReturn, TextIO

from midstat_tui import __version__
from midstat_tui.decode.checksum import MODES
from midstat_tui.decode.linktypes import link_type_name
from midstat_tui.engine import run as run_entry
from midstat_tui.engine.groups import GROUP_KEYS, group_lines, group_records
from midstat_tui.engine.headless import Job, SignalFlag, Sink, encode_json, set_on_signals
from midstat_tui.engine.hints import packet_status
from midstat_tui.engine.names import NameMap
from midstat_tui.engine.records import named_record, named_text
from midstat_tui.errors import MidstatError
from midstat_tui.limits import MAX_SECONDS, checked_number, plain_number
from midstat_tui.output.events import write_event
from midstat_tui.output.plain import midstat_table, summary_lines
from midstat_tui.output.stream import OutputStream
from midstat_tui.privileges import Target, choose_user, drop_to, keep_imports_reachable
from midstat_tui.problems import DEFAULTS, Lens, ThresholdError, parse_threshold, report, table_lines
from midstat_tui.query import QueryError, compile_query, keywords_used
from midstat_tui.tcp.connection import engine_name, engine_notice
from midstat_tui.tcp.tracker import TrackerConfig
from midstat_tui.timespec import FORMS

EXIT_OK = 0
EXIT_DAMAGED = 1   # the capture was damaged; everything before the damage was processed and reported
EXIT_ERROR = 2


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors in midstat's form: one line on stderr, status 2 (not the whole usage block)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, f"midstat: {message} (midstat --help lists the options)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
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
    p.add_argument("--buffer-size", type=int, default=32, metavar="MIB",
                   help="live: kernel capture buffer per handle, MiB (default 32; bursts beyond it are dropped and "
                        "counted)")
    p.add_argument("--cores", type=int, default=os.cpu_count() or 1, metavar="N",
                   help="track on N worker processes, each owning a share of the connections (a symmetric "
                        "hash of the connection key the decoder finds: the same results as one core), merged by "
                        "core 0; default: the number of CPUs")
    p.add_argument("--user", metavar="NAME",
                   help="as root: once the capture handles (or the file) are open, run as NAME, the TUI and every "
                        "worker included (default: the user who ran sudo, else nobody; 'root' keeps root)")

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
                          "ended, suspicious, zeek, server, client; and, or, not)")
    out.add_argument("--speed", type=float, default=None, metavar="X",
                     help="TUI, files: replay speed (1 = capture pace, 10 = ten times faster, 0 = as fast as "
                          "possible; default 1)")
    out.add_argument("--at", metavar="TIME",
                     help="only the snapshot at TIME: +SECONDS from the first packet, HH:MM:SS (UTC, on the first "
                          "packet's day), 'YYYY-MM-DD HH:MM:SS' or epoch seconds (as the TUI's g takes it)")
    out.add_argument("--group-by", choices=GROUP_KEYS, metavar="KEY",
                     help="one report of the connections grouped by KEY: server, server-host, client-host, states "
                          "(the client/server state pairs, like ss -s), vlan or zeek; at the end, at --at, or with "
                          "--summary over every connection seen (a table, or one JSON object with --json)")

    flows = p.add_argument_group("a connection's packets (with -r FILE; --match picks the connections)")
    flows.add_argument("--ladder", action="store_true",
                       help="print each matching connection as a ladder diagram: its packets as arrows between the "
                            "client and the server, each side's state where it changes (ASCII only with --plain)")
    flows.add_argument("--absolute-seq", action="store_true",
                       help="--ladder: sequence and ACK numbers as on the wire (default: relative to each side's ISN)")
    flows.add_argument("--write", metavar="FILE.pcap",
                       help="write the packets of every matching connection to a pcap file (a file: whole connections; "
                            "live: each from the moment it matches)")

    lens = p.add_argument_group("the problems lens")
    lens.add_argument("--problems", action="store_true",
                      help="the connections that look wrong, by kind, with what each kind usually means (a table, "
                           "or one JSON document with --json); at the end of a file or at --at, every second live")
    lens.add_argument("--threshold", action="append", default=[], metavar="KIND=VALUE",
                      help="a problem kind's threshold, e.g. close_wait=30 (seconds) or retransmissions=0.05 "
                           "(a share); repeatable; the TUI's too (defaults: "
                           + ", ".join(f"{k}={plain_number(v)}" for k, v in DEFAULTS.items()) + ")")
    trk = p.add_argument_group("tracking")
    trk.add_argument("--checksum", choices=MODES, metavar="MODE",
                     help="TCP checksums: auto (the default: verify, but live, packets sent by this host with an "
                          "unfilled checksum, as checksum offload leaves them, are tracked), verify (a bad checksum "
                          "is never tracked), ignore (not checked)")
    trk.add_argument("--no-checksum", action="store_true", help="the same as --checksum ignore")
    trk.add_argument("--time-wait", type=float, default=60.0, metavar="SEC",
                     help="how long a side is held in TIME_WAIT (default 60)")
    trk.add_argument("--linger", type=float, default=60.0, metavar="SEC",
                     help="how long an ended connection stays visible (default 60)")
    trk.add_argument("--keep-ended", action="store_true",
                     help="ended connections stay in the table to the end (a --linger without end, over any "
                          "--linger): a file's every connection to browse in the TUI, as --summary lists them")
    trk.add_argument("--max-conns", type=int, default=1_000_000, metavar="N",
                     help="most connections in the table; the oldest handshakes and idle ones are evicted first "
                          "(default 1000000)")
    trk.add_argument("--timeout", action="append", default=[], metavar="STATE=SEC",
                     help="idle timeout of a state, e.g. ESTABLISHED=3600 or syn-sent=30 (repeatable)")
    exp = p.add_argument_group("export (alongside any output or the TUI; README: Feeding collectors)")
    exp.add_argument("--ipfix", metavar="HOST:PORT",
                     help="send one IPFIX record per connection to a collector (nfcapd, ntopng, GoFlow2...): UDP, or "
                          "tcp://HOST:PORT")
    exp.add_argument("--ipfix-active-timeout", type=float, default=60.0, metavar="SEC",
                     help="a long connection's record goes out every SEC seconds before its end (default 60)")
    exp.add_argument("--ipfix-domain", type=int, default=1, metavar="ID",
                     help="IPFIX observation domain; on N cores, core k exports as ID+k (default 1)")
    exp.add_argument("--ipfix-source", metavar="ADDR", help="the exporter's address (the socket's source)")
    exp.add_argument("--metrics", metavar="HOST:PORT",
                     help="serve Prometheus metrics on http://HOST:PORT/metrics")
    p.add_argument("--version", action="version", version=f"midstat {__version__} ({engine_name()})")
    return p


# Bounds of every numeric option: (lowest, highest) (seconds: limits.MAX_SECONDS); past these a value is a typo.
MAX_CONNS = 1_000_000_000
MAX_BUFFER_MIB = 2047      # libpcap takes the buffer size in bytes, as a C int
MAX_SNAPLEN = 262144       # libpcap's largest
CORES_PER_CPU = 4


def max_cores() -> int:
    """More workers than CPUs only cost memory (each one is a process with its own table and Python): allow a few
    per CPU, for tests and for machines that will get busier, and no more."""
    return max(8, CORES_PER_CPU * (os.cpu_count() or 1))


def check_options(args: argparse.Namespace) -> None:
    """Every numeric option, checked before anything is opened or started."""
    if args.speed is not None:
        checked_number("--speed", args.speed, 0, 1e6)
    checked_number("--time-wait", args.time_wait, 0, MAX_SECONDS)
    checked_number("--linger", args.linger, 0, MAX_SECONDS)
    if args.keep_ended:
        args.linger = MAX_SECONDS  # (the table's bound, --max-conns, still holds: ended ones leave first)
    checked_number("--max-conns", args.max_conns, 1, MAX_CONNS)
    checked_number("--snaplen", args.snaplen, 1, MAX_SNAPLEN)
    checked_number("--buffer-size", args.buffer_size, 1, MAX_BUFFER_MIB)
    checked_number("--ipfix-active-timeout", args.ipfix_active_timeout, 1, MAX_SECONDS)
    checked_number("--ipfix-domain", args.ipfix_domain, 1, 0xFFFFFFFF - max_cores())
    if args.cores > max_cores():
        raise MidstatError(f"--cores {args.cores}: at most {max_cores()} on this machine ({CORES_PER_CPU} per CPU): "
                           "each core is a worker process with its own table, and more than the CPUs can run only "
                           "cost memory")
    checked_number("--cores", args.cores, 1, max_cores())


def _thresholds(args: argparse.Namespace) -> dict[str, float]:
    thresholds: dict[str, float] = {}
    for item in args.threshold:
        try:
            kind, value = parse_threshold(item)
        except ThresholdError as exc:
            raise MidstatError(f"--threshold {item!r}: {exc}") from None
        thresholds[kind] = value
    return thresholds


def _tracker_config(args: argparse.Namespace) -> TrackerConfig:
    check_options(args)
    args.thresholds = _thresholds(args)
    if args.problems and (args.summary or args.events or args.plain):
        raise MidstatError("--problems is a report of its own: not with --summary, --events or --plain")
    if args.absolute_seq and not args.ladder:  # nothing else prints sequence numbers: said, not ignored
        raise MidstatError("--absolute-seq is for --ladder (the ladder's sequence and ACK numbers as on the wire); "
                           "give --ladder too, or leave it out")
    return run_entry.tracker_config(args.time_wait, args.linger, args.max_conns, args.timeout)


def _checksum_mode(args: argparse.Namespace) -> str:
    if args.no_checksum and args.checksum not in (None, "ignore"):
        raise MidstatError(f"--no-checksum and --checksum {args.checksum} contradict each other")
    return "ignore" if args.no_checksum else args.checksum or "auto"


def _export_settings(args: argparse.Namespace) -> dict:
    """The Job fields of --ipfix and --metrics (the collector checked and resolved now: a bad one is said at once)."""
    collector = None
    if args.ipfix is not None:
        from midstat_tui.export.sender import check_source, parse_collector, resolve

        collector = parse_collector(args.ipfix)
        family, _ = resolve(collector)
        if args.ipfix_source is not None:
            check_source(args.ipfix_source, family)
    return {"ipfix": collector, "ipfix_domain": args.ipfix_domain, "ipfix_source": args.ipfix_source,
            "ipfix_active_timeout": args.ipfix_active_timeout, "metrics": args.metrics is not None}


def _start_metrics(args: argparse.Namespace):
    if args.metrics is None:
        return None
    from midstat_tui.export.metrics import MetricsServer

    return MetricsServer(args.metrics)


def _parse_at(text: str) -> tuple[float | None, float | None]:
    """`--at` as (absolute time, offset from the first packet); (None, None) for a time of day or a date, which
    `_resolve_at` places once the capture's first packet is known."""
    try:
        if text.startswith("+"):
            return None, checked_number("--at", float(text[1:]), 0, MAX_SECONDS, text)
        return checked_number("--at", float(text), -MAX_SECONDS * 10, MAX_SECONDS * 10, text), None
    except ValueError:
        if ":" in text:
            return None, None
        raise MidstatError(f"--at {text!r}: expected {FORMS}") from None


def _write_lines(out: TextIO, lines: list[str]) -> None:
    out.write("\n".join(lines))
    out.write("\n")


class OutputWriter(Sink):
    """The headless faces, fed by one shard directly or by core 0's merge of several."""

    streams_summary = True
    streams_snapshot = True

    def __init__(self, args: argparse.Namespace, out: TextIO, flush_events: bool = False,
                 err: TextIO | None = None) -> None:
        self.args = args
        self.out = out
        self.err = err
        self.flush_events = flush_events  # live: each line as it happens
        self.warning: str | None = None
        self.lost: list[str] = []  # workers that died: said at once on stderr; the run ends with status 1
        self.metrics = None  # export.metrics.MetricsServer, with --metrics: given every report's stats
        self.known = NameMap()  # host names the shards learned (engine.names): the records' client/server_name
        self.pcap = None  # --write live: output.pcap_write.LiveOutput

    def names(self, ts: float, pairs: list[tuple[str, str]]) -> None:
        self.known.merge(pairs)

    def frames(self, ts: float, chosen: int, frames: list, shard: int = 0) -> None:
        if self.pcap is not None:  # --write live (output.pcap_write.LiveOutput)
            self.pcap.add(shard, chosen, frames)

    def clock(self, now: float) -> None:
        if self.pcap is not None:
            self.pcap.clock(now)

    def worker_lost(self, shard: int, reason: str) -> None:
        self.lost.append(reason)
        if self.err is not None:
            self.err.write(f"midstat: warning: {reason}\n")
            self.err.flush()

    def event(self, record: dict) -> None:
        if self.args.events and not self.args.summary and self.args.at is None:
            write_event(self.out, named_record(record, self.known))
            if self.flush_events:
                self.out.flush()

    def problems(self, ts: float, rows: list, rep=None) -> None:
        """--problems: the lens's report on these rows (ConnRow: Job.rows) at `ts` (`rep`: made already)."""
        if rep is None:
            rep = report(rows, ts, self.args.thresholds)
        if self.args.json:
            self._json(rep.document())
        else:
            _write_lines(self.out, table_lines(rep))
        self.out.flush()

    def snapshot(self, ts: float, stats: dict, conns: list[dict]) -> None:
        if self.metrics is not None:
            if self.args.problems:  # the problems gauge: the counts of the report of this moment (written or not)
                rep = report(conns, ts, self.args.thresholds)
                self.metrics.update(ts, stats, rep.counts)
                if _wants_snapshots(self.args):
                    self.problems(ts, [], rep)
                return
            self.metrics.update(ts, stats)
            if not _wants_snapshots(self.args):
                return  # a tick for the metrics only
        self._snapshot(ts, stats, conns)

    def _snapshot(self, ts: float, stats: dict, conns: list[dict]) -> None:
        if self.args.problems:
            self.problems(ts, conns)
            return
        if self.args.plain:
            _write_lines(self.out, midstat_table(conns))
            capture = stats.get("capture")
            if capture:  # live: a drop is never silent
                handles = stats.get("capture_shards") or []
                per_handle = "; per handle " + ", ".join(
                    f"{i}: {h.get('received', 0)}/{h.get('dropped', 0)}/{h.get('if_dropped', 0)}"
                    for i, h in enumerate(handles) if h) if len(handles) > 1 else ""
                self.out.write(f"# capture: {capture.get('received', 0)} received, {capture.get('dropped', 0)} "
                               f"dropped by the kernel, {capture.get('if_dropped', 0)} by the interface"
                               f"{per_handle}\n")
            if stats.get("evicted"):  # nor is an eviction
                self.out.write(f"# table full: {stats['evicted']} connections evicted (--max-conns), half-open "
                               "and idle ones first\n")
            if stats.get("suspicious_rst") or stats.get("odd_rst"):
                self.out.write(f"# suspicious resets: {stats.get('suspicious_rst', 0)} out of window (not obeyed), "
                               f"{stats.get('odd_rst', 0)} with another TTL or MAC than their sender's\n")
            skipped = packet_status(stats)
            if skipped:  # packets not taken as they came are never silent either
                self.out.write(f"# {skipped}\n")
            for hint in stats.get("hints") or ():
                self.out.write(f"# hint: {hint}\n")
            ipfix = stats.get("ipfix")
            if ipfix is not None:
                self.out.write(f"# ipfix: {ipfix.get('sent', 0)} records sent to {self.args.ipfix}, "
                               f"{ipfix.get('dropped', 0)} dropped (collector down or slow), "
                               f"{ipfix.get('queued', 0)} queued\n")
            if self.metrics is not None:
                self.out.write(f"# totals: {stats.get('packets', 0)} packets, {stats.get('bytes', 0)} bytes, "
                               f"{stats.get('started', 0)} connections started, {stats.get('ended', 0)} ended, "
                               f"{stats.get('active', 0)} open\n")
        else:  # the connections come as their records' JSON texts, made as they are written
            self._json_document(f'{{"ts":{encode_json(ts)},"stats":{encode_json(stats)},"connections":[',
                                self._named(conns))
        self.out.flush()

    def last(self, ts: float, stats: dict, conns: list[dict], everything: list[dict], warning: str | None) -> None:
        args = self.args
        self.warning = warning
        ipfix = stats.get("ipfix") or {}
        if ipfix.get("dropped") and self.err is not None:  # whatever the output, lost records are never silent
            self.err.write(f"midstat: warning: IPFIX: {ipfix['dropped']} records dropped, {ipfix.get('sent', 0)} "
                           f"sent (the collector at {args.ipfix} was down or slow)\n")
            self.err.flush()
        if self.metrics is not None and args.problems:  # (--problems is alone: no --summary, no --group-by)
            rep = report(conns, ts, args.thresholds)
            self.metrics.update(ts, stats, rep.counts)
            self.problems(ts, [], rep)
            self.out.flush()
            return
        if self.metrics is not None:
            self.metrics.update(ts, stats)
        if args.group_by:
            # --summary: every connection of the run, as the JSON texts the shards made (read back one by one)
            records = (json.loads(text) for _, _, text in everything) if args.summary else conns
            table = group_records(args.group_by, records)
            if args.json:
                self.out.write(encode_json({"group_by": args.group_by, "groups": table.records()}))
                self.out.write("\n")
            else:
                _write_lines(self.out, group_lines(table))
        elif args.summary:
            if args.json:  # the connections come as (first packet, id, JSON text), encoded by the shards
                self._json_document(f'{{"stats":{encode_json(stats)},"connections":[',
                                    self._named(t for _, _, t in everything))
            else:
                write = self.out.write
                # as they come: (first packet, id, table cells), the rows wait on disk, not in memory
                lines = summary_lines(cells for _, _, cells in everything)
                while chunk := list(islice(lines, 1024)):
                    write("\n".join(chunk) + "\n")
                if self.err is not None:  # (the JSON document has them in its stats)
                    for hint in stats.get("hints") or ():
                        self.err.write(f"midstat: hint: {hint}\n")
        elif args.at is not None or args.problems or (not args.events and (args.plain or args.json)):
            self._snapshot(ts, stats, conns)  # the one at --at, or the last one at the end of the capture
        self.out.flush()

    def _named(self, texts: Iterable[str]) -> Iterable[str]:
        """Records' JSON texts with the host names known by now (none known: the texts as they are)."""
        known = self.known
        if not known:
            return texts
        return (named_text(text, known) for text in texts)

    def _json_document(self, head: str, texts: Iterable[str]) -> None:
        """`head`, the records' JSON texts joined by commas, and the document's end: a chunk at a time, so that a
        flood's million texts are never joined in memory."""
        write = self.out.write
        write(head)
        texts = iter(texts)
        comma = ""
        while chunk := list(islice(texts, 1024)):
            write(comma)
            write(",".join(chunk))
            comma = ","
        write("]}\n")

    def _json(self, doc: dict) -> None:
        self.out.write(encode_json(doc))
        self.out.write("\n")


def _speed(args: argparse.Namespace) -> float:
    return 1.0 if args.speed is None else args.speed


def _wants_snapshots(args: argparse.Namespace) -> bool:
    if args.problems:
        return args.interface is not None and args.at is None  # a file: one report, at the end or at --at
    return (args.at is None and not args.summary and not args.group_by
            and (args.plain or (args.json and not args.events)))


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    headless = (args.plain or args.json or args.events or args.summary or args.problems or args.at is not None
                or bool(args.group_by) or (args.write is not None and args.interface is not None))
    if headless and args.speed is not None:
        raise MidstatError("--speed paces the TUI's replay; a headless run reads a file as fast as it can (--at gives "
                           "the state at a moment; --metrics serves figures while a live run goes on)")
    if args.group_by and (args.events or args.plain or args.problems):
        other = "--events" if args.events else "--plain" if args.plain else "--problems"
        raise MidstatError(f"--group-by writes one report: it does not go with {other}")
    notice = engine_notice()
    if notice:
        err.write(f"midstat: note: {notice}\n")
        err.flush()
    config = _tracker_config(args)
    if args.match is not None:
        try:
            compile_query(args.match, Lens(thresholds=args.thresholds))
        except QueryError as exc:
            raise MidstatError(f"--match {args.match!r}: {exc}") from None
        if headless and args.cores > 1 and "name" in keywords_used(args.match) and args.read is not None \
                and (args.read == "-" or not os.path.isfile(args.read)):
            # a file's or an interface's shards each learn every DNS answer (engine.names); a once-only stream's
            # packets are handed out by core 0, each to one shard: read on one core, whose names are all of them
            args.cores = 1
            err.write("midstat: note: --match uses 'name' on a pipe: read on one core (on several, each core would "
                      "judge it with the DNS answers of its own packets only)\n")
            err.flush()
    if args.at is not None and args.interface is not None:
        raise MidstatError("--at replays a capture file to a moment: use it with -r FILE")
    at_abs, at_off = _parse_at(args.at) if args.at is not None else (None, None)
    mode = _checksum_mode(args)
    export = _export_settings(args)
    target = choose_user(args.user)
    if args.ladder or (args.write is not None and args.interface is None):
        return run_flows(args, config, mode, target, out, err)
    if not headless:
        _load_tui()
    # before any worker is forked: every process inherits the paths that stay reachable once root is given up
    keep_imports_reachable(target)

    if args.interface is not None:
        live = run_entry.open_live(_capture_job(args, config, target))
        args.checksums = run_entry.checksum_policy(mode, args.interface)
        if not headless:
            return run_tui(args, config, live, err, target, export)
        return run_live_headless(args, config, live, out, err, target, export)

    # opened here first: a bad file or filter is said once, at once
    source = run_entry.open_file(args.read, args.filter, target)
    if args.at is not None and at_abs is None and at_off is None:
        at_abs = run_entry.resolve_at(args.at, source, FORMS)
    args.checksums = run_entry.checksum_policy(mode, None)
    if not headless:
        if source.stdin:
            _keys_from_the_terminal(source)
        return run_tui(args, config, source, err, target, export)
    run_entry.check_link(source, source.path)
    cores = args.cores
    job = Job(args.read, args.filter, config, checksums=args.checksums, match=args.match, until=at_abs,
              until_offset=at_off, events=bool(args.events), snapshots=_wants_snapshots(args),
              summary=bool(args.summary), summary_json=bool(args.summary and (args.json or args.group_by)),
              datalink=source.datalink,
              snapshot_json=not args.plain and not args.group_by,  # --group-by reads the records
              user=target, rows=bool(args.problems), thresholds=args.thresholds, **export)
    writer = OutputWriter(args, out, err=err)
    writer.metrics = _start_metrics(args)
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    # Ctrl-C / SIGTERM: reading stops at the next batch and what was read is reported (on several cores, by every
    # shard, merged)
    halt = SignalFlag()
    set_on_signals(halt)
    try:
        with contextlib.suppress(KeyboardInterrupt):  # stopped while the report was being written: what was
            run_entry.run_headless_file(job, cores, writer, source, halt)  # written is flushed
        # the run is over: a late Ctrl-C or SIGTERM must not cut its output in half
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        out.flush()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if writer.metrics is not None:
            writer.metrics.close()
    if writer.warning:
        err.write(f"midstat: warning: {writer.warning}\n")
        return EXIT_DAMAGED
    return EXIT_DAMAGED if writer.lost else EXIT_OK


def run_flows(args: argparse.Namespace, config: TrackerConfig, mode: str, target: Target | None, out: TextIO,
              err: TextIO) -> int:
    """`--ladder` and `--write`: a first pass picks the connections (--match), then their packets are read again."""
    from midstat_tui.engine.flow_packets import FlowReader, FlowRef
    from midstat_tui.output.ladder import ladder_text
    from midstat_tui.output.pcap_write import PcapWriter, open_output, write_connections, wrote_line

    what = "--ladder" if args.ladder else "--write"
    if args.interface is not None:
        raise MidstatError(f"{what} reads the connections' packets from a capture file: use it with -r FILE "
                           "(live, the flow screen of the TUI shows a connection's ladder and 'w' writes it)")
    others = [name for name, on in (("--json", args.json), ("--events", args.events), ("--summary", args.summary),
                                    ("--at", args.at is not None), ("--problems", args.problems),
                                    ("--group-by", bool(args.group_by)),
                                    ("--plain", args.plain and not args.ladder)) if on]
    if others:
        live = "; live, --write goes with the other outputs" if what == "--write" else ""
        raise MidstatError(f"{what} on a file is a run of its own: not with {', '.join(others)} (run them one after "
                           f"the other{live})")
    args.checksums = run_entry.checksum_policy(mode, args.interface)
    reader = FlowReader(args.read, config, args.checksums, user=target, bpf=args.filter)
    fd = open_output(args.write) if args.write is not None else None  # before root is given up
    try:
        run_entry.check_link(reader, args.read)
        reader.hand_over(target)
        drop_to(target)
        rows = reader.select(args.match, args.thresholds)
        if args.ladder:
            for row in rows:
                flow = reader.flow(FlowRef.of(row))
                out.write(ladder_text(flow, plain=args.plain, absolute=args.absolute_seq, row=row,
                                      origin=reader.first_ts))
                out.write("\n")
        if fd is not None:
            writer = PcapWriter(fd, reader.datalink, args.write)
            fd = None
            try:
                written = write_connections(reader, rows, writer)
            finally:
                writer.close()
            err.write(f"midstat: {wrote_line(written, len(rows), args.write)}\n")
        if not rows:
            err.write(f"midstat: no connection{' matches ' + repr(args.match) if args.match else ''} in "
                      f"{args.read}\n")
            for hint in reader.hints:
                err.write(f"midstat: hint: {hint}\n")
    finally:
        reader.close()
        if fd is not None:
            os.close(fd)
    out.flush()
    if reader.warning:
        err.write(f"midstat: warning: {reader.warning}\n")
        return EXIT_DAMAGED
    return EXIT_OK


def run_live_headless(args: argparse.Namespace, config: TrackerConfig, source, out: TextIO, err: TextIO,
                      target: Target | None, export: dict | None = None) -> int:
    """Live capture, headless, on one core or several (one handle per shard, keeping its share: merged by
    core 0); timers and snapshots on the clock; SIGINT/SIGTERM stop it and the outputs close."""
    datalink = source.datalink
    run_entry.check_link(source, args.interface)
    stop = SignalFlag()
    set_on_signals(stop)
    job = Job("", args.filter, config, checksums=args.checksums, match=args.match,
              events=bool(args.events), snapshots=_wants_snapshots(args), summary=bool(args.summary),
              summary_json=bool(args.summary and (args.json or args.group_by)), interface=args.interface,
              snaplen=args.snaplen,
              snapshot_json=not args.plain and not args.group_by,  # --group-by reads the records
              promisc=not args.no_promisc, buffer_mib=args.buffer_size, user=target, datalink=datalink,
              rows=bool(args.problems), thresholds=args.thresholds, write=args.write is not None,
              **(export or {}))
    writer = OutputWriter(args, out, flush_events=True, err=err)
    if args.write is not None:  # opened now, as root (a folder only root may write works), written by core 0
        from midstat_tui.output.pcap_write import LiveOutput, PcapWriter, open_output

        fd = open_output(args.write)
        writer.pcap = LiveOutput(PcapWriter(fd, datalink, args.write), args.cores)
    writer.metrics = _start_metrics(args)

    def listening() -> None:
        shards = f" with {args.cores} shards" if args.cores > 1 else ""
        err.write(f"midstat: listening on {args.interface}{shards}, link type {link_type_name(datalink)}"
                  f"{', filter ' + repr(args.filter) if args.filter else ''}\n")
        err.flush()

    try:
        run_entry.run_headless_live(job, args.cores, writer, source, stop, listening)
    finally:
        if writer.metrics is not None:
            writer.metrics.close()
        if writer.pcap is not None:
            _close_live_write(writer.pcap, args.write, err)
    out.flush()
    if writer.warning:
        err.write(f"midstat: warning: {writer.warning}\n")
        return EXIT_DAMAGED
    return EXIT_DAMAGED if writer.lost else EXIT_OK


def _close_live_write(pcap, path: str, err: TextIO) -> None:
    """--write live: what is still held is written and the file closed (on every way out), then said."""
    from midstat_tui.output.pcap_write import wrote_line

    pcap.close()
    err.write(f"midstat: {wrote_line(pcap.packets, pcap.connections, path)}\n")
    err.flush()


def _keys_from_the_terminal(source) -> None:
    """`cat x.pcap | midstat -r -`: the capture came on standard input, where the TUI reads its keys. The source
    keeps its own copy of that descriptor; standard input becomes the terminal (as `less` does)."""
    try:
        tty = os.open("/dev/tty", os.O_RDWR)
    except OSError:
        source.close()
        raise MidstatError("-r -: the TUI needs a terminal to read keys from, and standard input holds the capture; "
                           "use a headless output (--summary, --plain, --json, --events)") from None
    os.dup2(tty, 0)
    os.close(tty)


def _load_tui() -> None:
    """Import the TUI's main modules before the capture starts (what it imports later stays importable after the
    drop: privileges.keep_imports_reachable)."""
    import midstat_tui.engine.session  # noqa: F401
    import midstat_tui.ui.app  # noqa: F401


def _capture_job(args: argparse.Namespace, config: TrackerConfig, target: Target | None, datalink: int = 1,
                 export: dict | None = None) -> Job:
    """What the TUI's engine needs to know of the capture (and what opens a live handle)."""
    return Job(args.read or "", args.filter, config, checksums=getattr(args, "checksums", None),
               interface=args.interface, snaplen=args.snaplen, promisc=not args.no_promisc,
               buffer_mib=args.buffer_size, user=target, datalink=datalink, **(export or {}))


def run_tui(args: argparse.Namespace, config: TrackerConfig, source, err: TextIO, target: Target | None,
            export: dict | None = None) -> int:
    """The interactive face: the engine's session (engine.run: one core, or shard processes merged by core 0)
    runs in the background, the Textual app takes its Ticks."""
    metrics = _start_metrics(args)  # listening before root is given up
    job = _capture_job(args, config, target, source.datalink, export)
    session = run_entry.tui_session(job, args.cores, source, _speed(args))
    try:
        return _run_app(session, args, err, metrics)
    finally:
        if getattr(session, "source", None) is source:  # one core: the session read it (shards closed it at once)
            source.close()


def _run_app(session, args: argparse.Namespace, err: TextIO, metrics=None) -> int:
    """The app over a started session; quitting stops the session (which sends --ipfix's last records) and the
    metrics server (`metrics`: given the stats the app pulls, once a second)."""
    from midstat_tui.ui.app import MidstatApp

    app = MidstatApp(session)
    if metrics is not None:
        app.on_stats = metrics.update
    app.view.linger = args.linger  # a replaced incarnation of a reused port stays as long as an ended one
    app.view.set_thresholds(args.thresholds)
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
        if metrics is not None:
            metrics.close()
    if session.error:
        err.write(f"midstat: {session.error}\n")
        return EXIT_DAMAGED
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # every byte of the output goes through one writer: complete writes, or a one-line error (never a short write
    # lost under PYTHONUNBUFFERED, never a traceback on a full disk)
    out: OutputStream | TextIO
    try:
        sys.stdout.flush()
        out = OutputStream(sys.stdout.fileno())
    except (OSError, ValueError):  # no descriptor: a caller in this process gave its own stream (scripts, tests)
        out = sys.stdout
    try:
        try:
            return run(args, out, sys.stderr)
        finally:
            out.flush()
    except MidstatError as exc:
        sys.stderr.write(f"midstat: {exc}\n")
        return exc.status
    except BrokenPipeError:
        # the reader went away (| head): not an error of ours; keep the interpreter's final flush quiet
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK

