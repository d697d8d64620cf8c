"""802.1Q tagging on a veth link without the kernel's 8021q driver: two tiny eBPF programs for tc (clsact).

`push` adds a VLAN tag on egress (bpf_skb_vlan_push), `pop` removes it on ingress (bpf_skb_vlan_pop). Attached to
both ends of a link, the link carries tagged frames and the hosts' IP stacks never see the tag; a capture on either
end sees 802.1Q frames (taps see egress after tc and ingress before tc). The programs are written as raw eBPF
instructions and loaded with the bpf(2) system call, then pinned where `tc ... bpf object-pinned` can find them.
"""

from __future__ import annotations

import ctypes
import os
import struct
import subprocess

PIN_DIR = "/run/midstat-netlab-bpf"  # not under /sys: `ip netns exec` remounts /sys
_SYS_BPF = 321  # x86_64
_BPF_PROG_LOAD, _BPF_OBJ_PIN = 5, 6
_PROG_TYPE_SCHED_CLS = 3
_HELPER_VLAN_PUSH, _HELPER_VLAN_POP = 18, 19
_MOV64_IMM, _CALL, _EXIT = 0xB7, 0x85, 0x95

_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def _insn(code: int, dst: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, dst, 0, imm)


def _program(vid: int | None) -> bytes:
    if vid is None:
        body = _insn(_CALL, imm=_HELPER_VLAN_POP)
    else:
        # r2 = htons(ETH_P_8021Q) as the helper wants it, r3 = VLAN id; r1 already holds the skb
        body = _insn(_MOV64_IMM, 2, 0x0081) + _insn(_MOV64_IMM, 3, vid) + _insn(_CALL, imm=_HELPER_VLAN_PUSH)
    return body + _insn(_MOV64_IMM, 0, 0) + _insn(_EXIT)  # TC_ACT_OK


def _bpf(cmd: int, attr: bytes) -> int:
    buf = ctypes.create_string_buffer(attr.ljust(128, b"\0"), 128)
    result = _libc.syscall(_SYS_BPF, cmd, buf, 128)
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bpf({cmd}): {os.strerror(err)}")
    return result


def _load_and_pin(code: bytes, path: str) -> None:
    insns = ctypes.create_string_buffer(code, len(code))
    license_ = ctypes.create_string_buffer(b"GPL")
    fd = _bpf(_BPF_PROG_LOAD, struct.pack("<IIQQ", _PROG_TYPE_SCHED_CLS, len(code) // 8,
                                          ctypes.addressof(insns), ctypes.addressof(license_)))
    try:
        name = ctypes.create_string_buffer(path.encode())
        _bpf(_BPF_OBJ_PIN, struct.pack("<QI", ctypes.addressof(name), fd))
    finally:
        os.close(fd)


def programs(vid: int) -> tuple[str, str]:
    """Paths of the pinned push (VLAN `vid`) and pop programs, loading them on first use."""
    os.makedirs(PIN_DIR, exist_ok=True)
    if subprocess.run(["mountpoint", "-q", PIN_DIR]).returncode != 0:
        subprocess.run(["mount", "-t", "bpf", "bpf", PIN_DIR], check=True, capture_output=True)
    push = os.path.join(PIN_DIR, f"push{vid}")
    pop = os.path.join(PIN_DIR, "pop")
    for path, code in ((push, _program(vid)), (pop, _program(None))):
        if not os.path.exists(path):
            _load_and_pin(code, path)
    return push, pop
