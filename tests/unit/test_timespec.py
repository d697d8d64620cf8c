"""The go-to time (`g`): every form a person types, checked against the capture's range (issue 9 §4)."""

from __future__ import annotations

import calendar
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from midstat_tui.timespec import TimeSpecError, offset_text, parse_goto, range_text, utc_text

FIRST = calendar.timegm((2026, 11, 25, 23, 13, 23)) + 0.334734  # mixed_traffic.pcap's first packet
LAST = FIRST + 2.532636


@pytest.mark.parametrize(("text", "offset"), [
    ("+0", 0.0), ("+1.5", 1.5), ("  +2.5 ", 2.5), ("+.5", 0.5),
    ("23:13:24", 24 - 23.334734), ("23:13:25.5", 25.5 - 23.334734),
    ("2026-11-25 23:13:24.5Z", 24.5 - 23.334734), ("2026-11-25T23:13:24", 24 - 23.334734),
    (f"{FIRST + 1:.6f}", 1.0),
])
def test_each_form_inside_the_capture(text, offset):
    assert parse_goto(text, FIRST, LAST, FIRST + 1) == pytest.approx(FIRST + offset, abs=1e-6)


@pytest.mark.parametrize(("text", "says"), [
    ("25:61:00", "hours go from 00 to 23"),
    ("23:61:00", "minutes go from 00 to 59"),
    ("23:13:60", "seconds go from 00 to 59"),
    ("-5", "cannot be negative"),
    ("abc", "is not a time"),
    ("+abc", "after + comes a number of seconds"),
    ("+500", "after the last packet; the capture: 2026-11-25 23:13:23.3Z to 23:13:25.8Z (+0.0s to +2.5s)"),
    ("12:00:00", "before the first packet"),
    ("5", "before the first packet"),
    ("2026-02-30 00:00:00", "no such date"),
    ("", "type a time"),
    ("9" * 400, "too large to be a time"),
])
def test_refusals_say_what_is_wrong_in_the_users_terms(text, says):
    with pytest.raises(TimeSpecError) as info:
        parse_goto(text, FIRST, LAST, FIRST)
    message = str(info.value)
    assert says in message
    assert "float" not in message and "convert" not in message and len(message) < 200


def test_without_a_known_end_only_the_start_bounds():
    assert parse_goto("+500", FIRST, None) == FIRST + 500
    with pytest.raises(TimeSpecError, match="before the first packet"):
        parse_goto("1", FIRST, None)
    with pytest.raises(TimeSpecError, match="no packet read yet"):
        parse_goto("+1", None, None)


def test_a_clock_time_finds_its_day_in_a_capture_of_several_days():
    first = calendar.timegm((2026, 1, 1, 22, 0, 0))
    last = first + 3 * 86400
    # on the day of the position (the second day), else another day of the capture
    assert parse_goto("21:00:00", first, last, first + 86400) == first + 86400 - 3600
    assert parse_goto("23:00:00", first, last, first) == first + 3600
    assert parse_goto("21:30:00", first, last, first) == first + 86400 - 1800  # the first day has none before 22h


@given(st.floats(min_value=0, max_value=10 * 86400, allow_nan=False))
def test_any_offset_inside_goes_there_and_any_outside_is_refused(offset):
    first, last = FIRST, FIRST + 86400.0
    text = f"+{offset!r}" if "e" not in repr(offset) else f"+{offset:.9f}"
    if offset <= last - first:
        assert parse_goto(text, first, last) == pytest.approx(first + offset, abs=1e-6)
    else:
        with pytest.raises(TimeSpecError, match="after the last packet"):
            parse_goto(text, first, last)


@given(st.text(max_size=40))
def test_any_text_is_a_time_in_the_range_or_a_clear_refusal(text):
    try:
        target = parse_goto(text, FIRST, LAST, FIRST)
    except TimeSpecError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert FIRST <= target <= LAST and math.isfinite(target)


@given(st.integers(0, 23), st.integers(0, 59), st.integers(0, 59))
def test_every_clock_time_of_a_day_long_capture_is_found(h, m, s):
    first = calendar.timegm((2026, 3, 1, 0, 0, 0))
    assert parse_goto(f"{h:02d}:{m:02d}:{s:02d}", first, first + 86399) == first + h * 3600 + m * 60 + s


def test_the_texts_the_header_and_dialog_show():
    assert utc_text(FIRST) == "2026-11-25 23:13:23.3Z"
    assert offset_text(2.532636) == "2.5s" and offset_text(59.99) == "59.9s"
    assert offset_text(61.25) == "1:01.2" and offset_text(3723.4) == "1:02:03.4"
    assert range_text(None, None).startswith("the capture's range is not known")
    assert "still being read" in range_text(FIRST, None)
