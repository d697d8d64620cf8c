"""`--summary` with a small `--max-conns` (issue #10): the connections that left the table are kept as their JSON
text in an anonymous temporary file, not as live objects. Every one is still listed, in the order they started, on
one and two cores; memory does not grow with them; no temporary file is ever left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import FIXTURES, ROOT, midstat

sys.path.insert(0, str(ROOT / "benchmarks"))

MIXED = str(FIXTURES / "mixed_traffic.pcap")


@pytest.mark.parametrize("cores", ["1", "2"])
def test_every_connection_that_left_a_tiny_table_is_listed(cores):
    big = json.loads(midstat("-r", MIXED, "--summary", "--json", "--cores", "1").stdout)
    proc = midstat("-r", MIXED, "--summary", "--json", "--cores", cores, "--max-conns", "2")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["stats"]["evicted"] > 5
    conns = doc["connections"]
    assert len(conns) == doc["stats"]["started"] >= len(big["connections"])
    assert [(c["first"], c["conn"]) for c in conns] == sorted((c["first"], c["conn"]) for c in conns)
    # the ones evicted say so; every tuple of the full run is there
    assert {c["ended"] for c in conns} >= {"evicted"}
    assert {(c["client"], c["server"]) for c in conns} >= {(c["client"], c["server"]) for c in big["connections"]}
    table = midstat("-r", MIXED, "--summary", "--cores", cores, "--max-conns", "2")
    assert table.returncode == 0, table.stderr
    assert len(table.stdout.decode().splitlines()) == len(conns) + 1  # a header, then one row each


def test_the_summary_is_the_same_whatever_the_table_keeps_as_objects():
    """With a table big enough that nothing leaves it, and with --linger 0 so that everything ended leaves it at
    once (through the temporary file): the same records."""
    kept = json.loads(midstat("-r", MIXED, "--summary", "--json").stdout)
    gone = json.loads(midstat("-r", MIXED, "--summary", "--json", "--linger", "0", "--time-wait", "0").stdout)
    assert gone["stats"]["in_table"] < kept["stats"]["in_table"]
    strip = ("last", "duration", "end_ts", "client_state", "server_state", "ended", "transitions")

    def rows(doc):
        return [{k: v for k, v in c.items() if k not in strip} for c in doc["connections"]]

    assert rows(gone) == rows(kept)


@pytest.mark.parametrize("cores", ["1", "2"])
@pytest.mark.parametrize("form", ["json", "table"])
def test_a_syn_flood_through_a_small_table_does_not_grow_memory(tmp_path, cores, form):
    """On several cores too (the shards stream their records to core 0), and for the table (its rows wait on
    disk until the column widths are known)."""
    from flood import generate

    syns = 150_000
    path = tmp_path / "flood.pcap"
    generate(path, syns, 0, scan_ports=0)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    tmpdir.chmod(0o1777)  # midstat gives root up: the user it becomes must be able to write there
    tmp_path.chmod(0o755)
    env = dict(os.environ, TMPDIR=str(tmpdir))
    # a fresh interpreter per measure: RUSAGE_CHILDREN is the largest child so far
    probe = [sys.executable, "-c", "import sys, json, resource, subprocess; "
             "p = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.PIPE); "
             "print(json.dumps([resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, p.returncode, "
             "len(p.stdout), p.stdout.count(b'\"conn\":'), p.stdout.count(b'\\n')]))"]
    base = [sys.executable, "-m", "midstat_tui", "-r", str(path), "--max-conns", "1000", "--cores", cores]
    without = json.loads(subprocess.run(probe + base + ["--json", "--at", "+1000000"], capture_output=True, cwd=ROOT,
                                        env=env, check=True).stdout)
    output = ["--summary", "--json"] if form == "json" else ["--summary"]
    summary = json.loads(subprocess.run(probe + base + output, capture_output=True, cwd=ROOT,
                                        env=env, check=True).stdout)
    assert without[1] == 0 and summary[1] == 0
    listed = summary[3] if form == "json" else summary[4] - 1  # the table: a line each, under its header
    assert listed == syns  # every SYN's connection listed
    grown_mb = (summary[0] - without[0]) / 1024
    # as objects, 150,000 departed connections took 416 MB more than the run without --summary; as text in a
    # file, 16 MB (24 bytes each kept, the sort keys at the end)
    assert grown_mb < 60, (summary[0], without[0])
    # the file was never visible, and nothing of it is left (the root-only capture's copy is files.py's business)
    assert list(tmpdir.iterdir()) == []


def test_a_full_disk_loses_no_departed_connection(tmp_path):
    """The temporary file cannot grow past 64 KiB (RLIMIT_FSIZE, as a full disk would refuse it): the records it
    could not take stay in memory, and the summary still lists every connection, in order."""
    from flood import generate

    syns = 4000
    path = tmp_path / "flood.pcap"
    generate(path, syns, 0, scan_ports=0)
    limited = ("import resource, runpy, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
               "resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536)); sys.argv = ['midstat'] + sys.argv[1:]; "
               "runpy.run_module('midstat_tui', run_name='__main__')")
    for cores in ("1", "2"):
        proc = subprocess.run([sys.executable, "-c", limited, "-r", str(path), "--summary", "--json", "--max-conns",
                               "100", "--cores", cores, "--user", "root"], capture_output=True, cwd=ROOT, timeout=300)
        assert proc.returncode == 0, proc.stderr
        conns = json.loads(proc.stdout)["connections"]
        assert len(conns) == syns
        assert [(c["first"], c["conn"]) for c in conns] == sorted((c["first"], c["conn"]) for c in conns)
        assert len({c["client"] for c in conns}) == syns
