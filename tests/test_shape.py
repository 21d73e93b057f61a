"""No library function takes more than `MAX_PARAMETERS` parameters: past that, a settings dataclass.

Counted on the source (every positional, keyword-only, *args and **kwargs; not self/cls).
Click commands in mobile_opt/cli/ are exempt: click passes one parameter per option.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mobile_opt", "converters", "device_bench")
MAX_PARAMETERS = 8


def _count(args: ast.arguments) -> int:
    names = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
    if names and names[0] in ("self", "cls"):
        names = names[1:]
    return len(names) + (args.vararg is not None) + (args.kwarg is not None)


def _is_click_command(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    def name(decorator):
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        return target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")

    return any(name(d) == "command" for d in node.decorator_list)


def _offenders() -> dict[str, int]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                if rel.startswith("mobile_opt/cli/") and _is_click_command(node):
                    continue
                if (n := _count(node.args)) > MAX_PARAMETERS:
                    found[f"{rel}::{node.name}"] = n
    return found


def test_no_function_takes_more_than_eight_parameters():
    offenders = _offenders()
    assert not offenders, (
        f"functions with more than {MAX_PARAMETERS} parameters: {offenders}; group related values into a "
        "small validated settings dataclass (e.g. device_bench.RunSettings, mobile_opt.AutoSettings)"
    )


def test_the_count_sees_keyword_only_and_star_parameters_but_not_self():
    (method,) = ast.parse("def f(self, a, b=1, *args, c, d=2, **kwargs): pass").body
    assert _count(method.args) == 6
    (command,) = ast.parse("@tools.command('install')\ndef install(a): pass").body
    assert _is_click_command(command)
