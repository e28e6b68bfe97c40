"""The pull-request view (python -m birdplane.pr_summary) on a real DVC project in a temporary git repo
with two commits: the base, and a change of a param and the metrics it gives."""

import json
import re

from conftest import BIN, project_env, run

DVC_YAML = """stages:
  train:
    cmd: python train.py
    params:
      - train.lr
      - train.epochs
    metrics:
      - metrics/train.json:
          cache: false
"""


def commit(proj, env, lr, accuracy, message):
    (proj / "params.yaml").write_text(f"train:\n  lr: {lr}\n  epochs: 3\n")
    (proj / "metrics").mkdir(exist_ok=True)
    (proj / "metrics/train.json").write_text(
        json.dumps({"val_accuracy": accuracy, "n_parameters": 10})
    )
    run(["git", "add", "-A"], proj, env, check=True)
    run(["git", "commit", "-qm", message], proj, env, check=True)


def two_commits(tmp_path):
    """A DVC project in a fresh git repo: the base, then a change of a param and its metrics."""
    proj = tmp_path / "proj"
    proj.mkdir()
    env = project_env("", "")
    run(["git", "init", "-q"], proj, env, check=True)
    run([str(BIN / "dvc"), "init", "-q"], proj, env, check=True)
    (proj / "dvc.yaml").write_text(DVC_YAML)
    commit(proj, env, 0.01, 0.8125, "base")
    commit(proj, env, 0.03, 0.8340, "a larger rate")
    return proj, env


def test_summary_shows_params_and_metrics_diff_then_the_verdict_and_the_report(tmp_path):
    proj, env = two_commits(tmp_path)
    # after the check's re-run the working copy holds the fresh results: the summary shows HEAD's
    (proj / "metrics/train.json").write_text(json.dumps({"val_accuracy": 0.5, "n_parameters": 10}))
    verdict = tmp_path / "verdict.md"
    verdict.write_text(
        "## reproduction check (exact): 1 metrics files, 2 values compared: all reproduce\n"
    )
    r = run(
        [
            str(BIN / "python"),
            "-m",
            "birdplane.pr_summary",
            "--base",
            "HEAD~1",
            "--verdict",
            str(verdict),
        ],
        proj,
        env,
    )
    assert r.returncode == 0, r.stderr
    out = r.stdout
    params = out[out.index("## Params") : out.index("## Metrics")]
    assert "| params.yaml | train.lr | 0.01 | 0.03 |" in re.sub(" +", " ", params)
    assert "epochs" not in params  # unchanged params are not listed
    metrics = out[out.index("## Metrics") : out.index("## Reproduction")]
    row = next(line for line in metrics.splitlines() if "val_accuracy" in line)
    assert "0.8125" in row and "0.834" in row and "0.0215" in row
    assert "n_parameters" not in metrics
    assert "reproduction check (exact): 1 metrics files, 2 values compared: all reproduce" in out
    assert "artifact `reports`" in out

    r = run([str(BIN / "python"), "-m", "birdplane.pr_summary", "--base", "HEAD~1"], proj, env)
    assert "No verdict: the reproduction check did not run" in r.stdout
    r = run(
        [str(BIN / "python"), "-m", "birdplane.pr_summary", "--base", "no-such-branch"], proj, env
    )
    assert r.returncode == 0 and "`dvc params diff no-such-branch HEAD` failed" in r.stdout


def test_without_dvc_on_path_the_tables_say_so(tmp_path):
    proj, env = two_commits(tmp_path)
    r = run(
        [str(BIN / "python"), "-m", "birdplane.pr_summary", "--base", "HEAD~1"],
        proj,
        {**env, "PATH": "/usr/bin:/bin"},
    )
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert r.stdout.count("`dvc` is not on PATH (activate the project's venv)") == 2, r.stdout
