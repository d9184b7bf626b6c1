"""The package's house rules: wings in pipeline order, no import cycle, few top-level modules.

Every import statement counts, wherever it stands (module level, inside a function, under
``TYPE_CHECKING``): a cycle hidden behind a lazy import is still a cycle in the design.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

import rxwgan

PACKAGE = Path(rxwgan.__file__).parent
MOST_TOP_LEVEL_MODULES = 5


def module_names(root: Path) -> dict[str, Path]:
    """Dotted name -> file, for every module of the package at ``root``."""
    names = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (a package's ``__init__`` is not a target)."""
    modules = module_names(root)

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name if name and modules[name].name != "__init__.py" else None

    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{anchor}.{base}" if base else anchor
                names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            else:
                continue
            targets |= {t for name in names if (t := resolve(name)) and t != module}
        graph[module] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles: strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def wing_of(module: str) -> str | None:
    """``rxwgan.train.loop`` -> ``train``; the package root itself has no wing."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def order_violations(graph: dict[str, set[str]], wings: tuple[str, ...]) -> list[str]:
    """Imports of a wing listed after the importer's, and modules outside every wing."""
    rank = {wing: position for position, wing in enumerate(wings)}
    problems = []
    for module, targets in sorted(graph.items()):
        wing = wing_of(module)
        if wing is None:
            continue
        if wing not in rank:
            problems.append(f"{module} is in no declared wing")
            continue
        for target in sorted(targets):
            target_wing = wing_of(target)
            if target_wing in rank and rank[target_wing] > rank[wing]:
                problems.append(f"{module} ({wing}) imports {target} ({target_wing}), a wing above it")
    return problems


def test_no_import_cycle():
    assert cycles(import_graph(PACKAGE)) == []


def test_each_wing_imports_only_wings_below_it():
    assert order_violations(import_graph(PACKAGE), rxwgan.WINGS) == []


def test_every_wing_is_a_subpackage_or_a_top_level_module():
    for wing in rxwgan.WINGS:
        assert (PACKAGE / wing / "__init__.py").is_file() or (PACKAGE / f"{wing}.py").is_file(), wing
    top_level = [path.stem for path in PACKAGE.glob("*.py") if path.stem not in ("__init__", "__main__")]
    assert len(top_level) <= MOST_TOP_LEVEL_MODULES, top_level


@pytest.fixture
def package_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "rxwgan"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def plant(path: Path, code: str) -> None:
    path.write_text(path.read_text() + f"\n\ndef _planted():\n    {code}\n")


def test_a_planted_lazy_import_cycle_is_caught(package_copy):
    # base.errors is imported by nearly everything; a function-level import back closes a cycle
    plant(package_copy / "base" / "errors.py", "from rxwgan.train.loop import train  # noqa")
    found = cycles(import_graph(package_copy))
    assert any({"rxwgan.base.errors", "rxwgan.train.loop"} <= set(component) for component in found)
    problems = order_violations(import_graph(package_copy), rxwgan.WINGS)
    assert "rxwgan.base.errors (base) imports rxwgan.train.loop (train), a wing above it" in problems


def test_a_type_only_upward_import_is_caught(package_copy):
    path = package_copy / "synth" / "card.py"
    path.write_text(path.read_text().replace(
        "from __future__ import annotations\n",
        "from __future__ import annotations\n\nfrom typing import TYPE_CHECKING\n\n"
        "if TYPE_CHECKING:\n    from rxwgan.study.plan import RunPlan  # noqa\n", 1))
    problems = order_violations(import_graph(package_copy), rxwgan.WINGS)
    assert "rxwgan.synth.card (synth) imports rxwgan.study.plan (study), a wing above it" in problems


def test_the_three_cycles_of_the_flat_layout_are_caught(tmp_path):
    """The flat package before the wings had three cycles, each behind a lazy or type-only import;
    rebuilt here in miniature with the same kinds of import."""
    root = tmp_path / "rxwgan"
    files = {
        "__init__.py": "",
        "artefacts.py": ("from typing import TYPE_CHECKING\n"
                         "if TYPE_CHECKING:\n    from rxwgan.run_state import RunState\n"),
        "run_state.py": "from rxwgan.artefacts import HISTORY_KEYS\n",
        "metrics/__init__.py": "",
        "metrics/features.py": "from rxwgan.metrics.space_registry import SPACES\n",
        "metrics/space_registry.py": ("def _trained():\n"
                                      "    from rxwgan.metrics.features import EncoderSpace\n"),
        "utility.py": "def write():\n    from rxwgan.utility_figures import save_roc_figure\n",
        "utility_figures.py": "def save():\n    from rxwgan.utility import arm\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    assert sorted(cycles(import_graph(root))) == [
        ["rxwgan.artefacts", "rxwgan.run_state"],
        ["rxwgan.metrics.features", "rxwgan.metrics.space_registry"],
        ["rxwgan.utility", "rxwgan.utility_figures"],
    ]
