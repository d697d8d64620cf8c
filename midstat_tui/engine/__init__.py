"""Sources -> decoder -> tracker, the one-second snapshots the faces read."""
