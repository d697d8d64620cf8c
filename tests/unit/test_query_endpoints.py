"""The filter terms `server` and `client`: one side's address, with or without its port."""

from __future__ import annotations

import ipaddress

import pytest

from midstat_tui.engine.records import ConnRow
from midstat_tui.query import QueryError, compile_query


def _row(client: str, cport: int, server: str, sport: int) -> ConnRow:
    return ConnRow(1, 0, ipaddress.ip_address(client).packed, cport, ipaddress.ip_address(server).packed, sport, (),
                   4, 4, 0.0, 0.0, 1, 1, 60, 60, 0, 0, 0, -1.0, "S1", "Sh", False, None)


V4 = _row("10.0.0.2", 40000, "10.0.0.1", 443)
V6 = _row("fd00::2", 40000, "fd00::1", 443)


@pytest.mark.parametrize("text, v4, v6", [
    ("server 10.0.0.1:443", True, False),
    ("server 10.0.0.1", True, False),
    ("server 10.0.0.1:80", False, False),
    ("server 10.0.0.2", False, False),          # the client's address: not the server
    ("client 10.0.0.2", True, False),
    ("client 10.0.0.2:40000", True, False),
    ("client 10.0.0.1", False, False),
    ("server [fd00::1]:443", False, True),
    ("server fd00::1", False, True),
    ("client [fd00::2]:40001", False, False),
    ("not server fd00::1", True, False),
])
def test_endpoint_terms(text: str, v4: bool, v6: bool) -> None:
    pred = compile_query(text)
    assert (pred(V4), pred(V6)) == (v4, v6)


@pytest.mark.parametrize("text", ["server 10.0.0.1:70000", "server nowhere", "client [fd00::1", "server"])
def test_bad_endpoints_say_where(text: str) -> None:
    with pytest.raises(QueryError) as exc:
        compile_query(text)
    assert exc.value.position >= 6
