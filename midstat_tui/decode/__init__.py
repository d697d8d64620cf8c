"""Frame bytes + link type -> a TCP segment record (or an ICMP error quoting one, or a reject reason)."""

from midstat_tui.decode.frame import FrameDecoder, LinkTypeError
from midstat_tui.decode.segment import IcmpError, Segment

__all__ = ["FrameDecoder", "IcmpError", "LinkTypeError", "Segment"]
