#!/usr/bin/env python3
"""Where a headless `--summary --json` run's CPU time goes, part by part, on 1 and 2 cores (issue #11): CPU time
(user + system) only, so that a loaded machine's wall times do not blur it. Medians over --runs, parts in turn.

    python3 benchmarks/parts.py [--packets 1000000] [--conns 50000] [--runs 5]

- start: `python -c "import midstat_tui.cli"` (what every run pays before reading);
- reading alone: the compiled reader over the whole file (one shard's share of 2, then the whole), and libpcap's
  batches split into frames, in this process;
- one shard's whole run in this process (run_shard, a sink that drops the records once made), share 1 of 1, 1 of 2;
- the command on 1 and on 2 cores: the parent process (core 0: start, merge, writing) and its children (the shard
  workers), each apart; `tcptrace -n` in the same rounds.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

# the command, with its CPU time split into this process's and its children's (printed last on stderr)
SPLIT = """
import resource, runpy, sys
sys.argv = ["midstat"] + sys.argv[1:]
try:
    runpy.run_module("midstat_tui", run_name="__main__")
except SystemExit:
    pass
s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"SPLIT {s.ru_utime + s.ru_stime} {c.ru_utime + c.ru_stime}", file=sys.stderr)
"""


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def child_cpu(cmd: list[str]) -> tuple[float, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, capture_output=True, cwd=ROOT)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.decode()[-400:])
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), proc.stderr.decode()


def read_compiled(path: str, count: int) -> float:
    from midstat_tui import _core

    start = cpu()
    reader = _core.Reader(path, count, 0, 1024)
    while reader.next() is not None:
        pass
    return cpu() - start


def read_libpcap(path: str) -> float:
    from midstat_tui.capture.files import FileSource

    start = cpu()
    for _ in FileSource(path).batches():
        pass
    return cpu() - start


def one_shard(path: str, count: int) -> float:
    from midstat_tui.engine.headless import Job, Sink, run_shard
    from midstat_tui.tcp.tracker import TrackerConfig

    class Drop(Sink):
        streams_summary = True

        def last(self, ts, stats, conns, everything, warning) -> None:
            for _ in everything:
                pass

    start = cpu()
    run_shard(Job(path, None, TrackerConfig(), summary=True, summary_json=True), 0, count, Drop())
    return cpu() - start


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--conns", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    path = str(HERE / "data" / f"synth-{args.packets}-{args.conns}.pcap")
    if not Path(path).exists():
        print(f"{path} is missing: run benchmarks/run.py once", file=sys.stderr)
        return 2
    command = [sys.executable, "-c", SPLIT, "-r", path, "--summary", "--json", "--user", "root"]
    parts: dict[str, list[float]] = {}

    def note(name: str, value: float) -> None:
        parts.setdefault(name, []).append(value)

    for _ in range(args.runs):
        note("start: import midstat_tui.cli", child_cpu([sys.executable, "-c", "import midstat_tui.cli"])[0])
        note("reading: compiled reader, whole file", read_compiled(path, 1))
        note("reading: compiled reader, a share of 2", read_compiled(path, 2))
        note("reading: libpcap batches + split", read_libpcap(path))
        note("one shard's run in-process, 1 of 1", one_shard(path, 1))
        note("one shard's run in-process, 1 of 2", one_shard(path, 2))
        for cores in (1, 2):
            total, err = child_cpu(command + ["--cores", str(cores)])
            parent, children = (float(x) for x in err.strip().splitlines()[-1].split()[1:3])
            note(f"command, {cores} core(s): core 0's process", parent)
            note(f"command, {cores} core(s): shard workers", children)
            note(f"command, {cores} core(s): in all", total)
        note("tcptrace -n", child_cpu(["tcptrace", "-n", path])[0])
    tcptrace = statistics.median(parts["tcptrace -n"])
    print(f"{Path(path).name}: CPU seconds (user + system), medians of {args.runs} rounds")
    for name, values in parts.items():
        median = statistics.median(values)
        ratio = f"   tcptrace / this {tcptrace / median:.2f}" if name.endswith("in all") else ""
        print(f"{name:48} {median:6.3f}{ratio}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
