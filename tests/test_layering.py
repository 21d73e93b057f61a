"""Data flows one way: model → optimize → convert → analyse → bench.

converters and device_bench may use only mobile_opt's leaf modules; converters
never imports device_bench. Checked on the source, so a violation fails here
before it becomes an import cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LEAVES = {"mobile_opt.errors", "mobile_opt._checks", "mobile_opt._files", "mobile_opt._tf", "mobile_opt._lazy",
          "mobile_opt._version"}
RULES = {
    "converters": {"forbidden": ("mobile_opt", "device_bench")},
    "device_bench": {"forbidden": ("mobile_opt",)},
}


def _imports(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "mobile_opt":
                for alias in node.names:
                    yield node.lineno, f"mobile_opt.{alias.name}"
            else:
                yield node.lineno, node.module


@pytest.mark.parametrize("package", sorted(RULES))
def test_no_backward_imports(package):
    offenders = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for lineno, name in _imports(path):
            top = name.split(".")[0]
            if top in RULES[package]["forbidden"] and name not in LEAVES:
                offenders.append(f"{path.relative_to(ROOT)}:{lineno} imports {name}")
    assert offenders == []
