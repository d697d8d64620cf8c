#!/usr/bin/env python3
"""Rewrite an Ethernet capture as a Linux cooked one (SLL, what `tcpdump -i any` writes), to time midstat on it.

    python3 benchmarks/cooked.py IN.pcap OUT.pcap

Each frame's Ethernet header and VLAN tags become a 16-byte SLL header (the sender's MAC as its address, the
tagged protocol as its protocol); timestamps and the IP packets are kept as they are.
"""

from __future__ import annotations

import argparse
import struct

import dpkt

TAGS = (0x8100, 0x88A8, 0x9100)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("source")
    parser.add_argument("out")
    args = parser.parse_args()
    count = 0
    with open(args.source, "rb") as src, open(args.out, "wb") as dst:
        writer = dpkt.pcap.Writer(dst, snaplen=65535, linktype=dpkt.pcap.DLT_LINUX_SLL)
        for ts, frame in dpkt.pcap.Reader(src):
            etype, off = struct.unpack_from("!H", frame, 12)[0], 14
            while etype in TAGS:
                etype, off = struct.unpack_from("!H", frame, off + 2)[0], off + 4
            header = struct.pack("!HHH8sH", 0, 1, 6, frame[6:12] + b"\0\0", etype)
            writer.writepkt(header + frame[off:], ts)
            count += 1
    print(f"{args.out}: {count} packets")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
