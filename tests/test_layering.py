"""The floors of src/lmlab (docs/design.md): a module imports only from the floors below it."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "src" / "lmlab"

# package -> packages it must never import (directly; indirect imports go through a lower floor)
FORBIDDEN = {
    "lmlab.model": ("lmlab.train", "lmlab.infer", "lmlab.eval", "lmlab.analysis", "lmlab.commands",
                    "lmlab.experiments", "lmlab.cli", "lmlab.checkpoint", "lmlab.serve"),
    "lmlab.infer": ("lmlab.train", "lmlab.commands", "lmlab.experiments", "lmlab.cli", "lmlab.serve"),
    "lmlab.eval": ("lmlab.train", "lmlab.commands", "lmlab.experiments", "lmlab.cli", "lmlab.serve"),
    "lmlab.analysis": ("lmlab.train", "lmlab.commands", "lmlab.experiments", "lmlab.cli", "lmlab.serve"),
    "lmlab.experiments": ("lmlab.commands", "lmlab.cli"),
}


def module_name(path: Path) -> str:
    parts = ("lmlab",) + path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Absolute names of every module `path` imports, at any depth of its code (lazy imports too)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module
            found.add(prefix)
            found.update(f"{prefix}.{alias.name}" for alias in node.names)  # `from . import train`
    return found


def violations(files) -> list[str]:
    bad = []
    for path in files:
        name = module_name(path)
        for floor, banned in FORBIDDEN.items():
            if name == floor or name.startswith(floor + "."):
                for imported in sorted(imported_modules(path)):
                    if any(imported == b or imported.startswith(b + ".") for b in banned):
                        bad.append(f"{name} imports {imported}")
    return bad


def test_floors_import_only_downwards():
    files = sorted(ROOT.rglob("*.py"))
    assert len(files) > 50
    assert violations(files) == []


def test_checker_sees_relative_and_lazy_imports(tmp_path):
    # the checker itself must catch a violation, or the test above could never fail
    fake = tmp_path / "lmlab"
    (fake / "model").mkdir(parents=True)
    (fake / "model" / "bad.py").write_text("def f():\n    from ..train.loop import train\n")
    (fake / "infer").mkdir()
    (fake / "infer" / "bad.py").write_text("from lmlab.commands import common\n")
    global ROOT
    saved, ROOT = ROOT, fake
    try:
        found = violations(sorted(fake.rglob("*.py")))
    finally:
        ROOT = saved
    assert found == ["lmlab.infer.bad imports lmlab.commands", "lmlab.infer.bad imports lmlab.commands.common",
                     "lmlab.model.bad imports lmlab.train.loop", "lmlab.model.bad imports lmlab.train.loop.train"]
