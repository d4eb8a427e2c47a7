"""The house budgets, checked: no module past ~400 lines, no function past ~40.

A module that grows past the budget splits along a concept; a function that
grows past it becomes named steps (DESIGN.md). The import contracts are
checked by `lint-imports` in .ci/run.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "remediator"
MODULE_LINES = 400
FUNCTION_LINES = 45  # "~40": the signature and docstring of a well-named step fit too


def sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_no_module_is_past_its_budget() -> None:
    over = {
        str(p.relative_to(PACKAGE)): n
        for p in sources()
        if (n := len(p.read_text().splitlines())) > MODULE_LINES
    }
    assert over == {}, f"split these along a concept: {over}"


def test_no_function_is_past_its_budget() -> None:
    over = {}
    for path in sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > FUNCTION_LINES:
                    over[f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}"] = length
    assert over == {}, f"turn these into named steps: {over}"
