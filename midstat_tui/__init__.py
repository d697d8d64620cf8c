"""midstat: a middlebox netstat that infers the TCP state of both sides of every connection."""

__version__ = "0.1.0"
