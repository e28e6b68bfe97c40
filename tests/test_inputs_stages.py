"""Damaged inter-stage files met by the real stages in a tiny DVC project: evaluate and shift-test
refuse a damaged model file in one line whose command brings a good one back, training refuses a
std of 0 in metrics/stats.json. (tests/test_inputs_fuzz.py runs many more faults through the
stages' loaders.)"""

from __future__ import annotations

import io
import json
import re
import subprocess

import pytest
import torch

from cifar_fixture import make_archive
from conftest import dvc, files_under, make_project, project_env, stage

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A tiny project with the `small` variant trained (download, stats, train@small)."""
    base = tmp_path_factory.mktemp("inputs")
    src, md5 = make_archive(
        base / "mirror" / "cifar-10-python.tar.gz", per_class_train=16, per_class_test=8
    )
    proj = make_project(base / "proj")
    env = project_env(src.as_uri(), md5)
    dvc(proj, env, "repro", "train@small", check=True)
    return proj, env


def one_line(r: subprocess.CompletedProcess, name: str) -> str:
    lines = r.stderr.strip().splitlines()
    assert (
        r.returncode == 1 and len(lines) == 1 and lines[0].startswith(f"error in stage {name}: ")
    ), r.stderr
    assert "weights_only" not in r.stderr
    return lines[0]


def test_a_truncated_model_is_one_line_and_its_command_brings_a_good_one_back(project):
    proj, env = project
    model = proj / "models" / "small.pt"
    good = model.read_bytes()
    model.write_bytes(good[: len(good) // 3])
    error = one_line(stage(proj, env, "evaluate.py", "--variants", "small"), "evaluate")
    assert "models/small.pt: truncated or corrupt" in error and "dvc repro -f train@small" in error
    assert files_under(proj / "metrics" / "eval") == []

    command = re.search(r"run `([^`]+)`", error).group(1)  # as a user would paste it
    r = subprocess.run(
        ["bash", "-c", command], cwd=proj, env=env, capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert model.read_bytes() == good  # pinned numerics: the same bytes again
    r = stage(proj, env, "evaluate.py", "--variants", "small")
    assert r.returncode == 0, r.stderr
    assert files_under(proj / "metrics" / "eval") == ["small.json"]


def test_a_model_whose_config_claims_a_huge_layer_is_refused_before_it_is_built(project, tmp_path):
    proj, env = project
    model = proj / "models" / "small.pt"
    good = model.read_bytes()
    blob = torch.load(io.BytesIO(good), weights_only=True)
    blob["config"]["hidden"] = (200_000,)
    buffer = io.BytesIO()
    torch.save(blob, buffer)
    try:
        model.write_bytes(buffer.getvalue())
        error = one_line(stage(proj, env, "shift_test.py", "--variants", "small"), "shift-test")
        assert "models/small.pt: config hidden (200000,) holds a width outside 1..65,536" in error
        assert files_under(proj / "metrics" / "shift") == []
    finally:
        model.write_bytes(good)


def test_a_std_of_0_is_named_before_training(project):
    proj, env = project
    path = proj / "metrics" / "stats.json"
    record = json.loads(path.read_text())
    record["std"][1] = 0.0
    path.write_text(json.dumps(record))
    model = (proj / "models" / "small.pt").read_bytes()
    error = one_line(stage(proj, env, "train.py", variant="small"), "train")
    assert (
        "metrics/stats.json: the std of channel 1 (green) is 0.0" in error
        and "dvc repro -f stats" in error
    )
    assert (proj / "models" / "small.pt").read_bytes() == model
    dvc(proj, env, "repro", "-f", "stats", check=True)  # what the line says
    assert json.loads(path.read_text())["std"][1] > 0
