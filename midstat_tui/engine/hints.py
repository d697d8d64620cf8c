"""One-line hints for the user, from an engine's (or several shards' merged) counters: what midstat did with
packets it could not take as they came, and which flag changes that. The header and the `--plain` status lines
show them; they are made here once, for every face and every number of cores."""

from __future__ import annotations


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def stats_hints(stats: dict) -> list[str]:
    """The hints for a stats dict (Engine.stats, or add_stats of several); [] when there is nothing to say."""
    hints: list[str] = []
    policy = stats.get("checksum") or {}
    mode = policy.get("mode", "verify")
    bad = stats.get("bad_checksum", 0)
    if bad and mode != "ignore":
        sources = stats.get("bad_checksum_from") or {}
        top = max(sources.items(), key=lambda item: item[1]) if sources else None
        what = f"{_plural(bad, 'TCP packet', 'TCP packets')} with a bad checksum not tracked"
        if top is None:
            hints.append(f"{what}; --checksum ignore tracks them")
        elif top[0] in (policy.get("host") or ()):
            # live with --checksum verify: the host's own packets, as checksum offload leaves them
            hints.append(f"{what}, {top[1]} of them sent by this host ({top[0]}): checksum offload; "
                         "--checksum auto tracks those")
        elif policy.get("interface") is not None:
            # live: they came damaged from elsewhere
            hints.append(f"{what} (most from {top[0]}); --checksum ignore tracks them")
        else:
            address, count = top
            hints.append(f"{what} ({count} from {address}): a capture taken on {address} with checksum offload? "
                         "--checksum ignore tracks them")
    offloaded = stats.get("offloaded_checksum", 0)
    if offloaded:  # after the packets lost, which matter more
        iface = policy.get("interface")
        if policy.get("virtual_link"):
            hints.append(f"{_plural(offloaded, 'packet', 'packets')} with a checksum left unfilled on {iface}, a "
                         "virtual link (veth, bridge, tun) whose stacks never fill it in: tracked; --checksum "
                         "verify drops them")
        else:
            where = f", tx-checksumming on {iface}" if iface and policy.get("tx_offload") else ""
            hints.append(f"{_plural(offloaded, 'packet', 'packets')} sent by this host carried a checksum its "
                         f"network card fills in later (checksum offload{where}): tracked; --checksum verify drops "
                         "them")
    return hints


def packet_status(stats: dict) -> str:
    """The packets not tracked as they came, in one line ('' when there are none): non-TCP, malformed (by
    reason), bad checksums, and the offloaded checksums of the host's own packets (tracked)."""
    parts = []
    if stats.get("non_tcp"):
        parts.append(f"{stats['non_tcp']} non-TCP (skipped)")
    malformed = stats.get("malformed") or {}
    if malformed:
        reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(malformed.items()))
        parts.append(f"{sum(malformed.values())} malformed ({reasons}; skipped)")
    if stats.get("bad_checksum"):
        parts.append(f"{stats['bad_checksum']} bad checksum (not tracked)")
    if stats.get("offloaded_checksum"):
        parts.append(f"{stats['offloaded_checksum']} offloaded checksum (tracked)")
    return "packets: " + ", ".join(parts) if parts else ""
