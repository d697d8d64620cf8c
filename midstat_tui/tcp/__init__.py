"""Two-sided TCP state tracking: pure, no I/O, no clock (time is always an argument)."""
