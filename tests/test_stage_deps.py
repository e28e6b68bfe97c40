"""dvc.yaml lists the code each stage runs: a change to a module a stage imports must re-run it."""

import ast
import re
from pathlib import Path

import pytest
import yaml

from birdplane.checkpoint import NOT_COMPUTATION

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "birdplane"
# Modules whose changes cannot change a stage's outputs: argument parsing and error reporting,
# the process's set-up (signals, heap; the numerics mode it pins is recorded by each stage), atomic
# file writing, MLflow logging and loading (not a DVC output), provenance (only in the logs, which
# are not compared), DVC hints (messages and where the project root is) and the exception base
# classes. The list is birdplane.checkpoint.NOT_COMPUTATION: a checkpoint leaves them out too.
SIDE_EFFECTS = NOT_COMPUTATION


def module_file(name: str) -> Path | None:
    """src/birdplane/<a>/<b>.py for "a.b", or the package's __init__.py; None if neither exists."""
    path = SRC.joinpath(*name.split("."))
    if path.with_suffix(".py").exists():
        return path.with_suffix(".py")
    if (path / "__init__.py").exists():
        return path / "__init__.py"
    return None


def with_packages(name: str) -> set[str]:
    """Importing birdplane.a.b runs birdplane/a/__init__.py too."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def birdplane_imports(path: Path, everywhere: bool) -> set[str]:
    """birdplane modules (dotted, below birdplane) the file imports: anywhere (a stage script: its
    main() is what runs), or at module level only (a library module: a function's own imports run
    only when it is called; the stages that call such functions list those modules themselves)."""
    found = set()
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree) if everywhere else tree.body:
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.split(".")[0] == "birdplane"
        ):
            base = node.module.split(".", 1)[1] if "." in node.module else ""
            if base:
                found |= with_packages(base)
            for alias in node.names:  # `from birdplane.x import y` where y is a module
                sub = f"{base}.{alias.name}" if base else alias.name
                if module_file(sub) is not None:
                    found |= with_packages(sub)
        elif isinstance(node, ast.Import):
            found |= {
                m
                for a in node.names
                if a.name.startswith("birdplane.")
                for m in with_packages(a.name.split(".", 1)[1])
            }
    return {m for m in found if module_file(m) is not None}


def closure(script: Path, functions_too: bool = False) -> set[str]:
    """The modules the stage script runs; `functions_too`: also those that functions of library
    modules import when called (what the stage may run, if it calls them)."""
    todo, seen = list(birdplane_imports(script, everywhere=True)), set()
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(birdplane_imports(module_file(m), everywhere=functions_too))
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
    needed = {
        module_file(m).relative_to(ROOT).as_posix()
        for m in closure(ROOT / script)
        if m.split(".")[0] not in SIDE_EFFECTS and m.split(".")[-1] not in SIDE_EFFECTS
    }
    missing = {
        p
        for p in needed
        if p not in deps and not any(p.startswith(d.rstrip("/") + "/") for d in deps)
    }
    assert not missing, (
        f"stage {name} runs {sorted(missing)} but dvc.yaml does not list them as deps"
    )


@pytest.mark.parametrize("name, stage", stages(), ids=[n for n, _ in stages()])
def test_no_stage_lists_a_dependency_twice(name, stage):
    """DVC takes a repeated dep silently (report listed text.py twice); a list read by people
    should say each thing once."""
    deps = [d if isinstance(d, str) else next(iter(d)) for d in stage["deps"]]
    assert len(deps) == len(set(deps)), sorted({d for d in deps if deps.count(d) > 1})


def test_the_closure_follows_the_scripts_imports_and_module_level_ones():
    assert {
        "train",
        "train.engine",
        "inputs",
        "cifar",
        "models",
        "errors",
        "losses",
        "activations",
    } <= closure(ROOT / "pipeline" / "train.py")
    assert not any(m.startswith("train") for m in closure(ROOT / "pipeline" / "evaluate.py"))
    assert {"report", "report.document", "report.catalog"} <= closure(
        ROOT / "pipeline" / "report.py"
    )


@pytest.mark.parametrize("name, stage", stages(), ids=[n for n, _ in stages()])
def test_stage_deps_list_no_module_the_stage_does_not_run(name, stage):
    """An extra dependency re-runs the stage for nothing (cli.py's heap setting used to re-run
    evaluate and shift-test). Folders (train/, report/) are taken whole. A module that only a
    function imports counts as run: the stage that calls the function lists it (train: metrics.py,
    imported by train.variant.seed_figures, which the sweep does not call)."""
    script = re.search(r"python (pipeline/\S+\.py)", stage["cmd"]).group(1)
    deps = {d if isinstance(d, str) else next(iter(d)) for d in stage["deps"]}
    run = {
        module_file(m).relative_to(ROOT).as_posix()
        for m in closure(ROOT / script, functions_too=True)
    }
    extra = {d for d in deps if d.startswith("src/") and d.endswith(".py") and d not in run}
    side_effects = {d for d in deps if Path(d).stem in SIDE_EFFECTS}
    assert not extra and not side_effects, (
        f"stage {name} depends on {sorted(extra | side_effects)}, which it does not run"
    )


def test_the_learning_curve_plots_list_every_variant():
    """DVC's top-level plots cannot take a folder or a foreach: the per-epoch CSVs are listed one by
    one, so a new variant must be added there too (README, "Changing the code")."""
    with open(ROOT / "dvc.yaml") as f:
        plots = yaml.safe_load(f)["plots"]
    with open(ROOT / "params.yaml") as f:
        variants = set(yaml.safe_load(f)["train"]["variants"])
    curves = [next(iter(p.values())) for p in plots if next(iter(p.values()))["x"] == "epoch"]
    assert curves
    for spec in curves:
        listed = {Path(path).stem for path in spec["y"] if path.startswith("plots/train/")}
        assert listed == variants, (
            f"dvc.yaml plots list {sorted(listed)}, train.variants has {sorted(variants)}"
        )


def test_no_import_cycles():
    """No birdplane module imports, directly or through others, a module that imports it back
    (engine.py and shift.py used to). Module-level imports and those inside functions both count."""
    modules = {
        p.relative_to(SRC).with_suffix("").as_posix().replace("/", ".").removesuffix(".__init__")
        for p in SRC.rglob("*.py")
    }
    graph = {
        m: {
            d
            for d in birdplane_imports(module_file(m), everywhere=True)
            if d != m and not m.startswith(d + ".") and not d.startswith(m + ".")
        }
        for m in modules
        if module_file(m) is not None
    }
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph.get(m, ())):
            assert state.get(d) != 1, (
                "import cycle: " + " -> ".join(path[path.index(d) :] + [d]) if d in path else d
            )
            if d not in state:
                visit(d, path + [d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
