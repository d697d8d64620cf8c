#!/usr/bin/env python3
"""The live path's CPU cost with and without `--write` (issue #13): tcpreplay onto a veth pair at a fixed rate,
midstat capturing the other end, its CPU time (user + sys, its shard workers included) per packet received.

    python3 benchmarks/live_write.py [--rate 50000] [--seconds 6] [--runs 3] [--cores 1] [--before DIR]

Variants, run in turn (alternating, `--runs` rounds), each on the same replay of benchmarks/data's synthetic capture:
  idle         the same as base, nothing replayed: the CPU of starting, waiting and stopping (taken off the others'
               per-packet figure)
  base         `--summary --json --match 'state LISTEN'` (tracks everything, prints nothing): the live path alone
  before-base  the same, from the tree in `--before` (e.g. `git archive <commit> | tar -x -C DIR`, with the built
               core copied in), when given
  write-22     `--write FILE --match 'dport 22'` (about a seventh of the connections chosen, at their first packet)
  write-state  `--write FILE --match 'sstate CLOSE_WAIT or cstate FIN_WAIT_2'` (chosen halfway, at a state change)
  write-all    `--write FILE` (every connection, every TCP packet written)
Prints one JSON line per run and the medians. Needs root and tcpreplay.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NS = "mslive-write"

VARIANTS = {
    "idle": ["--summary", "--json", "--match", "state LISTEN"],
    "base": ["--summary", "--json", "--match", "state LISTEN"],
    "write-22": ["--write", "{out}", "--match", "dport 22"],
    "write-state": ["--write", "{out}", "--match", "sstate CLOSE_WAIT or cstate FIN_WAIT_2"],
    "write-all": ["--write", "{out}"],
}


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=check)


def lab_up() -> None:
    sh("ip", "netns", "del", NS, check=False)
    sh("ip", "netns", "add", NS)
    sh("ip", "-n", NS, "link", "add", "lwsend", "type", "veth", "peer", "name", "lwcap")
    for dev in ("lwsend", "lwcap"):
        sh("ip", "-n", NS, "link", "set", dev, "up")


def one_run(tree: Path, variant: str, capture: Path, rate: int, seconds: float, cores: int, out: str) -> dict:
    args = [a.format(out=out) for a in VARIANTS[variant.removeprefix("before-")]]
    proc = subprocess.Popen(["ip", "netns", "exec", NS, "/usr/bin/time", "-f", "CPU %U %S", sys.executable, "-m",
                             "midstat_tui", "-i", "lwcap", "--cores", str(cores), "--user", "root", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tree)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    if "listening" not in line:
        proc.kill()
        raise RuntimeError(f"midstat did not start: {line}")
    if variant == "idle":  # midstat's own cost, started and stopped with nothing to read
        time.sleep(seconds)
    else:
        sh("ip", "netns", "exec", NS, "tcpreplay", "-i", "lwsend", "--preload-pcap", f"--pps={rate}",
           f"--limit={int(rate * seconds)}", str(capture))
    time.sleep(1.5)
    # SIGTERM to midstat itself (time's child), not to /usr/bin/time
    pid = sh("pgrep", "-P", str(proc.pid)).stdout.split()[0]
    sh("kill", "-TERM", pid)
    _, err = proc.communicate(timeout=120)
    cpu = re.search(r"CPU ([\d.]+) ([\d.]+)", err)
    wrote = re.search(r"wrote (\d+) packets? of (\d+) connections?", err)
    if cpu is None:
        raise RuntimeError(f"no CPU time: {err[-400:]}")
    got = sh("tcpdump", "-nr", out, check=False).stdout.count("\n") if wrote else 0
    received = int(rate * seconds)
    user, system = float(cpu.group(1)), float(cpu.group(2))
    return {"variant": variant, "cpu_s": round(user + system, 2), "us_per_packet": round((user + system) / received
            * 1e6, 3), "written": int(wrote.group(1)) if wrote else 0, "read_back": got,
            "connections": int(wrote.group(2)) if wrote else 0}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=int, default=50_000)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cores", type=int, default=1)
    parser.add_argument("--before", type=Path, default=None)
    parser.add_argument("--variants", nargs="+", default=None)
    args = parser.parse_args()
    capture = HERE / "data" / "synth-1000000-50000.pcap"
    if not capture.exists():
        capture.parent.mkdir(exist_ok=True)
        subprocess.run([sys.executable, str(HERE / "synth.py"), str(capture)], check=True)
    variants = args.variants or (["before-base"] if args.before else []) + list(VARIANTS)
    results: dict[str, list[dict]] = {v: [] for v in variants}
    lab_up()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(args.runs):
                for variant in variants:
                    tree = args.before if variant.startswith("before-") else ROOT
                    result = one_run(tree, variant, capture, args.rate, args.seconds, args.cores,
                                     f"{tmp}/{variant}.pcap")
                    results[variant].append(result)
                    print(json.dumps(result), flush=True)
    finally:
        sh("ip", "netns", "del", NS, check=False)
    idle = statistics.median(r["cpu_s"] for r in results["idle"]) if results.get("idle") else 0.0
    packets = int(args.rate * args.seconds)
    for variant, runs in results.items():
        cpu = statistics.median(r["cpu_s"] for r in runs)
        print(f"{variant}: median {cpu:.2f} s CPU for {packets} packets, {(cpu - idle) / packets * 1e6:.3f} us/packet "
              f"over idle, written {statistics.median(r['written'] for r in runs):.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
