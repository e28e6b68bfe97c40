"""Small interfaces, everywhere: no function of the package or of a stage script takes more than 8
parameters or is longer than 60 lines (counted as the formatter writes them). Options travel as a
dataclass (train.sgd.SGD, download.Transfer); a long function is split into named steps."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FILES = sorted([*(ROOT / "src" / "birdplane").rglob("*.py"), *(ROOT / "pipeline").glob("*.py")])
# torch.library kernels: their parameters are ATen's schema (aten::convolution), not ours to group
SCHEMA = {("numerics.py", "_convolution"), ("numerics.py", "_convolution_backward")}
MAX_PARAMETERS, MAX_LINES = 8, 60


def functions():
    for path in FILES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield path, node


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(ROOT)) for p in FILES])
def test_functions_are_short_and_take_few_parameters(path):
    for p, node in functions():
        if p != path:
            continue
        a = node.args
        names = [
            x.arg for x in a.posonlyargs + a.args + a.kwonlyargs if x.arg not in ("self", "cls")
        ]
        where = f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"
        if (path.name, node.name) not in SCHEMA:
            assert len(names) <= MAX_PARAMETERS, f"{where} takes {len(names)} parameters"
        assert node.end_lineno - node.lineno + 1 <= MAX_LINES, (
            f"{where} is {node.end_lineno - node.lineno + 1} lines"
        )
