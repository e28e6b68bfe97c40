"""The speed benchmark runs end to end (tiny synthetic data): it is how the docs' figures are made."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]


def run_speed(*args: str) -> str:
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks/train_speed.py"),
            "--data",
            "none",
            "--n",
            "320",
            "--hidden",
            "16",
            "--epochs",
            "2",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_train_speed_compares_methods_and_prints_the_floor():
    out = run_speed()
    for method in ("book", "autograd", "stepwise", "fused"):
        line = next(line for line in out.splitlines() if line.startswith(method))
        assert re.search(r"ratio to book \d\.\d\d +train accuracy 0\.\d{4}", line), line
    # the engine's three methods train the same model on the same batches: same accuracy
    accs = {
        m: re.search(rf"^{m} .*train accuracy (\S+)", out, re.M).group(1)
        for m in ("autograd", "stepwise", "fused")
    }
    assert len(set(accs.values())) == 1, accs
    assert (
        len(
            re.findall(
                r"first layer's two products alone, \d+ rows at a time: \S+ s per epoch", out
            )
        )
        == 2
    )
    assert "float32 matmul peak" in out and "engine.train, 2 epochs" in out


def test_train_speed_many_models_at_once():
    out = run_speed("--many", "2")
    assert re.search(r"batched / one by one: \d+\.\d\d", out), out


def test_train_speed_without_the_book_prints_no_ratio_to_it():
    out = run_speed("--methods", "fused")  # as benchmarks/gpu.sh runs the 100-epoch graph figure
    assert "nan" not in out and "products alone" in out


def test_train_speed_peak_prints_one_number():
    """benchmarks/pipeline_stages.sh reads the matmul peak before and after a run from this."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/train_speed.py"), "--peak"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert re.fullmatch(r"\d+\n", out.stdout), out.stdout


def test_gpu_run_needs_only_what_the_gpu_image_has(tmp_path):
    """benchmarks/gpu.sh is the one short run on a lent GPU machine, whose image has torch, numpy,
    pytest and PyYAML but not this project's venv. Its dry run (CPU, tiny sizes) must pass with
    pydantic, MLflow, DVC and pandas hidden from every Python process it starts: the engine, its
    tests and the benchmark import none of them (birdplane.data once pulled in pydantic through
    birdplane.config for the class names)."""
    hidden = ("pydantic", "mlflow", "dvc", "pandas")
    (tmp_path / "sitecustomize.py").write_text(
        f"import sys\nfor name in {hidden!r}:\n    sys.modules[name] = None  # importing it fails\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    env.update(DEVICE="cpu", QUICK="1", PYTHONPATH=str(tmp_path))
    out = subprocess.run(
        ["bash", str(ROOT / "benchmarks/gpu.sh")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "== all steps passed" in out.stdout
    assert re.search(r"^\d+ passed, \d+ skipped", out.stdout, re.M), (
        out.stdout
    )  # the engine's tests ran
    assert re.search(r"^fused +per-epoch s: .* ratio to book \d\.\d\d", out.stdout, re.M)
    assert "batched / one by one" in out.stdout
