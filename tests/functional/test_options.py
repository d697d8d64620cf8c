"""Odd option values (issue #10): every numeric option goes through one gate (finite, within its range), `--match`
nesting is bounded, `--cores` is capped; each refusal is one line and exit status 2, never a traceback."""

from __future__ import annotations

import argparse
import gzip
import json
import math
import time
from pathlib import Path

import pytest

from midstat_tui import cli
from midstat_tui.errors import MidstatError
from midstat_tui.query import MAX_NESTING, QueryError, compile_query
from tests.helpers import FIXTURES, midstat

CLOSE = str(FIXTURES / "close_client_first.pcap")


def _numeric_options() -> list[str]:
    parser = cli.build_parser()
    return sorted(a.option_strings[-1] for a in parser._actions if a.type in (int, float))


def _args(*extra: str) -> argparse.Namespace:
    return cli.build_parser().parse_args(["-r", CLOSE, "--summary", *extra])


def test_every_numeric_option_is_known_to_the_gate():
    """A numeric option added later without a range would take NaN again: this test names it."""
    assert _numeric_options() == ["--buffer-size", "--cores", "--ipfix-active-timeout", "--ipfix-domain", "--linger",
                                  "--max-conns", "--snaplen", "--speed", "--time-wait"]


@pytest.mark.parametrize("option", _numeric_options())
def test_every_numeric_option_refuses_odd_values(option):
    is_float = next(a for a in cli.build_parser()._actions if option in a.option_strings).type is float
    odd = ["-5", "99999999999999999999"] + (["nan", "inf", "-inf", "1e300"] if is_float else ["0"])
    if option == "--speed":
        odd.remove("-5")
        odd.append("-0.5")
    for value in odd:
        with pytest.raises(MidstatError) as exc:
            cli._tracker_config(_args(f"{option}={value}"))
        assert str(exc.value).startswith(f"{option} ")
        assert exc.value.status == 2
    cli._tracker_config(_args(option, "1"))  # and a sane value passes


@pytest.mark.parametrize("value", ["ESTABLISHED=nan", "ESTABLISHED=-5", "syn-sent=inf", "ESTABLISHED=1e12"])
def test_timeouts_go_through_the_same_gate(value):
    with pytest.raises(MidstatError) as exc:
        cli._tracker_config(_args("--timeout", value))
    assert str(exc.value).startswith(f"--timeout {value}: ")
    assert cli._tracker_config(_args("--timeout", "ESTABLISHED=0")).idle_timeouts


@pytest.mark.parametrize("args, says", [
    (["--linger", "nan"], "--linger nan: expected a finite number"),
    (["--time-wait", "nan"], "--time-wait nan: expected a finite number"),
    (["--timeout", "ESTABLISHED=nan"], "--timeout ESTABLISHED=nan: expected a finite number"),
    (["--timeout", "ESTABLISHED=-5"], "--timeout ESTABLISHED=-5: must be at least 0"),
    (["--linger", "-5"], "--linger -5: must be at least 0"),
    (["--max-conns", "99999999999999999999"], "--max-conns 99999999999999999999: must be at most 1000000000"),
    (["--at", "nan"], "--at nan: expected a finite number"),
    (["--at", "+inf"], "--at +inf: expected a finite number"),
    (["--at", "25:00"], "--at: '25:00': hours go from 00 to 23"),
    (["--speed", "1"], "--speed paces the TUI's replay"),
    (["--at", "00:00:01"], "is before the first packet; the capture: "),
    (["--at", "noon"], "--at 'noon': expected +SECONDS from the start, HH:MM:SS (UTC)"),
    (["--cores", "1000"], "--cores 1000: at most"),
    (["--cores", "0"], "--cores 0: must be at least 1"),
    (["--match", "(" * 250 + "port 80" + ")" * 250], f"nested more than {MAX_NESTING} deep"),
    (["--match", "not " * 1000 + "port 80"], f"nested more than {MAX_NESTING} deep"),
])
def test_the_command_says_it_in_one_line(args, says):
    proc = midstat("-r", CLOSE, "--summary", *args)
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert "Traceback" not in err and proc.stdout == b""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("midstat: ") and says in lines[0], err


def test_cores_cap_says_why():
    with pytest.raises(MidstatError) as exc:
        cli._tracker_config(_args("--cores", str(cli.max_cores() + 1)))
    assert "CPU" in str(exc.value) and "memory" in str(exc.value)
    cli._tracker_config(_args("--cores", str(cli.max_cores())))


def test_match_nesting_up_to_the_bound_works_and_matches():
    deep = compile_query("(" * MAX_NESTING + "port 5001" + ")" * MAX_NESTING)
    nots = compile_query("not " * (MAX_NESTING - 1) + "not port 5001")  # an even number: port 5001
    with pytest.raises(QueryError):
        compile_query("(" * (MAX_NESTING + 1) + "port 5001" + ")" * (MAX_NESTING + 1))
    with pytest.raises(QueryError):
        compile_query("not " * (MAX_NESTING + 1) + "port 5001")
    # siblings are not nesting: a long flat expression is fine
    flat = compile_query(" or ".join(f"(port {p})" for p in range(1, 500)) + " or port 5001")
    proc = midstat("-r", CLOSE, "--summary", "--json", "--match", "(" * MAX_NESTING + "port 5001" + ")" * MAX_NESTING)
    assert proc.returncode == 0, proc.stderr
    assert b"5001" in proc.stdout
    assert deep is not None and nots is not None and flat is not None


def test_nan_can_no_longer_stall_the_timers():
    """The issue's case: with --linger nan every timer stayed blocked. Now it is refused, and the nearest legal value
    (0) lets the timers run: the ended connection leaves the table."""
    proc = midstat("-r", CLOSE, "--summary", "--linger", "nan")
    assert proc.returncode == 2
    config = cli._tracker_config(_args("--linger", "0", "--time-wait", "0"))
    assert math.isfinite(config.linger) and config.linger == 0


@pytest.mark.parametrize("argv", [["--max-conns", "1e9"], ["--cores", "nan"], ["--checksum", "maybe"], []])
def test_what_argparse_refuses_is_one_line_too(argv):
    """A value argparse itself cannot read (an int option given a float, an unknown choice, no source at all) is
    said the way midstat says every other error: one line, status 2, not the usage block."""
    proc = midstat(*(["-r", str(FIXTURES / "close_client_first.pcap")] if argv else []), *argv, "--summary")
    lines = proc.stderr.decode().strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("midstat: ") and "--help" in lines[0]


def _first_packet_time(path: str) -> float:
    proc = midstat("-r", path, "--summary", "--json", "--cores", "1")
    return min(c["first"] for c in json.loads(proc.stdout)["connections"])


@pytest.mark.parametrize("cores", ["1", "2"])
def test_at_takes_a_time_of_day_and_a_date_as_the_tui_g_does(tmp_path, cores):
    mixed = str(FIXTURES / "mixed_traffic.pcap")
    moment = _first_packet_time(mixed) + 1.25
    clock = time.strftime("%H:%M:%S", time.gmtime(moment)) + f"{moment % 1:.6f}"[1:]
    date = time.strftime("%Y-%m-%d ", time.gmtime(moment)) + clock
    gz = tmp_path / "mixed.pcap.gz"
    gz.write_bytes(gzip.compress(Path(mixed).read_bytes()))
    by_offset = midstat("-r", mixed, "--plain", "--cores", cores, "--at", "+1.25")
    assert by_offset.returncode == 0 and by_offset.stdout.count(b"\n") > 3, by_offset.stderr
    for path, at in ((mixed, clock), (mixed, date), (str(gz), clock)):
        proc = midstat("-r", path, "--plain", "--cores", cores, "--at", at)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == by_offset.stdout, (path, at)


def test_at_a_time_of_day_from_a_pipe_says_what_works():
    proc = midstat("-r", "-", "--plain", "--at", "12:00:00", stdin=(FIXTURES / "mixed_traffic.pcap").read_bytes())
    err = proc.stderr.decode()
    assert proc.returncode == 2 and len(err.splitlines()) == 1 and "+SECONDS" in err, err
