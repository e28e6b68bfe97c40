"""The layers hold: a test reads every module's imports (module level and inside functions) and
fails on an arrow that points the wrong way.

- base: errors, text, cifar, architecture, numerics import nothing of the project but each other;
- the ML core (data, models, losses, training, evaluation, the shift test, the sweep, what a
  checkpoint holds) imports the base and itself, never DVC, MLflow, the report, params (config)
  or file formats (io, yaml, pandas);
- operations (config, io, process, tracking, provenance, DVC hints, reproduce, the input checks,
  reading model and checkpoint files, the stage CLI) sit above the core; config imports neither
  the report nor data;
- the report sits on top; nothing below imports it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "birdplane"

BASE = {"errors", "text", "cifar", "architecture", "numerics"}
CORE = {
    "activations",
    "losses",
    "models",
    "inference",
    "data",
    "stats",
    "shift",
    "metrics",
    "summary",
    "sweep",
    "checkpoint",
    "train",
}
REPORT = {"report"}
# what the ML core may not import, of the project and from outside
NOT_IN_CORE = {
    "config",
    "io",
    "process",
    "tracking",
    "provenance",
    "dvc_hints",
    "reproduce",
    "inputs",
    "modelfile",
    "checkpointfile",
    "cli",
    "download",
    "fingerprint",
    "pr_summary",
    "serving",
    "report",
}
NOT_IN_CORE_OUTSIDE = {
    "dvc",
    "mlflow",
    "yaml",
    "pandas",
    "json",
    "csv",
    "jinja2",
    "matplotlib",
    "sqlalchemy",
}


def modules() -> dict[str, Path]:
    """'train.fast.fused' -> its file, for every module of the package."""
    out = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts) or "__init__"] = path
    return out


def imports(path: Path) -> set[str]:
    """Every module `path` imports, anywhere in it: 'birdplane.x.y' as 'x.y', others as 'ext:<top name>'."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + (
                [f"{node.module}.{a.name}" for a in node.names]
                if node.module == "birdplane"
                else []
            )
        else:
            continue
        for name in names:
            if name == "birdplane":
                continue
            found.add(
                name.removeprefix("birdplane.")
                if name.startswith("birdplane.")
                else f"ext:{name.split('.')[0]}"
            )
    return found


def layer(module: str) -> str:
    top = module.split(".")[0]
    return (
        "base" if top in BASE else "core" if top in CORE else "report" if top in REPORT else "ops"
    )


ALL = modules()


def test_the_layers_name_every_module():
    assert {m for m in ALL if m.split(".")[0] in BASE | CORE | REPORT} and "config" in ALL


@pytest.mark.parametrize("module", sorted(m for m in ALL if layer(m) == "base"))
def test_the_base_imports_only_the_base(module):
    ours = {m for m in imports(ALL[module]) if not m.startswith("ext:")}
    assert {m for m in ours if layer(m) != "base"} == set(), module


@pytest.mark.parametrize("module", sorted(m for m in ALL if layer(m) == "core"))
def test_the_core_imports_no_dvc_mlflow_report_params_or_file_formats(module):
    found = imports(ALL[module])
    wrong = {m for m in found if m.split(".")[0] in NOT_IN_CORE} | {
        m for m in found if m[4:] in NOT_IN_CORE_OUTSIDE
    }
    assert wrong == set(), (
        f"{module} imports {sorted(wrong)}: the ML core takes tensors and values, not files or trackers"
    )


def test_config_imports_neither_the_report_nor_data():
    found = imports(ALL["config"])
    assert not {m for m in found if m.split(".")[0] in {"report", "data", "models", "train"}}


@pytest.mark.parametrize("module", sorted(m for m in ALL if layer(m) != "report"))
def test_nothing_below_the_report_imports_it(module):
    assert not {m for m in imports(ALL[module]) if m.split(".")[0] == "report"}, module


def test_the_rule_sees_a_wrong_arrow(tmp_path):
    """The reader finds imports inside functions too: the check would catch a lazy one."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from birdplane.tracking import setup\n    import mlflow\n")
    assert {"tracking", "ext:mlflow"} <= imports(bad)
