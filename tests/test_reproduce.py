"""The reproduction check, queued experiments with two workers, and a DVC remote: each on a real
tiny project in a temporary git repo."""
import json
import subprocess
import time
from pathlib import Path

import pytest

from birdplane.reproduce import CROSS_MACHINE, EXACT, compare
from conftest import BIN, dvc, make_project, project_env, run, serve
from cifar_fixture import make_archive

pytestmark = pytest.mark.e2e


def test_compare_rules():
    committed = {"val_accuracy": 0.80, "n_parameters": 10, "best_epoch": 3, "val_loss": 0.5,
                 "confusion_matrix": {"rows": [[5, 1]]}, "source": {"url": "http://a", "md5": "x"}}
    same = json.loads(json.dumps(committed))
    assert compare("m.json", committed, same, EXACT) == []
    moved = {**same, "val_accuracy": 0.83, "best_epoch": 9, "val_loss": 0.6,
             "confusion_matrix": {"rows": [[4, 2]]}, "source": {"url": "file:///b", "md5": "x"}}
    assert compare("m.json", committed, moved, CROSS_MACHINE) == []
    assert {d.key for d in compare("m.json", committed, moved, EXACT)} == {
        "val_accuracy", "best_epoch", "val_loss", "confusion_matrix.rows.0.0", "confusion_matrix.rows.0.1",
        "source.url"}
    far = {**same, "val_accuracy": 0.70, "n_parameters": 11}
    diffs = compare("m.json", committed, far, CROSS_MACHINE)
    assert [(d.key, d.allowed) for d in diffs] == [("val_accuracy", "±0.05"), ("n_parameters", "exact")]
    assert compare("m.json", committed, {}, EXACT)[0].fresh == "(missing)"


def shrink(p):
    p["train"]["variants"] = {"nll": {"hidden": [8], "activation": "tanh", "loss": "nll"},
                              "mse": {"hidden": [8], "activation": "tanh", "loss": "mse"},
                              "small": {"hidden": [2], "activation": "tanh", "loss": "nll"}}
    p["train"]["epochs"] = 1
    p["shift"]["max_shift"] = 2
    p["shift"]["summary_shift"] = 1
    p["report"].update(augmented="", cnn="")  # no translation variants here: the report leaves that comparison out
    p["sweep"].update(widths=[2], regularizers={"dropout": {"dropout": 0.5}}, epochs=1)


@pytest.fixture(scope="module")
def committed_project(tmp_path_factory):
    """A tiny project whose pipeline outputs are committed, as a homework repo is; yields (proj, env)."""
    base = tmp_path_factory.mktemp("repro")
    with serve(base / "www") as (url, www, _):
        _, md5 = make_archive(www / "c.tar.gz", per_class_train=8, per_class_test=4)
        proj = make_project(base / "proj", shrink)
        env = project_env(f"{url}/c.tar.gz", md5)
        dvc(proj, env, "repro", check=True)
        run(["git", "add", "-A"], proj, env, check=True)
        run(["git", "commit", "-qm", "results"], proj, env, check=True)
        yield proj, env


def check(proj, env, *args):
    return run([str(BIN / "python"), "-m", "birdplane.reproduce", *args], proj, env, timeout=900)


def test_reproduction_check_passes_then_names_a_perturbed_metric(committed_project):
    proj, env = committed_project
    models = {p.name: p.read_bytes() for p in (proj / "models").glob("*.pt")}
    r = check(proj, env, "--rerun", "--tolerance", "exact")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "all reproduce" in r.stdout
    # same machine, same params: the retrained models are the same bytes, too
    assert {p.name: p.read_bytes() for p in (proj / "models").glob("*.pt")} == models
    run(["git", "add", "-A"], proj, env, check=True)
    run(["git", "commit", "-qm", "rerun"], proj, env, check=True)  # the lock's timing logs changed

    # commit a perturbed metric; the working copy keeps the fresh one
    path = proj / "metrics/eval/nll.json"
    fresh = path.read_text()
    m = json.loads(fresh)
    m["val_accuracy"] += 0.25
    path.write_text(json.dumps(m, indent=2))
    run(["git", "commit", "-qm", "perturb", "--", str(path)], proj, env, check=True)
    path.write_text(fresh)
    summary = proj.parent / "summary.md"
    r = check(proj, env, "--tolerance", "cross-machine", "--summary", str(summary))
    assert r.returncode == 1
    assert "| metrics/eval/nll.json | `val_accuracy` |" in r.stdout and "±0.05" in r.stdout
    assert "1 differ" in summary.read_text()
    assert "different data" not in r.stderr
    run(["git", "reset", "-q", "--hard", "HEAD~1"], proj, env, check=True)


def test_reproduction_check_names_a_different_data_source(committed_project):
    proj, env = committed_project
    path = proj / "metrics/stats.json"
    committed = path.read_text()
    stats = json.loads(committed)
    stats["source"]["md5"] = "0" * 32
    path.write_text(json.dumps(stats, indent=2))
    try:
        r = check(proj, env, "--tolerance", "cross-machine")
        assert r.returncode == 1 and "`source.md5`" in r.stdout
        assert "different data, so the numbers cannot match" in r.stderr and "BIRDPLANE_DATA_URL" in r.stderr
    finally:
        path.write_text(committed)


def test_reproduction_check_refuses_changed_params_or_code(committed_project):
    proj, env = committed_project
    params = (proj / "params.yaml").read_text()
    (proj / "params.yaml").write_text(params.replace("epochs: 1", "epochs: 2"))
    try:
        r = check(proj, env)
        assert r.returncode == 2 and "params.yaml differs from HEAD" in r.stderr
        assert "train@nll: param train.epochs modified since dvc.lock" in r.stderr
    finally:
        (proj / "params.yaml").write_text(params)
    code = proj / "pipeline/report.py"
    original = code.read_text()
    code.write_text(original + "\n# changed\n")
    try:
        r = check(proj, env)
        assert r.returncode == 2, r.stderr
        assert r.stderr.splitlines()[1:] == ["  - report: dependency pipeline/report.py modified since dvc.lock"]
    finally:
        code.write_text(original)


def test_dvc_remote_push_then_pull_in_a_fresh_clone(committed_project, tmp_path):
    proj, env = committed_project
    remote = tmp_path / "remote"
    dvc(proj, env, "remote", "add", "-d", "storage", str(remote), check=True)
    dvc(proj, env, "push", check=True)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(proj), str(clone)], tmp_path, env, check=True)
    # the remote config is local to this test: pass it to the clone the same way
    dvc(clone, env, "remote", "add", "-d", "storage", str(remote), check=True)
    assert not (clone / "models/nll.pt").exists()
    r = dvc(clone, env, "pull")
    assert r.returncode == 0, r.stdout + r.stderr
    assert (clone / "models/nll.pt").read_bytes() == (proj / "models/nll.pt").read_bytes()
    assert (clone / "data/prepared/dataset.npz").exists()
    r = dvc(clone, env, "status")
    assert "up to date" in r.stdout, r.stdout
    r = dvc(clone, env, "repro")
    assert r.returncode == 0 and "Running stage" not in r.stdout, r.stdout


def run_queue(proj, env, jobs: int, deadline_s: float) -> str:
    """`dvc queue start --jobs N`, then `dvc queue status` until no task is queued or running;
    returns the last status. `queue start` is not waited for: its forked worker holds the
    caller's stdout until the worker exits, so capturing its output would wait for every
    experiment. A task left Queued with no active worker (DVC's filesystem broker can lose the
    wake-up, treeverse/dvc#10398) gets the workers started again, once, as a user would; a task
    that never finishes fails the test with the workers' logs, and the workers are stopped."""
    celery = proj / ".dvc/tmp/exps/celery"

    def start():
        with (proj.parent / "queue-start.log").open("ab") as log:
            subprocess.Popen([str(BIN / "dvc"), "queue", "start", "--jobs", str(jobs)], cwd=proj, env=env,
                             stdout=log, stderr=log, stdin=subprocess.DEVNULL)

    start()
    t0, restarted, idle_since = time.monotonic(), False, None
    status = ""
    while time.monotonic() - t0 < deadline_s:
        status = dvc(proj, env, "queue", "status").stdout
        if "Queued" not in status and "Running" not in status:
            return status
        idle = "Running" not in status and "0 active" in status
        idle_since = (idle_since or time.monotonic()) if idle else None
        if idle_since and time.monotonic() - idle_since > 30 and not restarted:
            start()
            restarted = True
        time.sleep(3)
    logs = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(celery.glob("*.out")))
    dvc(proj, env, "queue", "stop", "--kill")
    pytest.fail(f"queued experiments not done after {deadline_s} s:\n{status}\n{logs}")


def test_two_queued_experiments_with_two_workers(committed_project):
    import mlflow

    proj, env = committed_project
    db = f"sqlite:///{proj}/mlflow.db"
    mlflow.set_tracking_uri(db)
    try:
        trained = "tags.dvc_stage LIKE 'train@%'"  # the sweep (it reads train.lr too) adds runs of its own
        before = len(mlflow.search_runs(experiment_names=["birdplane"], output_format="list", filter_string=trained))
    finally:
        mlflow.set_tracking_uri(None)
    for lr in ("0.02", "0.05"):
        dvc(proj, env, "exp", "run", "--queue", "-S", f"train.lr={lr}", "-n", f"lr-{lr}", check=True)
    status = run_queue(proj, env, jobs=2, deadline_s=600)
    logs = "".join(dvc(proj, env, "queue", "logs", f"lr-{lr}").stdout for lr in ("0.02", "0.05"))
    assert "database is locked" not in logs
    assert status.count("Success") == 2, status + logs
    mlflow.set_tracking_uri(db)
    try:
        runs = mlflow.search_runs(experiment_names=["birdplane"], output_format="list", filter_string=trained)
    finally:
        mlflow.set_tracking_uri(None)
    new = runs[: len(runs) - before]
    assert len(runs) - before == 6, [(r.info.run_name, r.info.status) for r in runs]
    assert all(r.info.status == "FINISHED" for r in new)
    assert sorted(float(r.data.params["lr"]) for r in new) == [0.02] * 3 + [0.05] * 3
    shown = dvc(proj, env, "exp", "show", "--json", check=True).stdout
    assert "lr-0.02" in shown and "lr-0.05" in shown
