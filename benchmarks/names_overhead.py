#!/usr/bin/env python3
"""What learning host names (engine/names.py) costs the tracking, on the 1M-packet synthetic capture.

    python3 benchmarks/names_overhead.py [--runs 5] [--packets 1000000] [--conns 50000]

Times one engine (1 core, full tracking, the compiled loop) over the whole file with name learning on and off,
in a fresh process each run, round-robin, medians of the CPU time (user + system: what the load of a shared machine
leaves out) and of the wall time, on two captures:
  * `plain`: benchmarks/synth.py's capture as run.py uses it (zero-filled payloads: no name anywhere; what the
    learner costs traffic that carries none: the compiled loop's test on each packet);
  * `named`: the same connections, but every client data segment starts as an HTTP request with a Host header
    (ports 80, 8080), a TLS ClientHello with a server name (443) or other text (22, 25): the worst case, where every
    connection's first client data goes to the learner.
Also the cost of one DNS answer through the learner (µs), in process.
"""

from __future__ import annotations

import argparse
import os
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))


def _hello(name: bytes) -> bytes:
    entry = b"\0" + struct.pack("!H", len(name)) + name
    body = struct.pack("!H", len(entry)) + entry
    exts = struct.pack("!HH", 0, len(body)) + body
    hello = b"\x03\x03" + bytes(32) + b"\x00" + struct.pack("!H", 2) + b"\x13\x01" + b"\x01\x00"
    hello += struct.pack("!H", len(exts)) + exts
    hs = b"\x01" + len(hello).to_bytes(3, "big") + hello
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def make_named(path: Path, packets: int, conns: int) -> None:
    """synth.py's generator with the client data made to carry names (see the module's doc)."""
    import synth

    plain_frame = synth.frame

    def frame(src, dst, sport, dport, seq, ack, flags, payload, vlan):
        if not payload or sport < 32768:  # not client data
            return plain_frame(src, dst, sport, dport, seq, ack, flags, payload, vlan)
        host = f"h{dst[-1]}-{dst[-2]}.bench.example".encode()
        if dport in (80, 8080):
            text = b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n"
        elif dport == 443:
            text = _hello(host)
        else:
            text = b"EHLO bench.example\r\n"
        body = (text * (payload // len(text) + 1))[:payload]
        built = plain_frame(src, dst, sport, dport, seq, ack, flags, 0, vlan)
        return _with_payload(built, body, src, dst)

    synth.frame = frame
    synth.generate(str(path), packets, conns, 60.0, 1)


def _with_payload(built: bytes, body: bytes, src: bytes, dst: bytes) -> bytes:
    import dpkt

    eth_len = len(built) - (40 if len(src) == 4 else 60)
    eth, ip, tcp = built[:eth_len], bytearray(built[eth_len:eth_len + (20 if len(src) == 4 else 40)]), \
        bytearray(built[-20:]) + body
    tcp[16:18] = b"\0\0"
    if len(src) == 4:
        pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
        struct.pack_into("!H", ip, 2, 20 + len(tcp))
        ip[10:12] = b"\0\0"
        struct.pack_into("!H", ip, 10, dpkt.in_cksum(bytes(ip)))
    else:
        pseudo = src + dst + struct.pack("!IxxxB", len(tcp), 6)
        struct.pack_into("!H", ip, 4, len(tcp))
    struct.pack_into("!H", tcp, 16, dpkt.in_cksum_done(dpkt.in_cksum_add(dpkt.in_cksum_add(0, pseudo), bytes(tcp))))
    return eth + bytes(ip) + bytes(tcp)


def one(path: str, names: bool) -> None:
    """One timed run (in this fresh process): prints seconds, packets and names learned."""
    from midstat_tui.capture.files import FileSource
    from midstat_tui.engine.pipeline import Engine, run_file

    source = FileSource(path)
    engine = Engine(source.datalink, names=names)
    start, cpu = time.perf_counter(), time.process_time()
    run_file(engine, source.batches())
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    learned = engine.names.stats() if engine.names is not None else {}
    print(elapsed, cpu, engine.decode_stats.packets, learned.get("sni", 0) + learned.get("http", 0))


def dns_cost(n: int = 20000) -> float:
    """µs per DNS answer (a CNAME and two A records) through NameLearner.udp."""
    import dpkt

    from midstat_tui.engine.names import NameLearner

    def label(text: str) -> bytes:
        return b"".join(bytes((len(p),)) + p.encode() for p in text.split(".")) + b"\0"

    msg = struct.pack("!HHHHHH", 1, 0x8180, 1, 3, 0, 0) + label("www.bench.example") + struct.pack("!HH", 1, 1)
    msg += b"\xc0\x0c" + struct.pack("!HHIH", 5, 1, 60, len(label("e.cdn.example"))) + label("e.cdn.example")
    for last in (1, 2):
        msg += label("e.cdn.example") + struct.pack("!HHIH", 1, 1, 60, 4) + bytes([192, 0, 2, last])
    udp = dpkt.udp.UDP(sport=53, dport=40000, data=msg)
    udp.ulen = len(udp)
    ip = dpkt.ip.IP(src=bytes([192, 0, 2, 53]), dst=bytes([10, 0, 0, 1]), p=17, data=udp)
    ip.len = len(ip)
    frame = bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, type=0x0800, data=ip))
    learner = NameLearner(1)
    start = time.perf_counter()
    for _ in range(n):
        learner.udp(0.0, frame)
    assert learner.dns == 2 * n
    return (time.perf_counter() - start) / n * 1e6


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--conns", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--one", nargs=2, metavar=("PATH", "NAMES"), help=argparse.SUPPRESS)
    parser.add_argument("--instructions", action="store_true",
                        help="count the instructions each run executes (valgrind's callgrind: one run each, the same "
                             "count on a loaded machine as on an idle one; about 50x slower: use --packets 100000)")
    args = parser.parse_args()
    if args.one:
        one(args.one[0], args.one[1] == "on")
        return 0
    data = HERE / "data"
    data.mkdir(exist_ok=True)
    plain = data / f"synth-{args.packets}-{args.conns}.pcap"
    named = data / f"synth-named-{args.packets}-{args.conns}.pcap"
    if not plain.exists():
        subprocess.run([sys.executable, str(HERE / "synth.py"), str(plain), "--packets", str(args.packets),
                        "--conns", str(args.conns)], check=True)
    if not named.exists():
        make_named(named, args.packets, args.conns)
    if args.instructions:
        print(f"{'capture':8} {'names':6} {'instructions':>15}  vs off")
        for label, path in (("plain", plain), ("named", named)):
            counted = {}
            for names in ("off", "on"):
                proc = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                                       sys.executable, __file__, "--one", str(path), names], capture_output=True,
                                      text=True, check=True, cwd=ROOT, env={**os.environ, "PYTHONHASHSEED": "0"})
                line = next(x for x in proc.stderr.splitlines() if "Collected :" in x)
                counted[names] = int(line.split(":")[-1])
                print(f"{label:8} {names:6} {counted[names]:15,}  {counted[names] / counted['off'] - 1:+.2%}")
        return 0
    times: dict[tuple[str, str], list[float]] = {}
    cpus: dict[tuple[str, str], list[float]] = {}
    counts: dict[tuple[str, str], tuple[int, int]] = {}
    for _ in range(args.runs):
        for label, path in (("plain", plain), ("named", named)):
            for names in ("off", "on"):
                out = subprocess.run([sys.executable, __file__, "--one", str(path), names], capture_output=True,
                                     text=True, check=True, cwd=ROOT, env={**os.environ, "PYTHONHASHSEED": "0"})
                elapsed, cpu, packets, learned = out.stdout.split()
                times.setdefault((label, names), []).append(float(elapsed))
                cpus.setdefault((label, names), []).append(float(cpu))
                counts[(label, names)] = (int(packets), int(learned))
    print(f"{'capture':8} {'names':6} {'wall s':>7} {'CPU s':>6} {'packets/s (CPU)':>16} {'learned':>8}  "
          "CPU vs off  wall vs off")
    for label in ("plain", "named"):
        off, cpu_off = statistics.median(times[(label, "off")]), statistics.median(cpus[(label, "off")])
        for names in ("off", "on"):
            med, cpu = statistics.median(times[(label, names)]), statistics.median(cpus[(label, names)])
            packets, learned = counts[(label, names)]
            print(f"{label:8} {names:6} {med:7.3f} {cpu:6.3f} {packets / cpu:16,.0f} {learned:8}  "
                  f"{cpu / cpu_off - 1:+10.1%}  {med / off - 1:+10.1%}")
    print(f"one DNS answer (CNAME + 2 A) through the learner: {dns_cost():.1f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
