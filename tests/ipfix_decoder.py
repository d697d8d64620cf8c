"""IPFIX messages read back with the `ipfix` package (an independent decoder: its own parser and IANA tables),
midstat's enterprise elements declared here from the README's table, not from midstat's code."""

from __future__ import annotations

from collections import defaultdict

import ipfix.ie
import ipfix.message

ENTERPRISE_SPECS = [
    "midstatClientState(32473/1)<string>[65535]",
    "midstatServerState(32473/2)<string>[65535]",
    "midstatZeekConnState(32473/3)<string>[65535]",
    "midstatZeekHistory(32473/4)<string>[65535]",
    "midstatRttClientMicroseconds(32473/5)<unsigned32>[4]",
    "midstatRttServerMicroseconds(32473/6)<unsigned32>[4]",
    "midstatRetransOctetsInitiator(32473/7)<unsigned64>[8]",
    "midstatRetransOctetsResponder(32473/8)<unsigned64>[8]",
    "midstatPayloadOctetsInitiator(32473/9)<unsigned64>[8]",
    "midstatPayloadOctetsResponder(32473/10)<unsigned64>[8]",
    "midstatFlags(32473/11)<unsigned8>[1]",
    "midstatShard(32473/12)<unsigned16>[2]",
]

_loaded = False


def _load() -> None:
    global _loaded
    if not _loaded:
        ipfix.ie.use_iana_default()
        ipfix.ie.use_5103_default()
        for spec in ENTERPRISE_SPECS:
            ipfix.ie.for_spec(spec)
        _loaded = True


def decode(datagrams: list[bytes]) -> list[tuple[dict, dict]]:
    """Every data record of the messages, in order, as (message header fields, {element name: value})."""
    _load()
    buffer = ipfix.message.MessageBuffer()
    records = []
    for data in datagrams:
        buffer.from_bytes(data)
        head = {"domain": buffer.odid, "sequence": buffer.sequence, "export_time": buffer.get_export_time()}
        for record in buffer.namedict_iterator():
            records.append((head, record))
    return records


def packet_totals(datagrams: list[tuple[tuple, bytes]]) -> dict[tuple[int, int], list[int]]:
    """A collector's datagrams ((peer, message) each) decoded, their records' packets added up by (source port,
    destination port): [packets one way, packets the other way] (the same form as helpers.replay_packet_totals)."""
    totals: dict = defaultdict(lambda: [0, 0])
    for _, r in decode([d for _, d in datagrams]):
        key = (r["sourceTransportPort"], r["destinationTransportPort"])
        totals[key][0] += r["packetDeltaCount"]
        totals[key][1] += r["reversePacketDeltaCount"]
    return dict(totals)
