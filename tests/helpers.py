"""Shared test helpers: run captures through the real engine (no mocks) and look at the result."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import dpkt

from midstat_tui.capture.files import FileSource
from midstat_tui.engine.pipeline import Engine, Snapshot, run_file
from midstat_tui.engine.records import format_endpoint
from midstat_tui.tcp.connection import Connection
from midstat_tui.tcp.tracker import TrackerConfig

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures" / "pcaps"
SHARED = Path(os.environ.get("MIDSTAT_SHARED", ROOT.parent / "shared")) / "pcaps"


def shared(rel: str) -> Path:
    return SHARED / rel


def fixture_packets(name: str) -> list[tuple[float, bytes]]:
    """Every (timestamp, frame) of a capture in fixtures/pcaps, as the file source delivers them."""
    source = FileSource(str(FIXTURES / name))
    try:
        return [item for batch in source.batches() for item in batch]
    finally:
        source.close()


def replay(path: str | os.PathLike, until: float | None = None, checksums: bool = True,
           config: TrackerConfig | None = None) -> tuple[Engine, Snapshot, list[Connection]]:
    """Run a capture through the engine; returns the engine, the last snapshot and every connection started."""
    source = FileSource(str(path))
    started: list[Connection] = []

    def on_event(kind, conn, change, states):
        if kind == "start":
            started.append(conn)

    engine = Engine(source.datalink, config, verify_checksums=checksums, on_event=on_event)
    snap = run_file(engine, source.batches(), until=until)
    return engine, snap, started


def replay_packet_totals(path: str | os.PathLike, until: float | None = None) -> dict[tuple[int, int], list[int]]:
    """Every connection the batch engine started in the capture (up to `until`), its packets each way added up by
    (client port, server port): what an IPFIX export of the same packets adds up to (ipfix_decoder.packet_totals)."""
    _, _, started = replay(path, until=until)
    totals: dict = {}
    for conn in started:
        t = totals.setdefault((conn.c_port, conn.s_port), [0, 0])
        t[0] += conn.c.packets
        t[1] += conn.s.packets
    return totals


def names(conn: Connection) -> tuple[str, str]:
    return format_endpoint(conn.c_addr, conn.c_port), format_endpoint(conn.s_addr, conn.s_port)


def midstat(*args: str, stdin: bytes | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """The real command, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "midstat_tui", *args], capture_output=True, input=stdin,
                          timeout=timeout, cwd=ROOT)


def uids(pid: int) -> list[int]:
    """A process's real, effective, saved and filesystem user ids."""
    with open(f"/proc/{pid}/status") as fh:
        return [int(x) for x in next(line for line in fh if line.startswith("Uid:")).split()[1:]]


def nobody_uid() -> int | None:
    """The uid of the 'nobody' account, the user midstat gives root up to by default; None if there is none."""
    import pwd

    try:
        return pwd.getpwnam("nobody").pw_uid
    except KeyError:
        return None


def apply_pulled(rows: dict, pulled) -> dict:
    """A face's copy of the table after one pull from a session: a reset starts it over, None removes a row."""
    if pulled.reset:
        rows = {}
    for conn_id, row in pulled.changes.items():
        if row is None:
            rows.pop(conn_id, None)
        else:
            rows[conn_id] = row
    return rows


def supported_link_type(path: str | os.PathLike) -> bool:
    """Is the capture of a link type midstat decodes?"""
    from midstat_tui.decode import linktypes

    source = FileSource(str(path))
    try:
        return source.datalink in linktypes.SUPPORTED
    finally:
        source.close()


def _tcp_at(frame: bytes) -> tuple[bytes, int] | None:
    """(source address, offset of the TCP header) of a plain Ethernet (optionally 802.1Q) IPv4/IPv6 TCP frame."""
    at = 12
    etype = struct.unpack_from("!H", frame, at)[0]
    while etype == 0x8100:
        at += 4
        etype = struct.unpack_from("!H", frame, at)[0]
    ip = at + 2
    if etype == 0x0800 and frame[ip + 9] == 6:
        return frame[ip + 12:ip + 16], ip + (frame[ip] & 0x0F) * 4
    if etype == 0x86DD and frame[ip + 6] == 6:
        return frame[ip + 8:ip + 24], ip + 40
    return None


def unfilled_copy(path, out, sources: tuple[bytes, ...]) -> int:
    """A copy of a capture in which every TCP segment sent from `sources` has a wrong checksum, as a capture on
    that host with checksum offload has it. Returns how many were spoiled."""
    spoiled = 0
    with open(path, "rb") as src, open(out, "wb") as dst:
        reader = dpkt.pcap.Reader(src)
        writer = dpkt.pcap.Writer(dst, snaplen=262144, linktype=reader.datalink())
        for ts, frame in reader:
            found = _tcp_at(frame)
            if found is not None and found[0] in sources:
                tcp = found[1]
                frame = frame[:tcp + 16] + bytes((frame[tcp + 16] ^ 0x5A, frame[tcp + 17])) + frame[tcp + 18:]
                spoiled += 1
            writer.writepkt(frame, ts)
    return spoiled


def children(pid: int) -> list[int]:
    """A process's children, sorted (from /proc)."""
    with open(f"/proc/{pid}/task/{pid}/children") as fh:
        return sorted(int(x) for x in fh.read().split())


def alive(pid: int) -> bool:
    """Is the process there and not a zombie?"""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
