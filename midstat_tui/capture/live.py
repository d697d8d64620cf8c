"""Live capture on an interface with pcapy-ng: snap length, promiscuous mode, BPF filter, capture statistics.

The handle is non-blocking and waited on with select(), so an idle link never stalls the timers or shutdown.
"""

from __future__ import annotations

import select
from collections.abc import Iterator

import pcapy

from midstat_tui.capture.batches import Packet, Share, split_batch
from midstat_tui.errors import MidstatError

BATCH = 1024


def _describe_live_error(iface: str, err: Exception) -> str:
    text = str(err)
    low = text.lower()
    if "permission" in low or "operation not permitted" in low:
        return (f"cannot capture on {iface}: permission denied "
                "(capturing needs root or the CAP_NET_RAW capability)")
    if "no such device" in low or "doesn't exist" in low or "not found" in low:
        return f"cannot capture on {iface}: no such interface"
    return f"cannot capture on {iface}: {text}"


# pcap_activate() failures (pcap/pcap.h)
_PERMISSION = "cannot capture on {iface}: permission denied (capturing needs root or the CAP_NET_RAW capability)"
_ACTIVATE_ERRORS = {
    -5: "cannot capture on {iface}: no such interface",
    -8: _PERMISSION,
    -11: _PERMISSION,
    -9: "cannot capture on {iface}: the interface is not up",
}


class LiveSource:
    """Packets from a live interface, in batches; an empty batch means nothing arrived within `poll` seconds."""

    def __init__(self, iface: str, bpf: str | None = None, snaplen: int = 262144, promisc: bool = True,
                 poll: float = 0.1, buffer_mib: int = 32) -> None:
        self.path = iface
        self.iface = iface
        self.bpf = bpf
        self.poll = poll
        self.warning: str | None = None
        self.stdin = False
        try:
            handle = pcapy.create(iface)
            handle.set_snaplen(snaplen)
            handle.set_promisc(1 if promisc else 0)
            handle.set_timeout(int(poll * 1000))
            # the kernel ring a burst lands in before we read it: libpcap's 2 MiB default drops a fast transfer
            handle.set_buffer_size(buffer_mib << 20)
            status = handle.activate()
        except pcapy.PcapError as err:
            raise MidstatError(_describe_live_error(iface, err)) from None
        if status is not None and status < 0:
            raise MidstatError(_ACTIVATE_ERRORS.get(status, "cannot capture on {iface}: libpcap error {status}")
                               .format(iface=iface, status=status))
        if bpf:
            try:
                handle.setfilter(bpf)
            except pcapy.PcapError as err:
                raise MidstatError(f"invalid capture filter {bpf!r}: {err}") from None
        try:
            handle.setnonblock(1)
        except pcapy.PcapError as err:
            raise MidstatError(_describe_live_error(iface, err)) from None
        self._handle = handle
        self.datalink = handle.datalink()
        self._stopped = False
        self._last_stats: dict[str, int] = {}
        # on several shards: share.split(data, meta) keeps this shard's packets of each batch (engine.placement)
        self.share: Share | None = None

    def stop(self) -> None:
        self._stopped = True

    def close(self) -> None:
        self._handle.close()

    def stats(self) -> dict[str, int]:
        """The handle's counters; once the capture is gone (a lost interface), the last ones it gave."""
        try:
            received, dropped, if_dropped = self._handle.stats()
        except pcapy.PcapError:
            return dict(self._last_stats)
        self._last_stats = {"received": received, "dropped": dropped, "if_dropped": if_dropped}
        return dict(self._last_stats)

    def batches(self) -> Iterator[list[Packet]]:
        handle = self._handle
        fd = handle.getfd()
        share = self.share
        while not self._stopped:
            try:
                ready, _, _ = select.select([fd], [], [], self.poll)
            except InterruptedError:
                continue
            if not ready:
                yield []
                continue
            try:
                data, meta = handle.next_batch(BATCH)
            except pcapy.PcapError as err:
                self.warning = f"capture on {self.iface} stopped: {err}"
                return
            yield split_batch(data, meta) if share is None else share.split(data, meta)
