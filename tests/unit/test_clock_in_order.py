"""The capture clock's common case in C (`_core.in_order`) finds what its numpy path finds."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from midstat_tui.capture import clock
from midstat_tui.capture.clock import PacketClock

pytestmark = pytest.mark.skipif(clock._in_order is None, reason="the compiled core is not built")

TIMES = st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 999_999)), max_size=40)


def _meta(times: list[tuple[int, int]]) -> bytes:
    return b"".join(struct.pack("=IIII", sec, usec, 0, 0) for sec, usec in times)


@settings(max_examples=500, deadline=None)
@given(batches=st.lists(TIMES, max_size=4), start=st.sampled_from([-1, 0, 10**15]))
def test_the_compiled_common_case_agrees_with_numpy(batches, start):
    fast, slow = PacketClock(), PacketClock()
    fast.latest = slow.latest = start
    for times in batches:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(clock, "_in_order", None)
            expected = slow.late_in_meta(_meta(times))
        assert fast.late_in_meta(_meta(times)) == expected
        assert fast.latest == slow.latest


def test_a_late_packet_is_found():
    c = PacketClock()
    assert c.late_in_meta(_meta([(10, 5), (10, 4), (11, 0)])) == [(1, 10.000005)]
    assert c.latest == 11_000_000


@settings(max_examples=500, deadline=None)
@given(times=TIMES, start=st.sampled_from([-1, 0, 5_000_000, 10**15]))
def test_in_order_says_whether_no_packet_is_late(times, start):
    micros = [sec * 1_000_000 + usec for sec, usec in times]
    steps = [start, *micros]
    in_order = all(b >= a for a, b in zip(steps, steps[1:], strict=False))
    assert clock._in_order(_meta(times), start) == (steps[-1] if in_order else -1)
