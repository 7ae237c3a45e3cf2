"""The layers of the code (docs/architecture.md), read from the source with `ast`: every import of every module
of worker/, tasks/ and config/, function-level ones included, `if TYPE_CHECKING:` blocks left out.

- `worker.storage` imports only `config`, `worker.errors` and itself;
- nothing outside `worker.edge` imports `worker.edge`, but `tasks` and the old-path shim `worker/cli.py`;
- `tasks` imports only `worker.edge`, `config` and itself (its Celery app);
- `config` imports nothing of ours;
- our modules import each other without cycles.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OURS = ("worker", "tasks", "config")


@dataclass(frozen=True)
class Import:
    importer: str  # module name
    target: str  # the module it imports: `from pkg import name` is `pkg.name` when that is a module
    where: str  # path:line

    def __str__(self) -> str:
        return f"{self.where}: {self.importer} imports {self.target}"


def within(name: str, *packages: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


@cache
def modules() -> dict[str, Path]:
    """Our module names (a package by its own name, for its __init__) and their files."""
    found = {}
    for top in OURS:
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement at any depth, but those under `if TYPE_CHECKING:` (their `else:` counts)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and _type_checking(node):
            for child in node.orelse:
                yield from _import_nodes(ast.Module(body=[child], type_ignores=[]))
        else:
            yield from _import_nodes(node)


def imports_in(source: str, importer: str, *, is_package: bool, where: str, known: set[str]) -> list[Import]:
    """The imports of our modules (`known`) that `source`, the module `importer`, makes."""
    found = []
    for node in _import_nodes(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:  # relative: from the package (a module's parent, a package itself)
                package = importer.split(".")[: len(importer.split(".")) - (node.level - is_package)]
                base = ".".join([*package, *([base] if base else [])])
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        found += [Import(importer, t, f"{where}:{node.lineno}") for t in dict.fromkeys(targets)
                  if within(t, *OURS)]
    return found


@cache
def all_imports() -> tuple[Import, ...]:
    known = set(modules())
    return tuple(i for name, path in modules().items()
                 for i in imports_in(path.read_text(), name, is_package=path.name == "__init__.py",
                                     where=str(path.relative_to(ROOT)), known=known))


def assert_only(applies: Callable[[str], bool], allowed: Callable[[str], bool], rule: str) -> None:
    """Each import by a module that `applies` is of a module `allowed`; else fail naming each import and `rule`."""
    found = [f"{i} ({rule})" for i in all_imports() if applies(i.importer) and not allowed(i.target)]
    assert not found, "\n".join(found)


def test_the_walk_sees_function_level_and_relative_imports_but_not_type_checking_ones() -> None:
    source = ("from typing import TYPE_CHECKING\nimport worker.errors\nfrom worker import clock, runtime as r\n"
              "from . import keys\nfrom .keys import DEFAULT_PREFIX\n"
              "if TYPE_CHECKING:\n    from worker.runtime import Runtime\nelse:\n    import worker.files\n"
              "def f():\n    from worker.edge import jobs\n    import config.settings\n")
    found = imports_in(source, "worker.ledger.store", is_package=False, where="x", known=set(modules()))
    assert [i.target for i in found] == ["worker.errors", "worker.clock", "worker.runtime", "worker.ledger.keys",
                                         "worker.ledger.keys", "worker.files", "worker.edge.jobs", "config.settings"]
    assert len(all_imports()) > 100 and {"worker", "tasks", "config", "worker.storage.s3"} <= set(modules())


def test_storage_imports_only_config_the_errors_and_itself() -> None:
    assert_only(lambda m: within(m, "worker.storage"), lambda t: within(t, "config", "worker.errors", "worker.storage"),
                "worker.storage imports only config, worker.errors and worker.storage")


def test_only_the_edge_tasks_and_the_old_cli_shim_import_the_edge() -> None:
    assert_only(lambda m: not within(m, "worker.edge", "tasks", "worker.cli"), lambda t: not within(t, "worker.edge"),
                "only worker.edge, tasks and the shim worker/cli.py import worker.edge")


def test_tasks_import_only_the_edge_config_and_the_celery_app() -> None:
    assert_only(lambda m: within(m, "tasks"), lambda t: within(t, "worker.edge", "config", "tasks"),
                "tasks imports only worker.edge, config and tasks")


def test_config_imports_nothing_of_ours() -> None:
    assert_only(lambda m: within(m, "config"), lambda t: within(t, "config"), "config imports nothing of ours")


def cycles() -> list[list[Import]]:
    """One cycle through each group of modules that import each other (Tarjan's strongly connected components)."""
    edges: dict[str, dict[str, Import]] = {}
    for i in all_imports():
        if i.target != i.importer:
            edges.setdefault(i.importer, {}).setdefault(i.target, i)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in edges.get(node, {}):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while (member := stack.pop()) != node:
                group.add(member)
            groups.append(group | {node})

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return [_one_cycle(sorted(g)[0], g, edges) for g in groups if len(g) > 1]


def _one_cycle(start: str, group: set[str], edges: dict[str, dict[str, Import]]) -> list[Import]:
    """A shortest path from `start` back to itself inside `group` (breadth first)."""
    paths: dict[str, list[Import]] = {start: []}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt, imp in sorted(edges.get(node, {}).items()):
                if nxt == start:
                    return [*paths[node], imp]
                if nxt in group and nxt not in paths:
                    paths[nxt] = [*paths[node], imp]
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # a strongly connected group always has one


def test_our_modules_import_each_other_without_cycles() -> None:
    found = [" → ".join([c[0].importer, *(i.target for i in c)]) + "\n    " + "\n    ".join(map(str, c))
             for c in cycles()]
    assert not found, "import cycles:\n" + "\n".join(found)


def test_the_architecture_page_names_only_files_that_exist() -> None:
    """docs/architecture.md points newcomers at files: each of them is there."""
    named = re.findall(r"`((?:worker|tasks|config|tests)/[\w./]*)`", (ROOT / "docs" / "architecture.md").read_text())
    assert len(named) > 20
    missing = [path for path in named if not (ROOT / path).exists()]
    assert not missing, f"docs/architecture.md names files that do not exist: {missing}"
