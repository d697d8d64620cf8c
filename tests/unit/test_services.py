"""Port numbers to service names: /etc/services when it is there, the shipped list when it is not."""

from __future__ import annotations

import os

import pytest

from midstat_tui.services import SHIPPED, load_services, parse_services


def test_parse_takes_the_tcp_entries_and_the_first_name():
    text = ("# comment\nhttp\t80/tcp\twww # WorldWideWeb\nhttp\t80/udp\nkerberos 88/udp\nalt 80/tcp\n"
            "bad 99999/tcp\nnoport tcp\n\ndomain 53/tcp\n")
    assert parse_services(text) == {80: "http", 53: "domain"}


@pytest.mark.skipif(not os.path.exists("/etc/services"), reason="no /etc/services here")
def test_etc_services_is_read_when_it_is_there():
    services = load_services()
    assert services.source == "/etc/services"
    with open("/etc/services") as fh:
        entries = parse_services(fh.read())
    assert services.names == entries and services.name(22) == "ssh" and services.name(443) == "https"


def test_without_the_file_the_shipped_list_says_so(tmp_path):
    services = load_services(str(tmp_path / "missing"))
    assert services.names == SHIPPED and services.name(443) == "https"
    assert services.source == f"the shipped list (no {tmp_path / 'missing'})"
    empty = tmp_path / "empty"
    empty.write_text("# nothing\n")
    assert load_services(str(empty)).names == SHIPPED
