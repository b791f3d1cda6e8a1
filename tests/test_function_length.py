"""Functions short enough to read at once: none over 60 lines in the layers and the handlers, none over 80 in the
CDK app (whose constructs read as declarations). Migrations are history and are not held to it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LIMITS = {"layers": 60, "lambdas": 60, "cdk": 80}

pytestmark = pytest.mark.unit


def long_functions(source: str, limit: int) -> list[tuple[str, int]]:
    """(name, lines) of each function or method in `source` longer than `limit` lines, decorators included."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            first = min([node.lineno, *(decorator.lineno for decorator in node.decorator_list)])
            lines = (node.end_lineno or node.lineno) - first + 1
            if lines > limit:
                found.append((node.name, lines))
    return found


@pytest.mark.parametrize("folder", sorted(LIMITS))
def test_no_function_over_its_folders_limit(folder: str) -> None:
    paths = [path for path in (ROOT / folder).rglob("*.py") if "versions" not in path.relative_to(ROOT).parts]
    assert paths
    too_long = [
        f"{path.relative_to(ROOT)}:{name} ({lines} lines)"
        for path in paths
        for name, lines in long_functions(path.read_text(), LIMITS[folder])
    ]
    assert not too_long, too_long


def test_a_long_function_is_found_and_a_short_one_is_not() -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(60))
    source = f"def short():\n    pass\n\n@decorator\ndef long():\n{body}"
    assert long_functions(source, 60) == [("long", 62)]
