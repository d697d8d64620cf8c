#!/usr/bin/env python3
"""The highest live packet rate midstat keeps up with, dropping nothing: tcpreplay onto a veth pair at rising rates.

    python3 benchmarks/live_rate.py [--rates 50000 100000 150000 200000 300000] [--seconds 10] [--cores 2]

Needs root and tcpreplay (Debian's package). Makes a network namespace with a veth pair, runs
`midstat -i <one end> --cores N --summary --json` in it, and replays the synthetic capture of benchmarks/synth.py
onto the other end with `tcpreplay --pps RATE` for --seconds (the file looped: connections repeat, with their
own sequence numbers, as retransmissions and new incarnations). After each rate it stops midstat (SIGTERM) and reads
the capture counters from its summary: packets the handles received, dropped by the kernel (the capture buffer
overflowed because midstat did not read fast enough) and by the interface, and packets midstat tracked.
Prints one line per rate and the highest one with zero drops.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NS = "mslive-rate"


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=check)


def lab_up() -> None:
    sh("ip", "netns", "del", NS, check=False)
    sh("ip", "netns", "add", NS)
    sh("ip", "link", "add", "lrsend", "type", "veth", "peer", "name", "lrcap")
    for dev in ("lrsend", "lrcap"):
        sh("ip", "link", "set", dev, "netns", NS)
        sh("ip", "netns", "exec", NS, "ip", "link", "set", dev, "up")


def lab_down() -> None:
    sh("ip", "netns", "del", NS, check=False)


def one_rate(capture: Path, rate: int, seconds: float, cores: int, buffer_mib: int) -> dict:
    proc = subprocess.Popen(["ip", "netns", "exec", NS, sys.executable, "-m", "midstat_tui", "-i", "lrcap",
                             "--cores", str(cores), "--summary", "--json", "--match", "state LISTEN", "--user", "root",
                             "--buffer-size", str(buffer_mib)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    if "listening" not in line:
        proc.kill()
        raise RuntimeError(f"midstat did not start: {line}")
    limit = int(rate * seconds)
    # the capture in memory (--preload-pcap) and looped (--loop=0) until --limit: --seconds at the rate asked
    replay = sh("ip", "netns", "exec", NS, "tcpreplay", "-i", "lrsend", "--preload-pcap", "--loop=0",
                f"--pps={rate}", f"--limit={limit}", str(capture))
    time.sleep(2.0)  # let midstat drain its buffers
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"midstat failed: {err[-400:]}")
    stats = json.loads(out)["stats"]
    capture_stats = stats["capture"]
    actual = re.search(r"Rated: [\d.]+ Bps, [\d.]+ Mbps, ([\d.]+) pps", replay.stdout)
    sent = re.search(r"Actual: (\d+) packets", replay.stdout)
    return {"requested_pps": rate, "actual_pps": round(float(actual.group(1))) if actual else None,
            "sent": int(sent.group(1)) if sent else None, "received": capture_stats["received"],
            "kernel_dropped": capture_stats["dropped"], "if_dropped": capture_stats["if_dropped"],
            "tracked_packets": stats["packets"]}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rates", type=int, nargs="+", default=[50_000, 100_000, 150_000, 200_000, 300_000])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--buffer-size", type=int, default=32)
    args = parser.parse_args()
    if not shutil.which("tcpreplay"):
        print("tcpreplay is not installed (apt-get install tcpreplay)", file=sys.stderr)
        return 2
    capture = HERE / "data" / "synth-1000000-50000.pcap"
    if not capture.exists():
        capture.parent.mkdir(exist_ok=True)
        subprocess.run([sys.executable, str(HERE / "synth.py"), str(capture)], check=True)
    lab_up()
    best = None
    try:
        for rate in args.rates:
            result = one_rate(capture, rate, args.seconds, args.cores, args.buffer_size)
            print(json.dumps(result), flush=True)
            # the veth pair adds a few packets of its own (IPv6 neighbour discovery): at least what was sent
            clean = result["kernel_dropped"] == 0 and result["if_dropped"] == 0 and \
                result["tracked_packets"] >= (result["sent"] or 0)
            if clean:
                best = result["actual_pps"]
    finally:
        lab_down()
    print(f"highest rate with zero drops: {best} packets/s ({args.cores} cores, {args.seconds:g} s per rate)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
