"""--ipfix, --ipfix-* and --metrics given wrong: one line on stderr, status 2, nothing run."""

from __future__ import annotations

import pytest

from tests.helpers import FIXTURES, midstat

CAPTURE = str(FIXTURES / "close_client_first.pcap")


@pytest.mark.parametrize("args, said", [
    (["--ipfix", "nohost"], "--ipfix 'nohost': expected HOST:PORT"),
    (["--ipfix", "127.0.0.1:0"], "--ipfix '127.0.0.1:0': the port is a number from 1 to 65535"),
    (["--ipfix", "sctp://127.0.0.1:4739"], "the scheme is udp:// or tcp://"),
    (["--ipfix", "no-such-host.invalid:4739"], "cannot resolve 'no-such-host.invalid'"),
    (["--ipfix", "127.0.0.1:4739", "--ipfix-active-timeout", "0"], "--ipfix-active-timeout 0: must be at least 1"),
    (["--ipfix", "127.0.0.1:4739", "--ipfix-active-timeout", "nan"], "--ipfix-active-timeout nan: expected a finite"),
    (["--ipfix", "127.0.0.1:4739", "--ipfix-domain", "-1"], "--ipfix-domain -1: must be at least 1"),
    (["--metrics", "localhost"], "--metrics 'localhost': expected HOST:PORT"),
    (["--metrics", "tcp://127.0.0.1:9750"], "--metrics 'tcp://127.0.0.1:9750': expected HOST:PORT"),
])
def test_bad_export_options_are_one_line_errors(args, said):
    run = midstat("-r", CAPTURE, "--summary", *args)
    err = run.stderr.decode()
    assert run.returncode == 2, err
    assert said in err and err.count("\n") == 1 and "Traceback" not in err
    assert run.stdout == b""


def test_an_exporter_address_that_is_not_ours_is_said_at_once():
    run = midstat("-r", CAPTURE, "--summary", "--ipfix", "127.0.0.1:4739", "--ipfix-source", "192.0.2.1")
    err = run.stderr.decode()
    assert run.returncode == 2 and err.startswith("midstat: --ipfix-source 192.0.2.1: cannot send from there")
    assert err.count("\n") == 1


def test_the_exporter_address_is_the_source_of_the_messages():
    from tests.collectors import UdpCollector

    collector = UdpCollector()
    run = midstat("-r", CAPTURE, "--summary", "--ipfix", collector.address, "--ipfix-source", "127.0.0.7")
    datagrams = collector.close()
    assert run.returncode == 0, run.stderr.decode()
    assert datagrams and {peer[0] for peer, _ in datagrams} == {"127.0.0.7"}


@pytest.mark.parametrize("output", [["--summary"], ["--summary", "--json"], ["--events"]])
@pytest.mark.parametrize("cores", ["1", "2"])
def test_records_a_dead_collector_lost_are_said_whatever_the_output(output, cores):
    """A TCP collector nobody listens at: every record is dropped (tracking goes on), and the run says so on
    stderr at its end, with the output it was asked for intact."""
    proc = midstat("-r", str(FIXTURES / "mixed_traffic.pcap"), *output, "--cores", cores,
                   "--ipfix", "tcp://127.0.0.1:9")
    assert proc.returncode == 0 and proc.stdout, proc.stderr
    assert ("midstat: warning: IPFIX: 21 records dropped, 0 sent (the collector at tcp://127.0.0.1:9 was down or "
            "slow)\n") in proc.stderr.decode()
