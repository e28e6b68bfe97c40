"""The speed benchmark runs end to end (tiny synthetic data): it is how the docs' figures are made."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]


def run_speed(*args: str) -> str:
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks/train_speed.py"), "--data", "none", "--n", "320",
                          "--hidden", "16", "--epochs", "2", *args], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_train_speed_compares_methods_and_prints_the_floor():
    out = run_speed()
    for method in ("book", "autograd", "stepwise", "fused"):
        line = next(line for line in out.splitlines() if line.startswith(method))
        assert re.search(r"ratio to book \d\.\d\d +train accuracy 0\.\d{4}", line), line
    # the engine's three methods train the same model on the same batches: same accuracy
    accs = {m: re.search(rf"^{m} .*train accuracy (\S+)", out, re.M).group(1) for m in ("autograd", "stepwise", "fused")}
    assert len(set(accs.values())) == 1, accs
    assert len(re.findall(r"first layer's two products alone, \d+ rows at a time: \S+ s per epoch", out)) == 2
    assert "float32 matmul peak" in out and "engine.train, 2 epochs" in out


def test_train_speed_many_models_at_once():
    out = run_speed("--many", "2")
    assert re.search(r"batched / one by one: \d+\.\d\d", out), out


def test_train_speed_without_the_book_prints_no_ratio_to_it():
    out = run_speed("--methods", "fused")  # as benchmarks/gpu.sh runs the 100-epoch graph figure
    assert "nan" not in out and "products alone" in out


def test_train_speed_peak_prints_one_number():
    """benchmarks/pipeline_stages.sh reads the matmul peak before and after a run from this."""
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks/train_speed.py"), "--peak"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert re.fullmatch(r"\d+\n", out.stdout), out.stdout
