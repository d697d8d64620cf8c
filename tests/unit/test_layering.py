"""The architecture's rules, checked on the import graph (every import statement of the package, at any depth:
module level, inside functions, under TYPE_CHECKING):

1. The core never imports a face: no module but the faces imports `midstat_tui.ui`, `midstat_tui.cli` or
   `midstat_tui.__main__` (and, run for real, textual and rich stay out of every core module).
2. The faces (ui, the output writers, the cli) reach the engine (engine, tcp, decode, capture, the compiled core)
   only through its public surface, ENGINE_SURFACE; the compiled core only for its encoders.
3. The state machine modules (MACHINE) import nothing with I/O: only each other and the standard library's pure
   modules (no os but os.environ, no files, sockets, processes, threads, clocks or printing).
4. The shards and core 0 speak one protocol (engine.shard_protocol, issue #11): it imports no other engine module
   (both sides of every pipe can speak it), and no module but it spells a message kind: nothing sends a tuple whose
   first item is a string literal (`pipe.send(("tick", ...))`); the kinds are the protocol's names.

Each rule is shown to fail on a planted import (`test_a_planted_import_breaks_*`).
"""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import midstat_tui

PACKAGE = Path(midstat_tui.__file__).resolve().parent

CORE = sorted(m.name for m in pkgutil.walk_packages(midstat_tui.__path__, "midstat_tui.")
              if not m.name.startswith("midstat_tui.ui") and m.name != "midstat_tui.__main__")

FACE_PREFIXES = ("midstat_tui.ui", "midstat_tui.cli", "midstat_tui.__main__", "midstat_tui.output")
UI_ONLY = ("midstat_tui.ui", "midstat_tui.cli", "midstat_tui.__main__")  # what no core module may import
ENGINE_PACKAGES = ("midstat_tui.engine", "midstat_tui.tcp", "midstat_tui.decode", "midstat_tui.capture",
                   "midstat_tui._core")

# The engine's public surface: what a face may import from the engine's packages. The rest of them (the shard
# placement and messages, checkpoints, the departed-row buffer, the state machine and its seam to the compiled
# core, the batch splitting, the capture clock and feeder, the decoder's layers and fast path) is internal.
ENGINE_SURFACE = frozenset({
    "midstat_tui.engine", "midstat_tui.tcp", "midstat_tui.decode", "midstat_tui.capture",
    "midstat_tui.engine.records",          # the connection record and its fields
    "midstat_tui.engine.pipeline",       # Engine, Snapshot, run_file
    "midstat_tui.engine.driver",         # the one driver loop and its Tick (issue #11)
    "midstat_tui.engine.run",            # the run paths the CLI wires (issue #11)
    "midstat_tui.engine.names",          # the host names learned (issue #12)
    "midstat_tui.engine.session",        # the TUI's sessions (file and live)
    "midstat_tui.engine.shard_sessions",  # the TUI's sessions on several cores
    "midstat_tui.engine.headless",      # the headless run paths
    "midstat_tui.engine.collector",      # what a face collects of a session
    "midstat_tui.engine.groups",         # grouped rows
    "midstat_tui.engine.hints",          # the stats' hints
    "midstat_tui.engine.flow_packets",   # one connection's packets (the flow screen, ladders)
    "midstat_tui.tcp.connection",        # Connection (read only)
    "midstat_tui.tcp.states",            # the state numbers and names
    "midstat_tui.tcp.tracker",           # TrackerConfig
    "midstat_tui.tcp.zeek",              # the Zeek view of a connection
    "midstat_tui.decode.segment",        # Segment's fields
    "midstat_tui.decode.frame",          # FrameDecoder: which link types decode
    "midstat_tui.decode.linktypes",
    "midstat_tui.decode.checksum",       # ChecksumPolicy
    "midstat_tui.capture.files", "midstat_tui.capture.live", "midstat_tui.capture.span",
    "midstat_tui.capture.host",          # the sources
})
PROTOCOL = "midstat_tui.engine.shard_protocol"  # rule 4
PROTOCOL_MAY_IMPORT = frozenset({"midstat_tui.lifecycle"})
# what the faces may take from the compiled core: its encoders of records and table rows
CORE_ENCODERS = frozenset({"Connection", "record_json", "summary_cells", "measure_cells", "lay_out"})

MACHINE = frozenset({"midstat_tui.tcp.states", "midstat_tui.tcp.machine", "midstat_tui.tcp.zeek",
                     "midstat_tui.tcp.connection", "midstat_tui.tcp.seam", "midstat_tui.tcp.tracker",
                     "midstat_tui.decode.segment"})
MACHINE_MAY_IMPORT = MACHINE | {"midstat_tui", "midstat_tui.tcp", "midstat_tui._core"}
PURE_STDLIB = frozenset({"__future__", "heapq", "math", "collections", "collections.abc", "dataclasses",
                         "itertools", "typing", "struct", "re", "enum", "functools", "operator", "bisect", "os"})
NO_IO_CALLS = frozenset({"open", "print", "input", "exec", "eval", "breakpoint"})


@dataclass
class Module:
    name: str
    imports: set[str] = field(default_factory=set)              # every module it imports (names resolved)
    from_core: set[str] = field(default_factory=set)            # names it takes from the compiled core
    os_uses: set[str] = field(default_factory=set)              # attributes of `os` it uses
    calls: set[str] = field(default_factory=set)                # builtins it calls by name
    spelled: set[str] = field(default_factory=set)              # kinds sent as string literals (rule 4)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def parse(name: str, text: str, is_package: bool = False) -> Module:
    tree = ast.parse(text)
    module = Module(name)
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            module.imports.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            module.imports.add(source)
            for alias in node.names:
                # `from pkg import sub`: a module of its own
                if (PACKAGE.parent / Path(*f"{source}.{alias.name}".split("."))).with_suffix(".py").exists() or \
                        f"{source}.{alias.name}" == "midstat_tui._core":
                    module.imports.add(f"{source}.{alias.name}")
                if source == "midstat_tui._core":
                    module.from_core.add(alias.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id == "_core":
                module.from_core.add(node.attr)
            elif node.value.id == "os":
                module.os_uses.add(node.attr)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            module.calls.add(node.func.id)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "send" \
                and node.args and isinstance(node.args[0], ast.Tuple) and node.args[0].elts \
                and isinstance(node.args[0].elts[0], ast.Constant) and isinstance(node.args[0].elts[0].value, str):
            module.spelled.add(node.args[0].elts[0].value)
    return module


def graph() -> dict[str, Module]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        modules[name] = parse(name, path.read_text(), path.name == "__init__.py")
    return modules


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def violations(modules: dict[str, Module]) -> list[str]:
    found = []
    for name, module in sorted(modules.items()):
        face = _under(name, FACE_PREFIXES)
        for target in sorted(module.imports):
            if not face and _under(target, UI_ONLY):
                found.append(f"rule 1: core module {name} imports the face {target}")
            if face and _under(target, ENGINE_PACKAGES) and target not in ENGINE_SURFACE \
                    and target != "midstat_tui._core":
                found.append(f"rule 2: face {name} imports the engine internal {target}")
            if name in MACHINE:
                ours = target == "midstat_tui" or target.startswith("midstat_tui.")
                if (ours and target not in MACHINE_MAY_IMPORT) or (not ours and target not in PURE_STDLIB):
                    found.append(f"rule 3: state machine module {name} imports {target}")
        if name == PROTOCOL:
            ours = {t for t in module.imports if t == "midstat_tui" or t.startswith("midstat_tui.")}
            for target in sorted(ours - PROTOCOL_MAY_IMPORT):
                found.append(f"rule 4: the shard protocol imports {target}")
        elif module.spelled:
            found.append(f"rule 4: {name} sends the message kinds {sorted(module.spelled)} spelled out")
        if face and module.from_core - CORE_ENCODERS:
            found.append(f"rule 2: face {name} uses the compiled core's {sorted(module.from_core - CORE_ENCODERS)}")
        if name in MACHINE:
            if module.os_uses - {"environ"}:
                found.append(f"rule 3: state machine module {name} uses os.{sorted(module.os_uses - {'environ'})}")
            if module.calls & NO_IO_CALLS:
                found.append(f"rule 3: state machine module {name} calls {sorted(module.calls & NO_IO_CALLS)}")
    return found


def test_the_architecture_holds_on_the_import_graph():
    modules = graph()
    assert modules.keys() >= MACHINE and "midstat_tui.ui.app" in modules and "midstat_tui.cli" in modules
    # the graph resolves `from pkg import module` and relative imports to modules
    assert {"midstat_tui.tcp.seam", "midstat_tui.tcp.zeek"} <= modules["midstat_tui.tcp.tracker"].imports
    assert "midstat_tui.ui.app" in modules["midstat_tui.cli"].imports
    assert violations(modules) == []


def _planted(name: str, line: str) -> list[str]:
    modules = graph()
    path = PACKAGE.parent / Path(*name.split("."))
    is_package = path.is_dir()
    text = (path / "__init__.py" if is_package else path.with_suffix(".py")).read_text()
    modules[name] = parse(name, text + "\n" + line + "\n", is_package)
    return violations(modules)


def test_a_planted_import_breaks_rule_1():
    assert _planted("midstat_tui.engine.pipeline", "def f():\n    from midstat_tui.ui import app") == [
        "rule 1: core module midstat_tui.engine.pipeline imports the face midstat_tui.ui",
        "rule 1: core module midstat_tui.engine.pipeline imports the face midstat_tui.ui.app"]
    assert _planted("midstat_tui.query", "import midstat_tui.cli") == [
        "rule 1: core module midstat_tui.query imports the face midstat_tui.cli"]


def test_a_planted_import_breaks_rule_2():
    assert _planted("midstat_tui.ui.app", "from midstat_tui.engine import checkpoints") == [
        "rule 2: face midstat_tui.ui.app imports the engine internal midstat_tui.engine.checkpoints"]
    assert _planted("midstat_tui.output.plain", "from midstat_tui.tcp.seam import CoreState") == [
        "rule 2: face midstat_tui.output.plain imports the engine internal midstat_tui.tcp.seam"]
    assert _planted("midstat_tui.cli", "from midstat_tui import _core\n_core.run") == [
        "rule 2: face midstat_tui.cli uses the compiled core's ['run']"]


def test_a_planted_import_breaks_rule_3():
    assert _planted("midstat_tui.tcp.machine", "import socket") == [
        "rule 3: state machine module midstat_tui.tcp.machine imports socket"]
    assert _planted("midstat_tui.tcp.tracker", "from midstat_tui.engine.records import FIELDS") == [
        "rule 3: state machine module midstat_tui.tcp.tracker imports midstat_tui.engine.records"]
    assert _planted("midstat_tui.tcp.zeek", "import os\nos.write(1, b'x')") == [
        "rule 3: state machine module midstat_tui.tcp.zeek uses os.['write']"]
    assert _planted("midstat_tui.tcp.seam", "print('x')") == [
        "rule 3: state machine module midstat_tui.tcp.seam calls ['print']"]


def test_a_planted_message_breaks_rule_4():
    assert _planted("midstat_tui.engine.shard_worker", "def f(pipe):\n    pipe.send(('tick', 0.0, None))") == [
        "rule 4: midstat_tui.engine.shard_worker sends the message kinds ['tick'] spelled out"]
    assert _planted(PROTOCOL, "from midstat_tui.engine.driver import Tick") == [
        "rule 4: the shard protocol imports midstat_tui.engine.driver"]
    # the protocol's users: every face on several cores, through it
    modules = graph()
    users = {name for name, module in modules.items() if PROTOCOL in module.imports}
    assert {"midstat_tui.engine.shard_worker", "midstat_tui.engine.shard_merge", "midstat_tui.engine.headless",
            "midstat_tui.engine.shard_sessions"} <= users


def test_core_modules_do_not_import_the_ui():
    """Run for real: importing every core module loads neither textual nor rich."""
    assert "midstat_tui.tcp.machine" in CORE and "midstat_tui.conn_view" in CORE and "midstat_tui.cli" in CORE
    code = ("import sys\n"
            + "".join(f"import {name}\n" for name in CORE)
            + "bad = [m for m in sys.modules if m.split('.')[0] in ('textual', 'rich')]\n"
            + "print(','.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
