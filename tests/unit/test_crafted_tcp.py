"""Hostile and crafted TCP: blind and injected resets, flag combinations no stack sends, odd windows, bogus headers,
ports 0. Nothing raises, every oddity is counted, and no crafted packet moves a connection it should not."""

from __future__ import annotations

import dpkt
import pytest

from midstat_tui.decode import FrameDecoder, Segment, linktypes
from midstat_tui.engine.records import row_of
from midstat_tui.query import compile_query
from midstat_tui.tcp.tracker import Tracker, bogus_flags
from tests.flows import Flow

E = "ESTABLISHED"
CLIENT_MAC = bytes.fromhex("020000000001")
SERVER_MAC = bytes.fromhex("020000000002")
MIDDLE_MAC = bytes.fromhex("02000000bad0")
SUSPICIOUS = compile_query("suspicious")


def test_blind_rst_out_of_window_is_counted_and_the_connection_kept():
    f = Flow()
    f.handshake()
    f.c("PA", 500)
    assert f.s("R", seq=f.nxt[1] + 100_000) == (E, E)  # a guess far from what the server sent
    assert f.c("RA", seq=f.nxt[0] - 7_000_000) == (E, E)
    assert f.conn.suspicious_rst == 2 and f.tracker.stats.suspicious_rst == 2
    assert f.conn.ended is None
    assert SUSPICIOUS(row_of(f.conn))
    # both ignored resets are in the state history, from = to (the receivers' states), with their packets
    ignored = [t for t in f.conn.transitions if t[2] == t[3]]
    assert [(t[1], t[2], t[4], t[6]) for t in ignored] == [(0, 4, 1, f.nxt[1] + 100_000),
                                                             (1, 4, 0, (f.nxt[0] - 7_000_000) & 0xFFFFFFFF)]
    assert all(t[5] & 0x04 for t in ignored)  # RST


def test_rst_with_another_ttl_is_flagged_but_obeyed_when_in_window():
    """An on-path injector (a firewall, an IDS, the Great Firewall) knows the sequence numbers: the stacks obey its
    RST. Its TTL gives it away: the sender's own packets all came with another one."""
    f = Flow()
    f.handshake()
    f.s("PA", 1000, ttl=57)
    assert f.s("RA", ttl=112) == ("CLOSED", "CLOSED")
    assert f.conn.odd_rst == 1 and f.tracker.stats.odd_rst == 1
    assert f.conn.suspicious_rst == 0
    assert SUSPICIOUS(row_of(f.conn))


def test_rst_with_the_senders_own_ttl_is_not_flagged():
    f = Flow()
    f.handshake()
    f.s("PA", 1000, ttl=57)
    f.s("RA", ttl=57)
    assert f.conn.odd_rst == 0 and f.conn.suspicious_rst == 0
    assert not SUSPICIOUS(row_of(f.conn))


def test_the_first_packet_of_a_side_being_an_rst_is_not_flagged():
    """Nothing to compare with: a refused connection's RST comes from a side that sent nothing before."""
    f = Flow()
    f.c("S", ttl=64)
    assert f.s("RA", ttl=255) == ("CLOSED", "CLOSED")
    assert f.conn.odd_rst == 0


def _frame(src_mac: bytes, dst_mac: bytes, src: bytes, dst: bytes, sport: int, dport: int, flags: int, seq: int,
           ack: int, ttl: int = 64, data: bytes = b"") -> bytes:
    tcp = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, win=512, data=data)
    ip = dpkt.ip.IP(src=src, dst=dst, p=6, ttl=ttl, data=tcp)
    ip.len = 20 + len(bytes(tcp))
    return bytes(dpkt.ethernet.Ethernet(src=src_mac, dst=dst_mac, type=dpkt.ethernet.ETH_TYPE_IP, data=ip))


@pytest.mark.parametrize("fast_path", [True, False])
def test_rst_from_another_mac_is_flagged_through_the_decoder(fast_path):
    """Same TTL, same addresses, but the frame came from another machine on the segment (both decoders)."""
    decoder = FrameDecoder(linktypes.DLT_EN10MB, fast_path=fast_path)
    tracker = Tracker()
    c, s = b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02"
    frames = [
        _frame(CLIENT_MAC, SERVER_MAC, c, s, 40000, 80, dpkt.tcp.TH_SYN, 100, 0),
        _frame(SERVER_MAC, CLIENT_MAC, s, c, 80, 40000, dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK, 900, 101),
        _frame(CLIENT_MAC, SERVER_MAC, c, s, 40000, 80, dpkt.tcp.TH_ACK, 101, 901),
        _frame(MIDDLE_MAC, CLIENT_MAC, s, c, 80, 40000, dpkt.tcp.TH_RST | dpkt.tcp.TH_ACK, 901, 101),
    ]
    for i, frame in enumerate(frames):
        seg = decoder.decode(float(i), frame)
        assert isinstance(seg, Segment)
        conn = tracker.segment(seg)
    assert conn is not None
    assert conn.s.mac == SERVER_MAC
    assert (conn.client_state, conn.server_state) == ("CLOSED", "CLOSED")
    assert conn.odd_rst == 1


@pytest.mark.parametrize("flags", ["SF", "SR", "FR", "SFR", "", "F", "FP", "SFRPA"])
def test_flag_combinations_no_stack_sends_start_nothing(flags):
    """NULL, FIN and Xmas scans, SYN+FIN, SYN+RST, FIN+RST: Linux drops them and conntrack calls them INVALID.
    A lone one is shown (ended at once, reason bad_flags), never as a connection in any state."""
    f = Flow()
    assert f.send(0, flags) == ("CLOSED", "CLOSED")
    assert f.conn.bad_flags == 1 and f.tracker.stats.bad_flags == 1
    assert f.conn.ended == "bad_flags"
    assert not f.conn.midstream and f.tracker.stats.midstream == 0
    # a real handshake on the same tuple afterwards is a new, normal connection
    first = f.conn
    f.handshake()
    assert f.conn is not first and f.states == (E, E)


@pytest.mark.parametrize("flags", ["SF", "SR", "FR", "", "F", "FPU"])
def test_flag_combinations_no_stack_sends_leave_an_established_connection_alone(flags):
    f = Flow()
    f.handshake()
    for side in (0, 1):
        letters = flags.replace("U", "")  # Flow knows S A F R P; URG adds nothing to the rule
        assert f.send(side, letters) == (E, E)
    assert f.conn.bad_flags == 2 and f.conn.ended is None
    assert f.c("FA") == ("FIN_WAIT_1", "CLOSE_WAIT")  # and the real close still works


def test_bogus_flags_rule_against_conntracks_valid_set():
    fin, syn, rst, psh, ack, urg = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
    valid = [syn, syn | urg, syn | ack, rst, rst | ack, rst | ack | psh, fin | ack, fin | ack | urg, ack, ack | urg,
             fin | ack | psh, ack | psh, ack | psh | urg]
    assert not any(bogus_flags(v) for v in valid)
    invalid = [0, fin, fin | psh | urg, syn | fin, syn | rst, fin | rst, syn | fin | rst | psh | ack | urg, psh, urg]
    assert all(bogus_flags(v) for v in invalid)


def test_zero_and_huge_windows():
    f = Flow()
    f.handshake()
    f.c("PA", 100, win=0)
    f.s("A", win=0)
    f.s("A", win=0)
    f.c("A", win=0xFFFF)
    assert (f.conn.c.zero_win, f.conn.s.zero_win) == (1, 2)
    assert f.states == (E, E)


def test_ports_zero_are_tracked_like_any_other():
    f = Flow(client=("10.0.0.1", 0), server=("10.0.0.2", 0))
    f.handshake()
    f.c("FA")
    f.s("FA")
    assert f.c("A") == ("TIME_WAIT", "CLOSED")
    row = row_of(f.conn)
    assert row.client == "10.0.0.1:0" and row.server == "10.0.0.2:0"


def test_a_transfer_across_the_sequence_wrap_counts_no_retransmission():
    f = Flow(isn=(0xFFFFF000, 0xFFFFFF00))
    f.handshake()
    for _ in range(20):  # 20 kB from each side: both cross 2**32
        f.c("PA", 1000)
        f.s("PA", 1000)
    assert f.nxt[0] < 0x10000 and f.nxt[1] < 0x10000
    assert f.conn.c.retrans == 0 and f.conn.s.retrans == 0 and f.conn.c.ooo == 0
    f.c("PA", 1000, seq=f.nxt[0] - 1000)  # a real retransmission after the wrap is still seen as one
    assert f.conn.c.retrans == 1
    f.s("FA")
    f.c("FA")
    assert f.s("A") == ("CLOSED", "TIME_WAIT")


@pytest.mark.parametrize("offset", [0, 3, 4, 6, 15])
@pytest.mark.parametrize("fast_path", [True, False])
def test_bogus_data_offsets_are_counted_never_raise(offset, fast_path):
    """A data offset under 5 words, or past the end of the segment: a malformed frame under a reason."""
    decoder = FrameDecoder(linktypes.DLT_EN10MB, fast_path=fast_path)
    frame = bytearray(_frame(CLIENT_MAC, SERVER_MAC, b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02", 1, 2,
                             dpkt.tcp.TH_ACK, 5, 6, data=b"x" * 4))
    frame[14 + 20 + 12] = offset << 4
    result = decoder.decode(1.0, bytes(frame))
    if offset in (0, 3, 4, 15):
        assert isinstance(result, str) and result, result
    else:  # 6 words: 24 header bytes fit in the 24 bytes of TCP the frame holds; no payload left
        assert isinstance(result, Segment) and result.payload == 0


@pytest.mark.parametrize("options", [b"\x02\x00\x05\xb4", b"\x03\x09\x07\x00", b"\x08\xff\x00\x00",
                                     b"\x05\x01\x00\x00"])
def test_bogus_option_lengths_do_not_matter(options):
    """midstat reads no TCP option: a header with lying option lengths is still a segment."""
    tcp = dpkt.tcp.TCP(sport=1, dport=2, seq=3, ack=4, flags=dpkt.tcp.TH_ACK, win=9, opts=options, data=b"abc")
    tcp.off = 6
    ip = dpkt.ip.IP(src=b"\x0a\x00\x00\x01", dst=b"\x0a\x00\x00\x02", p=6, data=tcp)
    ip.len = 20 + 24 + 3
    for fast_path in (True, False):
        frame = bytes(dpkt.ethernet.Ethernet(src=CLIENT_MAC, dst=SERVER_MAC, type=0x0800, data=ip))
        seg = FrameDecoder(linktypes.DLT_EN10MB, fast_path=fast_path).decode(1.0, frame)
        assert isinstance(seg, Segment) and seg.payload == 3 and seg.csum_ok is True
