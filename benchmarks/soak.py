#!/usr/bin/env python3
"""A long live run with connection churn: does midstat's memory stay flat, and does it drop nothing?

    python3 benchmarks/soak.py [--minutes 30] [--rate 100] [--long 50] [--cores 2] [--out FILE]

Builds the client / router / server network-namespace lab of scripts/netlab.py (root needed), runs
`midstat -i rc --cores N --json` on the router, and for --minutes keeps real TCP going through it: --rate new
connections a second (each sends a little data, gets an answer, then ends one of four ways: either side closes
first, either side resets) and --long connections that stay open and talk every second. Every --sample seconds it
records the resident memory of midstat's whole process tree and the capture counters of its latest snapshot.

Prints the figures (RSS after warm-up and at the end, drops, connections seen) and writes every sample as JSON.
Warm-up: the table holds ended connections for linger (60 s) and TIME_WAIT sides for 60 s, so it reaches its
steady size after about two minutes; "after warm-up" is the first sample past --warmup seconds (default 180).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "scripts"))

from netlab import (  # noqa: E402
    CLIENT_CLOSES,
    CLIENT_RESETS,
    ROUTER_CLIENT_IF,
    SERVER4,
    SERVER_CLOSES,
    SERVER_RESETS,
    NetLab,
    end,
    process_tree,
)

ENDINGS = (CLIENT_CLOSES, SERVER_CLOSES, CLIENT_RESETS, SERVER_RESETS)


def tree_rss_kb(root_pid: int) -> int:
    """Resident memory of a process and all its descendants (kB)."""
    total = 0
    for pid in process_tree(root_pid):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as fh:
            total += next((int(line.split()[1]) for line in fh if line.startswith("VmRSS:")), 0)
    return total


class Churn:
    """Real TCP through the router: short connections at a steady rate, plus long-lived talkers."""

    def __init__(self, lab: NetLab, port: int, rate: float, long_lived: int) -> None:
        self.lab, self.port, self.rate, self.long_lived = lab, port, rate, long_lived
        self.stop = threading.Event()
        self.made = 0
        self.failed = 0
        self.listener = lab.socket(lab.server)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((SERVER4, port))
        self.listener.listen(1024)
        self.accepted: list[socket.socket] = []
        self.lock = threading.Lock()

    def _accept(self) -> None:
        self.listener.settimeout(0.5)
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            with self.lock:
                self.accepted.append(conn)

    def _take(self, deadline: float) -> socket.socket | None:
        while time.monotonic() < deadline:
            with self.lock:
                if self.accepted:
                    return self.accepted.pop(0)
            time.sleep(0.001)
        return None

    def _short(self) -> None:
        rng = random.Random(1)
        interval = 1.0 / self.rate
        nxt = time.monotonic()
        while not self.stop.is_set():
            nxt += interval
            try:
                client = self.lab.socket(self.lab.client)
                client.settimeout(5)
                client.connect((SERVER4, self.port))
                server = self._take(time.monotonic() + 5)
                if server is None:
                    client.close()
                    self.failed += 1
                    continue
                client.sendall(os.urandom(rng.randint(40, 4000)))
                server.settimeout(5)
                server.recv(65536)
                server.sendall(os.urandom(rng.randint(40, 8000)))
                client.recv(65536)
                end(ENDINGS[self.made % 4], client, server, pause=0.001)
                self.made += 1
            except OSError:
                self.failed += 1
            delay = nxt - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                nxt = time.monotonic()

    def _long(self) -> None:
        pairs = []
        for _ in range(self.long_lived):
            client = self.lab.socket(self.lab.client)
            client.connect((SERVER4, self.port))
            server = self._take(time.monotonic() + 5)
            if server is not None:
                pairs.append((client, server))
        while not self.stop.wait(1.0):
            for client, server in pairs:
                try:
                    client.sendall(b"ping" * 16)
                    server.recv(4096)
                    server.sendall(b"pong" * 16)
                    client.recv(4096)
                except OSError:
                    self.failed += 1
        for client, server in pairs:
            end(CLIENT_CLOSES, client, server, pause=0)

    def start(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self._accept, daemon=True), threading.Thread(target=self._long, daemon=True),
                   threading.Thread(target=self._short, daemon=True)]
        for thread in threads:
            thread.start()
            time.sleep(0.5)  # the long-lived connections are made before the churn starts
        return threads


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=100.0, help="new connections a second")
    parser.add_argument("--long", type=int, default=50, help="long-lived connections talking every second")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between memory samples")
    parser.add_argument("--warmup", type=float, default=180.0)
    parser.add_argument("--out", default=str(HERE / "data" / "soak.json"))
    args = parser.parse_args()

    lab = NetLab(prefix="mssoak").up()
    proc = subprocess.Popen(["ip", "netns", "exec", lab.router, sys.executable, "-m", "midstat_tui", "-i",
                             ROUTER_CLIENT_IF, "--cores", str(args.cores), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stderr.readline()
    if "listening on" not in first:
        lab.down()
        print(f"midstat did not start: {first.strip()}", file=sys.stderr)
        return 2
    latest: dict = {}

    def read_snapshots() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            latest["snap"] = json.loads(line)

    threading.Thread(target=read_snapshots, daemon=True).start()
    churn = Churn(lab, 7100, args.rate, args.long)
    churn.start()
    samples = []
    began = time.monotonic()
    try:
        while time.monotonic() - began < args.minutes * 60:
            time.sleep(args.sample)
            elapsed = time.monotonic() - began
            stats = latest.get("snap", {}).get("stats", {})
            capture = stats.get("capture", {})
            samples.append({"t": round(elapsed, 1), "rss_kb": tree_rss_kb(proc.pid), "made": churn.made,
                            "failed": churn.failed, "received": capture.get("received", 0),
                            "dropped": capture.get("dropped", 0), "if_dropped": capture.get("if_dropped", 0),
                            "in_table": stats.get("in_table"), "active": stats.get("active"),
                            "started": stats.get("started")})
            print(json.dumps(samples[-1]), flush=True)
    finally:
        churn.stop.set()
        time.sleep(1.5)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        finally:
            lab.down()
    warm = [s for s in samples if s["t"] >= args.warmup] or samples
    after = warm[0]
    end_sample = samples[-1]
    summary = {
        "minutes": args.minutes, "rate": args.rate, "long_lived": args.long, "cores": args.cores,
        "connections_made": end_sample["made"], "client_errors": end_sample["failed"],
        "packets_received": end_sample["received"], "dropped": end_sample["dropped"],
        "if_dropped": end_sample["if_dropped"], "exit_code": proc.returncode,
        "rss_mb_after_warmup": round(after["rss_kb"] / 1024, 1), "rss_mb_end": round(end_sample["rss_kb"] / 1024, 1),
        "rss_mb_max_after_warmup": round(max(s["rss_kb"] for s in warm) / 1024, 1),
        "rss_mb_median_after_warmup": round(statistics.median(s["rss_kb"] for s in warm) / 1024, 1),
        "in_table_after_warmup": after["in_table"], "in_table_end": end_sample["in_table"],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"summary": summary, "samples": samples}, indent=1))
    print(json.dumps(summary, indent=1))
    return 0 if proc.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
