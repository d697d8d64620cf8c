"""libpcap link types midstat understands, and their names for error messages."""

from __future__ import annotations

DLT_NULL = 0
DLT_EN10MB = 1
DLT_RAW = 12          # DLT_RAW as libpcap reports it on Linux
DLT_RAW_BSD = 14      # DLT_RAW on OpenBSD
DLT_LOOP = 108
DLT_LINUX_SLL = 113
LINKTYPE_RAW = 101    # the on-disk value; libpcap normally maps it to DLT_RAW
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
DLT_LINUX_SLL2 = 276

SUPPORTED = {
    DLT_NULL: "NULL (BSD loopback)",
    DLT_EN10MB: "EN10MB (Ethernet)",
    DLT_RAW: "RAW (raw IP)",
    DLT_RAW_BSD: "RAW (raw IP)",
    DLT_LOOP: "LOOP (OpenBSD loopback)",
    DLT_LINUX_SLL: "LINUX_SLL (Linux cooked capture)",
    LINKTYPE_RAW: "RAW (raw IP)",
    LINKTYPE_IPV4: "IPV4 (raw IPv4)",
    LINKTYPE_IPV6: "IPV6 (raw IPv6)",
    DLT_LINUX_SLL2: "LINUX_SLL2 (Linux cooked capture v2)",
}

# Names of some link types we do not decode, so the error can say what the capture is.
_OTHER_NAMES = {
    6: "IEEE802 (Token Ring)",
    9: "PPP",
    10: "FDDI",
    50: "PPP_HDLC",
    51: "PPP_ETHER (PPPoE)",
    104: "C_HDLC (Cisco HDLC)",
    105: "IEEE802_11 (802.11 Wi-Fi)",
    119: "PRISM_HEADER (802.11)",
    127: "IEEE802_11_RADIO (radiotap)",
    147: "USER0",
    192: "PPI",
    220: "USB_LINUX_MMAPPED",
    249: "NETLINK",
    253: "NFLOG",
}


def link_type_name(dlt: int) -> str:
    return SUPPORTED.get(dlt) or _OTHER_NAMES.get(dlt) or "unknown"
