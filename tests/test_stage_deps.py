"""dvc.yaml lists the code each stage runs: a change to a module a stage imports must re-run it."""
import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "birdplane"
# Modules whose changes cannot change a stage's outputs: argument parsing and error reporting,
# atomic file writing, MLflow logging (not a DVC output), provenance (only in the logs, which are
# not compared) and the exception base class.
SIDE_EFFECTS = {"cli", "io", "tracking", "provenance", "errors", "__init__"}


def birdplane_imports(path: Path, everywhere: bool) -> set[str]:
    """birdplane modules the file imports: anywhere (a stage script: its main() is what runs), or at
    module level only (a library module: a function's own imports run only when it is called; the
    stages that call such functions list those modules themselves, e.g. train's fused.py)."""
    found = set()
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree) if everywhere else tree.body:
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "birdplane":
                found |= {a.name for a in node.names}
            elif node.module.startswith("birdplane."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("birdplane.")}
    return {m for m in found if (SRC / f"{m}.py").exists()}


def closure(script: Path) -> set[str]:
    todo, seen = list(birdplane_imports(script, everywhere=True)), set()
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(birdplane_imports(SRC / f"{m}.py", everywhere=False))
    return seen


def stages() -> list[tuple[str, dict]]:
    with open(ROOT / "dvc.yaml") as f:
        spec = yaml.safe_load(f)["stages"]
    return [(name, s.get("do", s)) for name, s in spec.items()]


@pytest.mark.parametrize("name, stage", stages(), ids=[n for n, _ in stages()])
def test_stage_deps_list_the_code_it_runs(name, stage):
    script = re.search(r"python (pipeline/\S+\.py)", stage["cmd"]).group(1)
    deps = {d if isinstance(d, str) else next(iter(d)) for d in stage["deps"]}
    assert script in deps
    needed = {f"src/birdplane/{m}.py" for m in closure(ROOT / script) - SIDE_EFFECTS}
    missing = {p for p in needed if p not in deps and not any(p.startswith(d.rstrip("/") + "/") for d in deps)}
    assert not missing, f"stage {name} runs {sorted(missing)} but dvc.yaml does not list them as deps"


def test_the_closure_follows_the_scripts_imports_and_module_level_ones():
    assert {"engine", "data", "models", "errors"} <= closure(ROOT / "pipeline" / "train.py")
    assert "fused" not in closure(ROOT / "pipeline" / "evaluate.py")  # engine imports it inside train()
