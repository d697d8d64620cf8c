"""One record contract (issue #11): every face writes engine.records.FIELDS, under the same names, with the same value
for the same connection; a row field of the same name as a record field holds the same value."""

from __future__ import annotations

import csv
import json

import pytest

from midstat_tui.columns import COLUMNS
from midstat_tui.engine.records import FIELDS, RECORD_KEYS, RENAMED, ConnRow, row_counters, row_of, row_record
from midstat_tui.output.plain import SUMMARY_COLUMNS, summary_lines, summary_row
from midstat_tui.ui.export import export_rows
from tests.helpers import FIXTURES, midstat, replay, shared

CAPTURES = [FIXTURES / "lossy_transfer.pcap", FIXTURES / "vlan_close.pcap", FIXTURES / "ipv6_close.pcap"]
SHARED_CAPTURE = shared("arkime/tests/pcap/wireshark-retrans.pcap")
TABLE_ONLY = {"rtt_ms": "rtt_client_ms + rtt_server_ms"}  # a --summary table column computed from record fields


def _captures():
    return CAPTURES + ([SHARED_CAPTURE] if SHARED_CAPTURE.exists() else [])


def _key(record: dict) -> tuple:
    return record["client"], record["server"], record["first"]


def _records(path) -> dict[tuple, dict]:
    """The contract's records of every connection of a capture, straight from the engine, by endpoints and start."""
    _, _, started = replay(path)
    return {_key(r): r for r in (row_record(row_of(conn)) for conn in started)}


_NOT_THE_ENGINES = ("conn", "shard")  # numbered by the command's shards, not by one bare engine


def test_the_contract_names_each_field_once_with_a_unit_or_a_meaning():
    assert len(set(RECORD_KEYS)) == len(RECORD_KEYS)
    assert all(f.meaning for f in FIELDS)
    # a renamed field's old name is gone, and no field means two things under one name
    assert not set(RENAMED) & set(RECORD_KEYS) and set(RENAMED.values()) <= set(RECORD_KEYS)
    for f in FIELDS:
        if f.name.startswith(("retrans_", "packets_", "bytes_", "payload_")):
            assert f.unit in ("bytes", "packets")
            assert ("bytes" in f.name or "payload" in f.name) == (f.unit == "bytes"), f


def test_rows_and_records_agree_where_their_names_agree():
    """The TUI's rows (ConnRow) and the records: a field of the same name holds the same value (before, the row's
    retrans_c2s counted segments where the record's counted bytes)."""
    shared_names = [n for n in ConnRow._fields if n in RECORD_KEYS]
    assert {"packets_c2s", "retrans_bytes_c2s", "retrans_packets_c2s", "zeek_state"} <= set(shared_names)
    differing = 0
    for path in CAPTURES:
        _, _, started = replay(path)
        for conn in started:
            row = row_of(conn)
            record = row_record(row)
            assert tuple(record) == RECORD_KEYS
            for name in shared_names:
                value = getattr(row, name)
                assert (list(value) if name == "vlan" else value) == record[name], name
            differing += row.retrans_bytes_c2s != row.retrans_packets_c2s
    assert differing  # the capture has retransmissions, where bytes and segments differ


def test_tui_columns_read_row_fields():
    """Every column reads the row's fields, but those the view keeps per connection (rates), marked as such."""
    for column in COLUMNS:
        if column.per_view:
            assert not any(hasattr(ConnRow, f) for f in column.fields), column.key
            continue
        assert all(hasattr(ConnRow, f) for f in column.fields), column.key


@pytest.mark.parametrize("path", _captures(), ids=lambda p: p.name)
def test_summary_json_and_json_write_the_contract(path):
    expected = _records(path)
    for args in (("--summary", "--json"), ("--json",)):
        proc = midstat("-r", str(path), "--cores", "1", "--user", "root", *args)
        assert proc.returncode == 0, proc.stderr
        conns = [c for line in proc.stdout.splitlines() for c in json.loads(line)["connections"]]
        assert conns
        for c in conns:
            assert tuple(c) == RECORD_KEYS
            if args[0] == "--summary":
                record = expected[_key(c)]
                assert {k: v for k, v in c.items() if k not in _NOT_THE_ENGINES} == \
                    {k: v for k, v in record.items() if k not in _NOT_THE_ENGINES}


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)  # (no packets after an end: see the README)
def test_end_events_carry_the_records_counters(path):
    # TIME_WAIT over at once: the connections end within the capture; --summary --json of the same run is the record
    args = ("-r", str(path), "--cores", "1", "--user", "root", "--time-wait", "0")
    expected = {_key(c): c for c in json.loads(midstat(*args, "--summary", "--json").stdout)["connections"]}
    proc = midstat(*args, "--events")
    ends = [e for e in map(json.loads, proc.stdout.splitlines()) if e["event"] == "end"]
    assert ends
    for event in ends:
        record = expected[_key(event)]
        for key in ("conn", "client", "server", "vlan", "shard"):
            assert event[key] == record[key]
        counters = {k: event[k] for k in RECORD_KEYS if k in event and k not in
                    ("conn", "client", "server", "vlan", "shard", "client_state", "server_state")}
        assert list(counters) == list(row_counters_keys())
        assert counters == {k: record[k] for k in counters}


def row_counters_keys() -> list[str]:
    return [k for k in RECORD_KEYS[RECORD_KEYS.index("first"):RECORD_KEYS.index("history") + 1]]


def test_row_counters_are_a_slice_of_the_contract():
    _, _, started = replay(CAPTURES[0])
    assert list(row_counters(row_of(started[0]))) == row_counters_keys()


def test_tui_exports_write_the_contract(tmp_path):
    _, _, started = replay(CAPTURES[0])
    rows = [row_of(c) for c in started]
    path = export_rows(rows, "json", str(tmp_path), "x")
    with open(path) as fh:
        exported = json.load(fh)
    assert exported == [row_record(r) for r in rows] and all(tuple(r) == RECORD_KEYS for r in exported)
    path = export_rows(rows, "csv", str(tmp_path), "x")
    with open(path) as fh:
        table = list(csv.reader(fh))
    assert tuple(table[0]) == RECORD_KEYS
    for line, row in zip(table[1:], rows, strict=True):
        record = dict(zip(RECORD_KEYS, line, strict=True))
        assert int(record["retrans_bytes_c2s"]) == row.retrans_bytes_c2s
        assert int(record["retrans_packets_c2s"]) == row.retrans_packets_c2s
        assert int(record["packets_c2s"]) == row.packets_c2s


def test_summary_table_columns_are_record_fields():
    names = [name for name, _ in SUMMARY_COLUMNS]
    assert all(n in RECORD_KEYS or n in TABLE_ONLY for n in names), names
    records = list(_records(CAPTURES[0]).values())
    lines = list(summary_lines("\t".join(summary_row(r)) for r in records))
    assert lines[0].split() == names
    for line, record in zip(lines[1:], records, strict=True):
        cells = dict(zip(names, line.split(), strict=True))
        for name in ("conn", "packets_c2s", "packets_s2c", "bytes_c2s", "bytes_s2c", "zeek_state", "client_state"):
            assert cells[name] == str(record[name])
