"""What the capturing host says about itself: its own addresses and whether an interface offloads checksums.

A host with transmit checksum offload (nearly every NIC, and veth) hands its outgoing TCP segments to the driver
with the checksum left for the hardware to fill in; a capture on that host sees them before that, with a checksum
that does not verify. Both facts are read from the kernel of the network namespace the capture runs in, while the
capture handle is opened (before root is given up): the addresses by a netlink dump (RTM_GETADDR), the offload
feature by the ethtool ioctl (ETHTOOL_GTXCSUM).
"""

from __future__ import annotations

import ctypes
import fcntl
import socket
import struct

_RTM_NEWADDR = 20
_RTM_GETADDR = 22
_NLMSG_ERROR = 2
_NLMSG_DONE = 3
_NLM_F_REQUEST = 0x1
_NLM_F_DUMP = 0x300
_IFA_ADDRESS = 1
_IFA_LOCAL = 2

_SIOCETHTOOL = 0x8946
_ETHTOOL_GTXCSUM = 0x16


def host_addresses() -> tuple[bytes, ...]:
    """Every IPv4 and IPv6 address of this network namespace's interfaces (loopback included), as packed bytes;
    () when the kernel cannot be asked."""
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    except OSError:
        return ()
    found: set[bytes] = set()
    try:
        sock.bind((0, 0))
        request = struct.pack("=IHHII", 16 + 8, _RTM_GETADDR, _NLM_F_REQUEST | _NLM_F_DUMP, 1, 0)
        sock.send(request + struct.pack("=BBBBI", socket.AF_UNSPEC, 0, 0, 0, 0))
        while True:
            data = sock.recv(65536)
            if not data:
                break
            at = 0
            while at + 16 <= len(data):
                length, kind = struct.unpack_from("=IH", data, at)
                if length < 16:
                    return tuple(sorted(found))
                if kind in (_NLMSG_DONE, _NLMSG_ERROR):
                    return tuple(sorted(found))
                if kind == _RTM_NEWADDR:
                    found.update(_addresses_of(data[at + 16:at + length]))
                at += (length + 3) & ~3
    except OSError:
        pass
    finally:
        sock.close()
    return tuple(sorted(found))


def _addresses_of(message: bytes) -> list[bytes]:
    """IFA_ADDRESS and IFA_LOCAL of one RTM_NEWADDR message (an ifaddrmsg, then route attributes)."""
    if len(message) < 8:
        return []
    family = message[0]
    size = 4 if family == socket.AF_INET else 16 if family == socket.AF_INET6 else 0
    out = []
    at = 8
    while size and at + 4 <= len(message):
        length, kind = struct.unpack_from("=HH", message, at)
        if length < 4:
            break
        if kind in (_IFA_ADDRESS, _IFA_LOCAL) and length - 4 == size:
            out.append(bytes(message[at + 4:at + length]))
        at += (length + 3) & ~3
    return out


def tx_checksum_offload(iface: str) -> bool | None:
    """Whether `iface` leaves outgoing checksums to the hardware (ethtool's tx-checksumming); None when it cannot
    be asked (`any`, a device without the ioctl)."""
    if not iface or len(iface.encode()) > 15:
        return None
    value = ctypes.create_string_buffer(struct.pack("=II", _ETHTOOL_GTXCSUM, 0), 8)
    request = struct.pack("16sP", iface.encode(), ctypes.addressof(value))
    request += b"\x00" * (40 - len(request))  # struct ifreq is 40 bytes on 64-bit Linux
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            fcntl.ioctl(sock.fileno(), _SIOCETHTOOL, request)
    except OSError:
        return None
    return struct.unpack("=II", value.raw)[1] != 0


def virtual_link(interface: str) -> bool:
    """Is `interface` a link to other stacks of this machine (veth, bridge, tun, loopback, `any`), not a device?
    Such an interface has no device behind it in sysfs (as `ip netns exec` mounts it for the namespace)."""
    import os

    return interface == "any" or not os.path.exists(f"/sys/class/net/{interface}/device")
