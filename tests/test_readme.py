"""The README names modules that exist: its layout block, its Python examples, its dotted names."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

import rxwgan

README = Path(__file__).resolve().parents[1] / "README.md"
PACKAGE = Path(rxwgan.__file__).parent
# Wings the layout block describes in words rather than file by file.
DESCRIBED_IN_WORDS = ("models", "cli")

pytestmark = pytest.mark.skipif(not README.is_file(), reason="no README.md beside tests/")


def readme() -> str:
    return README.read_text()


def layout_block() -> str:
    text = readme()
    start = text.index("```\nsrc/rxwgan/\n")
    return text[start + 4:text.index("```", start + 4)]


def layout_files() -> set[str]:
    """Module files the layout block names, relative to the package (``train/loop.py``)."""
    files, wing = set(), ""
    for line in layout_block().splitlines()[1:]:
        head = re.match(r"^  (\w+)(/|\.py)", line)
        if head:
            wing = head.group(1) if head.group(2) == "/" else ""
            if head.group(2) == ".py":
                files.add(f"{head.group(1)}.py")
                continue
            line = line[head.end():]
        files |= {f"{wing}/{name}" if wing else name for name in re.findall(r"\b(\w+\.py)\b", line)}
    return files


def test_every_module_the_layout_names_exists():
    missing = sorted(name for name in layout_files() if not (PACKAGE / name).is_file())
    assert missing == []


def test_the_layout_names_every_module_of_each_wing():
    described = {path.relative_to(PACKAGE).as_posix() for path in PACKAGE.rglob("*.py")
                 if path.name not in ("__init__.py", "__main__.py")
                 and path.relative_to(PACKAGE).parts[0] not in DESCRIBED_IN_WORDS}
    assert sorted(described - layout_files()) == []


def test_every_wing_is_in_the_layout_in_pipeline_order():
    block = layout_block()
    positions = [block.index(f"\n  {wing}/") if f"\n  {wing}/" in block else block.index(f"\n  {wing}.py")
                 for wing in rxwgan.WINGS]
    assert positions == sorted(positions)


def test_every_dotted_name_resolves():
    names = sorted(set(re.findall(r"(?<![\w.])rxwgan(?:\.\w+)+", readme())))
    assert names, "the README names no module"
    for name in names:
        parts = name.split(".")
        for cut in range(len(parts), 0, -1):
            try:
                found = importlib.import_module(".".join(parts[:cut]))
                break
            except ModuleNotFoundError:
                continue
        for attribute in parts[cut:]:
            assert hasattr(found, attribute), f"{name}: {found.__name__} has no {attribute}"
            found = getattr(found, attribute)


def test_every_python_example_imports():
    blocks = re.findall(r"```python\n(.*?)```", readme(), re.S)
    assert blocks
    for block in blocks:
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, ast.ImportFrom) and node.module.startswith("rxwgan"):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name), f"{node.module} has no {alias.name}"
