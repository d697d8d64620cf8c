#!/usr/bin/env python3
"""#13's two figures, in one run.

    python3 benchmarks/ladder.py [--dir DIR] [--big-packets 2300000] [--flow-packets 100000] [--runs 3]

1. Opening a ladder: a ~1 GB capture (benchmarks/synth.py's mix, about 2.3 million packets) with one long transfer
   of --flow-packets packets woven through it; times re-reading that flow from the file (engine.flow_packets:
   the compiled scanner over the file's records, or libpcap through a BPF filter on its tuple; its packets run
   through a private tracker) and drawing its ladder (output.ladder): what the flow screen does when the ladder
   opens, the connection already known to the tracker. Also the reading alone, each way.
2. `--write`: the 1M-packet benchmark capture; times `midstat --write out.pcap --match 'dport 22'` (both passes)
   against `midstat --summary` (default cores, and --cores 1) on the same file. Medians over --runs.
"""

from __future__ import annotations

import argparse
import heapq
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import dpkt

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from synth import ACK, FIN, PSH, SYN, frame  # noqa: E402


def long_flow(packets: int, start: float, seconds: float):
    """One long transfer: handshake, data one way (1448-byte segments) each acknowledged, FIN close."""
    c, s = bytes([10, 250, 0, 1]), bytes([192, 168, 250, 1])
    cp, sp = 50000, 5001
    cseq, sseq = 1_000_000, 2_000_000
    step = seconds / packets
    t = start
    yield t, frame(c, s, cp, sp, cseq, 0, SYN, 0, None)
    t += step
    yield t, frame(s, c, sp, cp, sseq, cseq + 1, SYN | ACK, 0, None)
    t += step
    cseq += 1
    sseq += 1
    yield t, frame(c, s, cp, sp, cseq, sseq, ACK, 0, None)
    for _ in range((packets - 7) // 2):
        t += step
        yield t, frame(c, s, cp, sp, cseq, sseq, ACK | PSH, 1448, None)
        cseq += 1448
        t += step
        yield t, frame(s, c, sp, cp, sseq, cseq, ACK, 0, None)
    t += step
    yield t, frame(c, s, cp, sp, cseq, sseq, FIN | ACK, 0, None)
    t += step
    yield t, frame(s, c, sp, cp, sseq, cseq + 1, FIN | ACK, 0, None)
    t += step
    yield t, frame(c, s, cp, sp, cseq + 1, sseq + 1, ACK, 0, None)


def make_big(path: Path, packets: int, flow_packets: int) -> None:
    base = path.with_suffix(".base.pcap")
    if not base.exists():
        subprocess.run([sys.executable, str(HERE / "synth.py"), str(base), "--packets", str(packets),
                        "--conns", str(packets // 20)], check=True)
    with open(base, "rb") as fh:
        reader = dpkt.pcap.Reader(fh)
        first = next(iter(reader))[0]
    with open(base, "rb") as fh, open(path, "wb") as out:
        writer = dpkt.pcap.Writer(out, snaplen=262144)
        merged = heapq.merge(((ts, bytes(f)) for ts, f in dpkt.pcap.Reader(fh)),
                             long_flow(flow_packets, first + 1.0, 50.0), key=lambda p: p[0])
        for ts, f in merged:
            writer.writepkt(f, ts)
    base.unlink()


def bench_ladder(path: Path, runs: int) -> None:
    from midstat_tui.engine.flow_packets import FlowReader, FlowRef, flow_bpf
    from midstat_tui.output.ladder import ladder

    reader = FlowReader(str(path))
    t = time.perf_counter()
    rows = reader.select("host 10.250.0.1")
    print(f"first pass (the tracker over the file, what the TUI has done already): {time.perf_counter() - t:.2f} s")
    (row,) = rows
    ref = FlowRef.of(row)
    fd = reader._fd
    times: dict[str, list[float]] = {"compiled scanner": [], "libpcap + BPF": [], "scan only": [],
                                     "BPF read only": []}
    cpu_times: dict[str, list[float]] = {way: [] for way in times}
    for _ in range(runs):  # alternating, so that the machine's load falls on both ways alike
        for way in times:
            reader._fd = fd if way in ("compiled scanner", "scan only") else None
            c = cpu()
            t = time.perf_counter()
            if way == "scan only":
                packets = len(reader.scanned(ref))
            elif way == "BPF read only":
                packets = sum(1 for _ in reader.packets(flow_bpf(ref, reader.datalink)))
            else:
                flow = reader.flow(ref)
                lines = ladder(flow)
                packets = len(flow.packets)
            times[way].append(time.perf_counter() - t)
            cpu_times[way].append(cpu() - c)
    reader._fd = fd
    size = path.stat().st_size
    for way, values in times.items():
        print(f"ladder of a {packets:,}-packet flow in a {size / 1e9:.2f} GB capture, {way}: "
              f"median {statistics.median(values):.2f} s, CPU (user+sys) {statistics.median(cpu_times[way]):.2f} s "
              f"over {runs} runs ({len(lines)} lines)")


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def bench_write(path: Path, out: Path, runs: int) -> None:
    midstat = [sys.executable, "-m", "midstat_tui", "-r", str(path)]
    cases = {
        "--summary": midstat + ["--summary"],
        "--summary --cores 1": midstat + ["--summary", "--cores", "1"],
        "--write (dport 22)": midstat + ["--write", str(out), "--match", "dport 22"],
        "--write (one connection)": midstat + ["--write", str(out), "--match", "host 10.0.0.5"],
    }
    results: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(runs):
        for name, cmd in cases.items():
            results[name].append(timed(cmd))
    summary = statistics.median(results["--summary"])
    for name, values in results.items():
        median = statistics.median(values)
        print(f"{name:28} median {median:6.2f} s  ({median / summary:.2f}x --summary)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=str(HERE / "data"))
    parser.add_argument("--big-packets", type=int, default=2_300_000)
    parser.add_argument("--flow-packets", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-ladder", action="store_true")
    parser.add_argument("--skip-write", action="store_true")
    args = parser.parse_args()
    data = Path(args.dir)
    data.mkdir(parents=True, exist_ok=True)
    if not args.skip_ladder:
        big = data / f"ladder-{args.big_packets}-{args.flow_packets}.pcap"
        if not big.exists():
            make_big(big, args.big_packets, args.flow_packets)
        bench_ladder(big, args.runs)
    if not args.skip_write:
        synth = data / "synth-1000000.pcap"
        if not synth.exists():
            subprocess.run([sys.executable, str(HERE / "synth.py"), str(synth)], check=True)
        bench_write(synth, data / "write-out.pcap", args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
