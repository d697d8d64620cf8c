"""A moment of a capture as a person types it (the TUI's `g`), checked against the capture's time range.

Forms: `+SECONDS` from the first packet (`+12.5`), `HH:MM[:SS[.frac]]` UTC on a day of the capture,
`YYYY-MM-DD HH:MM[:SS[.frac]]` (a trailing `Z` allowed, as the header writes it), or epoch seconds. Every refusal is
a `TimeSpecError` whose text says, in the user's terms, what was wrong and what the capture's range is.
"""

from __future__ import annotations

import calendar
import math
import re
import time

SLACK = 1e-6  # seconds: what float sums of a typed offset may miss the capture's ends by
FORMS = "+SECONDS from the start, HH:MM:SS (UTC), YYYY-MM-DD HH:MM:SS or epoch seconds"
_NUMBER = re.compile(r"\d+(\.\d*)?|\.\d+")
_CLOCK = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}(?:\.\d*)?))?")
_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})[ T]+(.+?)Z?")


class TimeSpecError(ValueError):
    """A go-to time that is not one, or is outside the capture."""


def utc_text(ts: float, tenths: bool = True) -> str:
    """`2026-11-30 12:00:03.3Z`: an epoch time in UTC, to the tenth of a second (truncated, as clocks are)."""
    whole = math.floor(ts)
    text = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(whole))
    if tenths:
        text += f".{min(9, int((ts - whole) * 10))}"
    return text + "Z"


def offset_text(seconds: float) -> str:
    """A duration to the tenth of a second: `12.3s`, `4:05.6`, `1:02:03.4` (truncated, never rounded up past the
    end)."""
    tenths = max(0, math.floor(seconds * 10 + 1e-6))
    whole, tenth = divmod(tenths, 10)
    if whole < 60:
        return f"{whole}.{tenth}s"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}.{tenth}"
    return f"{minutes}:{secs:02d}.{tenth}"


def range_text(first: float | None, last: float | None) -> str:
    """The capture's range, as the go-to dialog shows it."""
    if first is None:
        return "the capture's range is not known yet (no packet read)"
    if last is None:
        return f"the capture: from {utc_text(first)} (its end is still being read)"
    end = utc_text(last)
    if end[:10] == utc_text(first)[:10]:
        end = end[11:]  # the same day: the time is enough
    return f"the capture: {utc_text(first)} to {end} (+0.0s to +{offset_text(last - first)})"

def _clock_seconds(text: str, original: str) -> float:
    match = _CLOCK.fullmatch(text)
    if match is None:
        raise TimeSpecError(f"{original!r} is not a time: use {FORMS}")
    hours, minutes = int(match.group(1)), int(match.group(2))
    seconds = float(match.group(3)) if match.group(3) else 0.0
    if hours > 23:
        raise TimeSpecError(f"{original!r}: hours go from 00 to 23")
    if minutes > 59:
        raise TimeSpecError(f"{original!r}: minutes go from 00 to 59")
    if seconds >= 60:
        raise TimeSpecError(f"{original!r}: seconds go from 00 to 59")
    return hours * 3600 + minutes * 60 + seconds


def _midnight(ts: float) -> float:
    day = time.gmtime(math.floor(ts))
    return float(calendar.timegm((day.tm_year, day.tm_mon, day.tm_mday, 0, 0, 0)))


def parse_goto(text: str, first: float | None, last: float | None, position: float | None = None) -> float:
    """The epoch time `text` means in a capture whose packets run from `first` to `last` (None: not known yet).
    `HH:MM:SS` is on the day of `position` (else of the first packet); when that day has no such moment in the
    capture, the capture's other days are tried. Raises TimeSpecError when `text` is not a time or is outside."""
    text = text.strip()
    original = text if len(text) <= 32 else text[:29] + "..."  # as the messages quote it
    if not text:
        raise TimeSpecError(f"type a time: {FORMS}")
    if first is None:
        raise TimeSpecError("no packet read yet: the capture's range is not known")
    if text.startswith("+"):
        number = text[1:].strip()
        if not _NUMBER.fullmatch(number):
            raise TimeSpecError(f"{original!r}: after + comes a number of seconds, e.g. +12.5")
        target = first + float(number)
    elif text.startswith("-"):
        raise TimeSpecError(f"{original!r}: a time cannot be negative; +SECONDS counts from the start")
    elif (date := _DATE.fullmatch(text)) is not None:
        year, month, day = (int(date.group(i)) for i in (1, 2, 3))
        if not (1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]):
            raise TimeSpecError(f"{original!r}: no such date")
        target = calendar.timegm((year, month, day, 0, 0, 0)) + _clock_seconds(date.group(4), original)
    elif ":" in text:
        of_day = _clock_seconds(text, original)
        days = [_midnight(position if position is not None else first), _midnight(first)]
        if last is not None:
            days += [float(d) for d in range(int(_midnight(first)), int(_midnight(last)) + 1, 86400)]
        target = days[0] + of_day
        for day in days:
            if first <= day + of_day <= (last if last is not None else math.inf):
                target = day + of_day
                break
    elif _NUMBER.fullmatch(text):
        target = float(text)
    else:
        raise TimeSpecError(f"{original!r} is not a time: use {FORMS}")
    if not math.isfinite(target):
        raise TimeSpecError(f"{original!r} is too large to be a time")
    if first - SLACK <= target < first:
        target = first  # the start as the header writes it (+0.0s): the first packet, not a hair before
    if last is not None and last < target <= last + SLACK:
        target = last
    if target < first:
        raise TimeSpecError(f"{original!r} is before the first packet; {range_text(first, last)}")
    if last is not None and target > last:
        raise TimeSpecError(f"{original!r} is after the last packet; {range_text(first, last)}")
    return target
