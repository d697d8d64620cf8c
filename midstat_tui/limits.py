"""The one gate of every numeric setting (command-line options, tracker settings): a finite number in its range,
else a one-line error naming the setting and the value as given."""

from __future__ import annotations

import math

from midstat_tui.errors import MidstatError

# Seconds stop at about 31 years; past that a value is a typo (or an attack on the timers), and NaN or infinity is
# never a duration.
MAX_SECONDS = 1e9


def checked_number(name: str, value: float, low: float, high: float, text: str | None = None) -> float:
    """The one gate of every numeric option: a finite number within [low, high], else a one-line error naming the
    option and the value as given (`text`, when the option holds more than the number)."""
    label = f"{name} {plain_number(value) if text is None else text}"
    if not math.isfinite(value):
        raise MidstatError(f"{label}: expected a finite number")
    if value < low:
        raise MidstatError(f"{label}: must be at least {plain_number(low)}")
    if value > high:
        raise MidstatError(f"{label}: must be at most {plain_number(high)}")
    return value


def plain_number(x: float) -> str:
    return str(int(x)) if isinstance(x, int) or (math.isfinite(x) and x.is_integer() and abs(x) < 1e16) else str(x)
