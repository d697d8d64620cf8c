"""The compiled IPFIX encoder (_core.ipfix_record / ipfix_sweep) against the Python reference (FlowRecord and
export.ipfix.encode_record): over every capture of the project and of ../shared/pcaps, two exporters watch the same
tracker, one through C and one through Python, with a short active timeout (so the sweep runs) and a table small
enough to evict; they must offer the same records, byte for byte, at the same times and in the same order."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from midstat_tui.capture.files import FileSource
from midstat_tui.engine.pipeline import Engine, run_file
from midstat_tui.export import ipfix
from midstat_tui.export.flows import FlowExporter
from midstat_tui.tcp.connection import COMPILED_AVAILABLE
from midstat_tui.tcp.tracker import TrackerConfig
from tests.helpers import ROOT
from tests.ipfix_decoder import decode

sys.path.insert(0, str(ROOT / "scripts"))
from fuzz import captures  # noqa: E402

from tests.helpers import supported_link_type  # noqa: E402

CAPTURES = [p for p in captures() if supported_link_type(p)]
pytestmark = pytest.mark.skipif(not COMPILED_AVAILABLE, reason="the compiled core is not built")


class Recorded:
    """Where an exporter's records go in these tests: kept, in order (the sender's own tests cover the socket)."""

    def __init__(self) -> None:
        self.items: list[tuple[float, bool, bytes]] = []
        self.queue, self.limit, self.dropped = self.items, 1 << 30, 0  # where the C hooks put records

    def offer(self, export_time: float, v4: bool, record: bytes) -> None:
        self.items.append((export_time, v4, record))

    def offer_many(self, items: list) -> None:
        self.items.extend(items)


def both_ways(path, config: TrackerConfig | None = None, timeout: float = 1.0) -> tuple[list, list, Engine]:
    source = FileSource(str(path))
    engine = Engine(source.datalink, config, compiled=True)
    tracker = engine.tracker
    c_side, py_side = Recorded(), Recorded()
    in_c = FlowExporter(c_side, timeout)  # type: ignore[arg-type]
    in_py = FlowExporter(py_side, timeout)  # type: ignore[arg-type]
    in_c.attach(tracker)
    assert in_c.compiled
    c_end, c_remove = tracker.on_end, tracker.on_remove

    def on_end(conn) -> None:
        c_end(conn)
        in_py.on_end(conn)

    def on_remove(conn) -> None:
        c_remove(conn)
        in_py.chained_remove = None
        in_py.on_remove(conn)

    tracker.on_end, tracker.on_remove = on_end, on_remove

    def tick(now: float) -> None:
        in_c.tick(now, tracker.table.values())
        in_py.tick(now, tracker.table.values())

    engine.on_tick = tick
    last = run_file(engine, source.batches())
    source.close()
    in_c.finish(tracker.table.values(), last.ts)
    in_py.finish(tracker.table.values(), last.ts)
    return c_side.items, py_side.items, engine


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_every_capture_gives_the_same_records(path):
    in_c, in_py, engine = both_ways(path, TrackerConfig(max_conns=40))
    assert in_c == in_py
    assert len(in_c) >= engine.stats()["started"]  # every connection went out at least once


def test_a_synthetic_mix_with_long_connections(tmp_path):
    """benchmarks/synth.py's mix (IPv6, VLAN tags, mid-stream pickups, RST and FIN closes) over 20 s with a 2 s
    active timeout: many connections go out in several slices; the records read back by an independent decoder."""
    path = tmp_path / "mix.pcap"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "synth.py"), str(path), "--packets", "40000",
                    "--conns", "2000", "--seconds", "20"], check=True, capture_output=True)
    in_c, in_py, _ = both_ways(path, timeout=2.0)
    assert in_c == in_py
    messages = ipfix.messages([(v4, record) for _, v4, record in in_c], 0, 0, 1, ipfix.template_set())
    decoded = [fields for _, fields in decode([m for m, _ in messages])]
    assert len(decoded) == len(in_c)
    reasons = [f["flowEndReason"] for f in decoded]
    assert reasons.count(ipfix.ACTIVE_TIMEOUT) > 100 and reasons.count(ipfix.END_OF_FLOW) > 100
    assert any("sourceIPv6Address" in f for f in decoded) and any(f.get("vlanId") for f in decoded)
    assert any(f["midstatFlags"] & ipfix.MIDSTREAM for f in decoded)


@pytest.mark.parametrize("stop", [0.25, 0.5, 1.0])
def test_state_pairs_in_c_count_as_python_does(tmp_path, stop):
    """The metrics' gauge by state pair (_core.state_pairs) against a count in Python, at several moments of the
    synthetic mix (open, closing and ended connections in the table)."""
    from midstat_tui.tcp.states import NAMES

    path = tmp_path / "mix.pcap"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "synth.py"), str(path), "--packets", "20000",
                    "--conns", "1500", "--seconds", "10"], check=True, capture_output=True)
    source = FileSource(str(path))
    engine = Engine(source.datalink, None, compiled=True)
    run_file(engine, source.batches(), until_offset=10 * stop)
    source.close()
    expected: dict[str, int] = {}
    for conn in engine.tracker.table.values():
        if conn.ended is None:
            name = f"{NAMES[conn.c.state]}/{NAMES[conn.s.state]}"
            expected[name] = expected.get(name, 0) + 1
    assert engine.tracker.state_pairs() == expected
    assert len(expected) >= 3 and sum(expected.values()) > 100


def test_a_full_queue_drops_and_counts_in_the_c_hooks():
    """The C hooks put end records straight into the sender's queue; once it holds its limit, each further record
    is dropped and counted on the sender, as Sender.offer does."""
    source = FileSource(str(ROOT / "fixtures" / "pcaps" / "mixed_traffic.pcap"))
    engine = Engine(source.datalink, None, compiled=True)
    sender = Recorded()
    sender.limit = 5
    exporter = FlowExporter(sender, 60.0)  # type: ignore[arg-type]
    exporter.attach(engine.tracker)
    run_file(engine, source.batches())
    source.close()
    ended = engine.stats()["ended"]
    assert ended > 5
    assert len(sender.items) == 5 and sender.dropped == ended - 5


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 4e9), st.booleans(), st.binary(min_size=1, max_size=300)), max_size=60),
       st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.booleans(), st.integers(100, 3000))
def test_messages_packed_in_c_are_pythons(pending, sequence, domain, with_templates, limit):
    """_core.ipfix_messages (the sender thread's packing) against export.ipfix.messages: the same messages, byte
    for byte, and the same record counts, for any mix of families, sizes (some larger than a message) and limits."""
    from midstat_tui.tcp.connection import _core

    templates = ipfix.template_set() if with_templates else None
    export_time = int(max(t for t, _, _ in pending)) if pending else 0
    want = ipfix.messages([(v4, r) for _, v4, r in pending], export_time, sequence, domain, templates, limit)
    assert _core.ipfix_messages(pending, sequence, domain, templates, limit) == want
