"""`--group-by`: the headless grouped report, checked against the connection records of the same run."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from midstat_tui.engine.groups import GROUP_KEYS
from tests.helpers import FIXTURES, midstat, shared

BUSY = shared("ndpi/tests/cfgs/default/pcap/1kxun.pcap")        # 121 connections, many servers and states
MIXED = FIXTURES / "mixed_traffic.pcap"                          # IPv4 and IPv6, closes, resets, refusals


def _json(*args: str) -> dict:
    out = midstat(*args)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _host(endpoint: str) -> str:
    host = endpoint.rsplit(":", 1)[0]
    return host.strip("[]")


def _key(key: str, c: dict) -> str:
    return {"server": c["server"], "server-host": _host(c["server"]), "client-host": _host(c["client"]),
            "states": f"{c['client_state']}/{c['server_state']}", "vlan": ".".join(map(str, c["vlan"])) or "-",
            "zeek": c["zeek_state"]}[key]


@pytest.mark.parametrize("key", GROUP_KEYS)
def test_groups_add_up_to_the_connection_records(key: str) -> None:
    """Every group's connections, packets and bytes are those of the records with its key (--summary: every
    connection of the file), and the groups come largest first."""
    records = _json("-r", str(BUSY), "--summary", "--json", "--cores", "1")["connections"]
    doc = _json("-r", str(BUSY), "--summary", "--json", "--group-by", key, "--cores", "1")
    assert doc["group_by"] == key
    expected = Counter(_key(key, c) for c in records)
    got = {g["key"]: g for g in doc["groups"]}
    assert {k: g["connections"] for k, g in got.items()} == dict(expected)
    for k, g in got.items():
        members = [c for c in records if _key(key, c) == k]
        for field in ("packets_c2s", "packets_s2c", "bytes_c2s", "bytes_s2c"):
            assert g[field] == sum(c[field] for c in members), (k, field)
        assert g["reset"] == sum(c["rst_by"] is not None for c in members)
        assert g["midstream"] == sum(bool(c["midstream"]) for c in members)
        assert g["ended"] == sum(c["ended"] is not None for c in members)
        assert g["open"] + g["handshake"] + g["closing"] + g["reset"] <= g["connections"]
    sizes = [g["connections"] for g in doc["groups"]]
    assert sizes == sorted(sizes, reverse=True)


@pytest.mark.parametrize("key", ["server", "states", "zeek"])
def test_one_core_and_two_give_the_same_groups(key: str) -> None:
    for extra in ((), ("--summary",), ("--at", "+30")):
        one = _json("-r", str(BUSY), "--json", "--group-by", key, "--cores", "1", *extra)
        two = _json("-r", str(BUSY), "--json", "--group-by", key, "--cores", "2", *extra)
        assert one == two, extra
        assert one["groups"], extra


def test_states_is_the_state_pair_summary_at_a_moment() -> None:
    """`--group-by states --at T`: the side-state pairs of the table at T, like `ss -s`; the snapshot's own
    connections at T (--json --at) give the same counts."""
    snap = _json("-r", str(BUSY), "--json", "--at", "+20", "--cores", "1")["connections"]
    doc = _json("-r", str(BUSY), "--json", "--at", "+20", "--group-by", "states", "--cores", "1")
    expected = Counter(f"{c['client_state']}/{c['server_state']}" for c in snap)
    assert {g["key"]: g["connections"] for g in doc["groups"]} == dict(expected)
    est = next(g for g in doc["groups"] if g["key"] == "ESTABLISHED/ESTABLISHED")
    assert est["open"] + est["ended"] == est["connections"] and est["handshake"] == est["closing"] == 0


def test_match_selects_the_connections_grouped() -> None:
    doc = _json("-r", str(MIXED), "--json", "--group-by", "zeek", "--match", "zeek REJ or zeek RSTO")
    assert {g["key"] for g in doc["groups"]} == {"REJ", "RSTO"}
    assert all(g["reset"] == g["connections"] for g in doc["groups"])


def test_table_keys_as_the_table_shows_them() -> None:
    out = midstat("-r", str(MIXED), "--group-by", "server")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.decode().splitlines()
    assert lines[0].split()[:2] == ["Server", "conns"]
    keys = {line.split()[0]: int(line.split()[1]) for line in lines[1:-1]}
    assert keys == {"10.231.2.1:6001": 15, "10.231.2.1:6999": 3, "[fd31:2::1]:6002": 3}
    assert lines[-1] == "# 3 groups, 21 connections"


@pytest.mark.parametrize("args, message", [
    (("--group-by", "port"), "invalid choice"),
    (("--group-by", "server", "--events"), "does not go with --events"),
    (("--group-by", "server", "--plain"), "does not go with --plain"),
])
def test_bad_group_by_is_one_line_and_status_2(args: tuple[str, ...], message: str) -> None:
    out = midstat("-r", str(MIXED), *args)
    assert out.returncode == 2
    err = out.stderr.decode()
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert out.stdout == b""
