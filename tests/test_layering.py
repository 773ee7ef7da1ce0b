"""The layering the README claims, checked on the code's own imports (every import, TYPE_CHECKING ones too).

- app -> drivers -> the drivers' shared parts; drivers never import app, stack or tornado;
  app never imports stack (the local stack is development tooling).
- The shared parts (drivers.errors, base, retry, kit, budget, limits, turns) import no particular driver.
- Sans-I/O code (Ignite's protocol/ and codec/, Redis's resp and slots) imports only the standard
  library, itself and the error tree.
- Inside a driver, each module imports only modules below it (the ranks below);
  no import cycles anywhere in app/, drivers/ or stack/.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("app", "drivers", "stack")

# Within a driver, a module may import only modules of a lower rank.
RANKS: dict[str, dict[str, int]] = {
    "drivers.ignite": {
        "errors": 0, "config": 0, "codec": 1, "protocol": 2, "connection": 3, "affinity": 3,
        "txcontext": 4, "routing": 4, "session": 5, "cursors": 6, "cluster": 6, "tx": 6, "cache": 7,
        "client": 8, "__init__": 9,
    },
    "drivers.redis": {"config": 0, "resp": 1, "slots": 2, "pipe": 2, "pubsub": 3, "topology": 3, "client": 4,
                      "cluster": 4, "__init__": 5},
    "drivers.cache": {
        "config": 0, "keys": 1, "codec": 1, "placement": 1, "local": 1, "breaker": 1, "bloom": 1,
        "remote": 2, "invalidation": 2, "cache": 3, "__init__": 4,
    },
    "drivers.mysql": {"config": 0, "pool": 1, "client": 2, "__init__": 3},
    "drivers.mongo": {"config": 0, "lockfix": 0, "client": 1, "__init__": 2},
}
SANS_IO = ("drivers.ignite.protocol", "drivers.ignite.codec", "drivers.redis.resp", "drivers.cache.keys",
           "drivers.cache.local", "drivers.redis.slots")
SANS_IO_MAY_IMPORT = ("drivers.errors", "drivers.ignite.errors", "drivers.ignite.protocol", "drivers.ignite.codec",
                      "drivers.redis.resp")
SHARED = ("drivers.errors", "drivers.base", "drivers.retry", "drivers.kit", "drivers.budget", "drivers.limits",
          "drivers.turns")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")
            if "target" not in p.parts}


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every module ``name`` imports: ``import a.b`` -> a.b; ``from a import b`` -> a.b if a module, else a."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in MODULES else base)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _violations(rule: str, bad: list[tuple[str, str]]) -> str:
    return f"{rule}:\n" + "\n".join(f"  {a} imports {b}" for a, b in sorted(bad))


def test_every_package_was_found() -> None:
    assert {"app.server", "drivers.ignite.session", "drivers.kit.outbox", "stack.cli"} <= set(MODULES)


def test_drivers_import_neither_the_service_nor_tornado_nor_the_stack() -> None:
    bad = [(m, i) for m, imps in GRAPH.items() if _within(m, "drivers") for i in imps
           if any(_within(i, p) for p in ("app", "stack", "tornado"))]
    assert not bad, _violations("drivers are plain asyncio, usable from any app", bad)


def test_the_service_does_not_import_the_local_stack() -> None:
    bad = [(m, i) for m, imps in GRAPH.items() if _within(m, "app") for i in imps if _within(i, "stack")]
    assert not bad, _violations("the local stack is development tooling", bad)


def test_the_shared_driver_parts_import_no_particular_driver() -> None:
    bad = [(m, i) for m, imps in GRAPH.items() if any(_within(m, s) for s in SHARED) for i in imps
           if _within(i, "drivers") and not any(_within(i, s) for s in SHARED)]
    assert not bad, _violations("shared parts stay below every driver", bad)


def test_sans_io_code_imports_only_the_standard_library_and_the_error_tree() -> None:
    stdlib = sys.stdlib_module_names
    bad = []
    for module, imps in GRAPH.items():
        if not any(_within(module, s) for s in SANS_IO):
            continue
        for i in imps:
            top = i.split(".")[0]
            if top in stdlib or top == "__future__" or any(_within(i, ok) for ok in SANS_IO_MAY_IMPORT):
                continue
            bad.append((module, i))
    assert not bad, _violations("protocol and codec code is sans-I/O: standard library only", bad)


@pytest.mark.parametrize("driver", sorted(RANKS))
def test_inside_a_driver_modules_import_only_the_layers_below(driver: str) -> None:
    ranks = RANKS[driver]

    def part(module: str) -> str:
        return module[len(driver) + 1:].split(".", maxsplit=1)[0] if module != driver else "__init__"

    def rank(module: str) -> int | None:
        return ranks.get(part(module)) if _within(module, driver) else None

    unranked = [m for m in MODULES if _within(m, driver) and rank(m) is None]
    assert not unranked, f"modules of {driver} with no rank in this test: {unranked}"
    bad = []
    for module, imps in GRAPH.items():
        mine = rank(module)
        if mine is None:
            continue
        for i in imps:
            theirs = rank(i)
            # The modules of one subpackage (Ignite's codec/ and protocol/, the cache's remote tiers) may
            # import each other; the subpackage as a whole keeps its rank.
            sibling = part(i) == part(module) and part(module) in ("codec", "protocol", "remote")
            if theirs is not None and theirs >= mine and not sibling:
                bad.append((module, i))
    assert not bad, _violations(f"{driver}: each module imports only modules of a lower rank {ranks}", bad)


def test_there_are_no_import_cycles() -> None:
    state: dict[str, int] = {}   # 1: on the current path, 2: done
    path: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for nxt in sorted(GRAPH.get(module, ())):
            if nxt not in GRAPH or nxt == module:
                continue
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)
