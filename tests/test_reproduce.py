"""The reproduction check, queued experiments with two workers, and a DVC remote: each on a real
tiny project in a temporary git repo."""

import hashlib
import json
import subprocess
import time

import pytest

from birdplane.reproduce import K_SPREADS, compare_exact, compare_statistical, markdown_table
from conftest import BIN, ROOT, dvc, make_project, project_env, run, serve
from cifar_fixture import make_archive

pytestmark = pytest.mark.e2e


def test_exact_comparison_names_every_leaf_that_differs():
    committed = {
        "val_accuracy": 0.80,
        "n_parameters": 10,
        "val_loss": 0.5,
        "confusion_matrix": {"rows": [[5, 1]]},
    }
    assert compare_exact("m.json", committed, json.loads(json.dumps(committed))).differences == []
    moved = {**committed, "val_loss": 0.5000001, "confusion_matrix": {"rows": [[4, 2]]}}
    result = compare_exact("m.json", committed, moved)
    assert [d.key for d in result.differences] == [
        "val_loss",
        "confusion_matrix.rows.0.0",
        "confusion_matrix.rows.0.1",
    ]
    assert result.compared == 5
    assert compare_exact("m.json", committed, {}).differences[0].fresh == "(missing)"


def spread(values):
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
    return {"mean": mean, "std": std, "n": len(values), "values": values}


def test_statistical_tolerance_is_the_measured_seed_spread():
    train = {
        "val_accuracy": 0.80,
        "val_loss": 0.5,
        "n_parameters": 10,
        "model": "3072-8-2",
        "seeds": {
            "val_accuracy": spread([0.80, 0.81, 0.79]),
            "runs": [{"seed": 0, "val_accuracy": 0.8}],
        },
    }
    files = {
        "metrics/train/v.json": train,
        "metrics/eval/v.json": {"val_accuracy": 0.80, "val_ece": 0.1},
    }
    s = 0.01 * K_SPREADS * 2**0.5  # one run's value may move by K spreads of a difference
    fresh = json.loads(json.dumps(train))
    fresh["val_accuracy"] += 0.99 * s
    fresh["val_loss"] = 9.0  # no spread measured for losses: listed, not compared
    fresh["seeds"]["val_accuracy"]["std"] = 0.5
    result = compare_statistical("metrics/train/v.json", train, fresh, files)
    assert result.differences == []
    assert result.not_comparable["no seed spread measured for this quantity"] == 1  # val_loss
    assert (
        result.not_comparable[
            "a spread itself (estimated from a few seeds, no tolerance of its own)"
        ]
        == 1
    )
    fresh["val_accuracy"] = train["val_accuracy"] + 1.01 * s
    fresh["n_parameters"] = 11
    fresh["model"] = "3072-9-2"
    keys = [
        d.key for d in compare_statistical("metrics/train/v.json", train, fresh, files).differences
    ]
    assert keys == ["val_accuracy", "n_parameters", "model"]
    # evaluate's numbers take the spread of the same quantity in the variant's training metrics
    moved = {"val_accuracy": 0.80 + 1.01 * s, "val_ece": 0.5}
    result = compare_statistical("metrics/eval/v.json", files["metrics/eval/v.json"], moved, files)
    assert [d.key for d in result.differences] == ["val_accuracy"]
    assert result.not_comparable["no seed spread measured for this quantity"] == 1
    # a seed mean moves less than one seed's value: sqrt(2/n)
    rec = {"acc": spread([0.80, 0.81, 0.79])}
    ok = compare_statistical(
        "metrics/sweep.json",
        rec,
        {"acc": {**rec["acc"], "mean": 0.8 + 0.99 * 0.01 * K_SPREADS * (2 / 3) ** 0.5}},
        {"metrics/sweep.json": rec},
    )
    assert ok.differences == []


def committed_results(folder):
    return {
        str(p.relative_to(folder)): json.loads(p.read_text())
        for p in folder.glob("metrics/**/*.json")
    }


def test_statistical_mode_passes_the_same_recipe_computed_with_other_numerics():
    """The measurement behind K_SPREADS: tests/data/unpinned holds the results of the same params made
    with MKL's AVX-512 kernels on an Intel Xeon (before pinned numerics), the repository's are pinned."""
    old = committed_results(ROOT / "tests/data/unpinned")
    new = committed_results(ROOT)
    assert old.keys() == new.keys()
    # the same data and params in other roundings: every training's metrics moved (the shift tests of
    # three MLPs and the data's statistics came out the same)
    assert all(
        old[f] != new[f] for f in old if f.startswith("metrics/train/") or f == "metrics/sweep.json"
    )
    for file in old:
        result = compare_statistical(file, old[file], new[file], old)
        assert result.differences == [], markdown_table(result.differences)
        assert result.compared > 0
    # every train metrics file compares its headline numbers
    for v in ("nll", "mse", "small"):
        result = compare_statistical(
            f"metrics/train/{v}.json",
            old[f"metrics/train/{v}.json"],
            new[f"metrics/train/{v}.json"],
            old,
        )
        assert result.compared >= 40


def test_statistical_mode_fails_three_points_and_another_recipe():
    new = committed_results(ROOT)
    nll = new["metrics/train/nll.json"]
    planted = json.loads(json.dumps(nll))
    planted["val_accuracy"] += 0.03
    diffs = compare_statistical("metrics/train/nll.json", nll, planted, new).differences
    assert [d.key for d in diffs] == ["val_accuracy"]
    # the MSE variant's metrics handed in as the NLL variant's, recipe and name relabelled: numbers differ
    other = json.loads(json.dumps(new["metrics/train/mse.json"]))
    other.update(recipe=nll["recipe"], model=nll["model"])
    diffs = compare_statistical("metrics/train/nll.json", nll, other, new).differences
    assert {d.key for d in diffs} & {
        "train_accuracy",
        "seeds.train_accuracy.mean",
        "overfit_gap",
    }, diffs


def shrink(p):
    p["train"]["variants"] = {
        "nll": {"hidden": [8], "activation": "tanh", "loss": "nll"},
        "mse": {"hidden": [8], "activation": "tanh", "loss": "mse"},
        "small": {"hidden": [2], "activation": "tanh", "loss": "nll"},
    }
    p["train"]["epochs"] = 1
    p["shift"]["max_shift"] = 2
    p["shift"]["summary_shift"] = 1
    p["report"].update(
        augmented="", cnn=""
    )  # no translation variants here: the report leaves that comparison out
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
    lock = (proj / "dvc.lock").read_text()
    r = check(proj, env, "--rerun", "--mode", "exact")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "all reproduce" in r.stdout
    # same params: the retrained models are the same bytes, too
    assert {p.name: p.read_bytes() for p in (proj / "models").glob("*.pt")} == models
    # the run rewrote the logs' hashes in dvc.lock (wall times): not a change of definitions
    assert (proj / "dvc.lock").read_text() != lock
    r = check(proj, env, "--mode", "exact")
    assert r.returncode == 0 and "all reproduce" in r.stdout, r.stderr
    run(["git", "add", "-A"], proj, env, check=True)
    run(["git", "commit", "-qm", "rerun"], proj, env, check=True)

    # commit a perturbed metric; the working copy keeps the fresh one
    path = proj / "metrics/eval/nll.json"
    fresh = path.read_text()
    m = json.loads(fresh)
    m["val_accuracy"] += 0.25
    path.write_text(json.dumps(m, indent=2))
    run(["git", "commit", "-qm", "perturb", "--", str(path)], proj, env, check=True)
    path.write_text(fresh)
    summary = proj.parent / "summary.md"
    r = check(proj, env, "--mode", "exact", "--summary", str(summary))
    assert r.returncode == 1
    assert "| metrics/eval/nll.json | `val_accuracy` |" in r.stdout and "exact" in r.stdout
    assert "1 differ" in summary.read_text()
    assert "different data" not in r.stderr
    run(["git", "reset", "-q", "--hard", "HEAD~1"], proj, env, check=True)


def other_run_metrics(proj, env, tmp_path, edit) -> dict:
    """metrics/train/nll.json from a run of the nll stage with params changed by `edit`, written
    outside the project."""
    import yaml

    params = yaml.safe_load((proj / "params.yaml").read_text())
    edit(params)
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(params))
    out = tmp_path / "other"
    r = run(
        [
            str(BIN / "python"),
            "pipeline/train.py",
            "--variant",
            "nll",
            "--params",
            str(tmp_path / "other.yaml"),
            "--data",
            "data/prepared/dataset.npz",
            "--stats",
            "metrics/stats.json",
            "--model",
            str(out / "m.pt"),
            "--metrics",
            str(out / "m.json"),
            "--plot",
            str(out / "p.csv"),
            "--seed-curves",
            str(out / "s.csv"),
            "--checkpoint",
            str(out / "c.pt"),
            "--train-log",
            str(out / "l.json"),
        ],
        proj,
        {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/o.db"},
    )
    assert r.returncode == 0, r.stderr
    return json.loads((out / "m.json").read_text())


def _fabricated(proj, env, tmp_path):
    m = json.loads((proj / "metrics/eval/nll.json").read_text())
    m["val_accuracy"] += 0.005
    return (
        {"metrics/eval/nll.json": json.dumps(m, indent=2)},
        "metrics/eval/nll.json",
        "val_accuracy",
    )


def _loss_digit(proj, env, tmp_path):
    text = (proj / "metrics/train/mse.json").read_text()
    m = json.loads(text)
    loss = repr(m["train_loss"])
    i = max(
        i for i, ch in enumerate(loss) if ch.isdigit() and ch not in "09"
    )  # the last digit we can bump
    m["train_loss"] = float(loss[:i] + str(int(loss[i]) + 1) + loss[i + 1 :])
    return (
        {"metrics/train/mse.json": json.dumps(m, indent=2)},
        "metrics/train/mse.json",
        "train_loss",
    )


def _other_seed(proj, env, tmp_path):
    m = other_run_metrics(proj, env, tmp_path, lambda p: p.update(seed=p["seed"] + 1))
    return {"metrics/train/nll.json": json.dumps(m, indent=2)}, "metrics/train/nll.json", "val_loss"


def _before_a_param_change(proj, env, tmp_path):
    m = other_run_metrics(proj, env, tmp_path, lambda p: p["train"].update(lr=p["train"]["lr"] * 2))
    return {"metrics/train/nll.json": json.dumps(m, indent=2)}, "metrics/train/nll.json", "val_loss"


def _swap_md5s(proj, folder: str, a: str, b: str) -> dict:
    """dvc.lock with the md5s of <folder>/a.pt and <folder>/b.pt swapped: a's names b's bytes."""
    lock = (proj / "dvc.lock").read_text()
    md5 = {v: hashlib.md5((proj / f"{folder}/{v}.pt").read_bytes()).hexdigest() for v in (a, b)}
    return {"dvc.lock": lock.replace(md5[a], "@@").replace(md5[b], md5[a]).replace("@@", md5[b])}


def _swapped_model(proj, env, tmp_path):
    return _swap_md5s(proj, "models", "nll", "mse"), "models/nll.pt", "md5"


def _swapped_checkpoint(proj, env, tmp_path):
    return _swap_md5s(proj, "checkpoints", "small", "mse"), "checkpoints/small.pt", "md5"


@pytest.mark.parametrize(
    "plant",
    [
        _fabricated,
        _loss_digit,
        _other_seed,
        _before_a_param_change,
        _swapped_model,
        _swapped_checkpoint,
    ],
    ids=[
        "accuracy+0.5points",
        "one-digit-of-a-loss",
        "metrics-of-another-seed",
        "metrics-from-before-a-param-change",
        "swapped-model-file",
        "swapped-checkpoint",
    ],
)
def test_exact_mode_fails_on_every_planted_fault(committed_project, tmp_path, plant):
    """Faults committed as if by hand; the working copy holds what the code computes."""
    proj, env = committed_project
    planted, file, key = plant(proj, env, tmp_path)
    fresh = {f: (proj / f).read_text() for f in planted}
    for f, text in planted.items():
        (proj / f).write_text(text)
    run(["git", "commit", "-qm", "planted", "--", *planted], proj, env, check=True)
    try:
        for f, text in fresh.items():
            (proj / f).write_text(text)
        r = check(proj, env, "--mode", "exact")
        assert r.returncode == 1, r.stdout + r.stderr
        assert f"| {file} | `{key}` |" in r.stdout, r.stdout
    finally:
        run(["git", "reset", "-q", "--hard", "HEAD~1"], proj, env, check=True)
        for f, text in fresh.items():
            (proj / f).write_text(text)


def test_exact_mode_is_refused_for_unpinned_results_or_numerics(committed_project):
    proj, env = committed_project
    r = check(proj, {**env, "BIRDPLANE_NUMERICS": "fast"}, "--mode", "exact")
    assert r.returncode == 2
    assert r.stderr.strip() == (
        "reproduction check refused: numerics are not pinned here (BIRDPLANE_NUMERICS=fast), "
        "so the bits cannot match; use --mode statistical"
    )
    r = check(
        proj, {**env, "BIRDPLANE_NUMERICS": "fast"}
    )  # auto: says why, then compares statistically
    assert "statistical mode, since numerics are not pinned here" in r.stderr
    assert (
        "reproduction check (statistical)" in r.stdout and "Not comparable in this mode" in r.stdout
    )
    log = proj / "logs/train/nll.json"
    text = log.read_text()
    m = json.loads(text)
    m["numerics"] = {"mode": "fast", "machine": "x86_64"}
    log.write_text(json.dumps(m))
    run(["git", "commit", "-qm", "unpinned", "--", str(log)], proj, env, check=True)
    try:
        r = check(proj, env, "--mode", "exact")
        assert r.returncode == 2
        assert (
            "the committed results were not made with pinned numerics (logs/train/nll.json: fast)"
            in r.stderr
        )
    finally:
        run(["git", "reset", "-q", "--hard", "HEAD~1"], proj, env, check=True)


def test_without_dvc_on_path_the_check_says_so_in_one_line(committed_project, tmp_path):
    """`python -m birdplane.reproduce` outside the venv (dvc not on PATH): one line, no traceback."""
    proj, env = committed_project
    summary = tmp_path / "verdict.md"
    r = check(proj, {**env, "PATH": "/usr/bin:/bin"}, "--summary", str(summary))
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == (
        "reproduction check refused: `dvc` is not on PATH: run `make reproduce-check`, or activate "
        "the project's venv first (source .venv/bin/activate)"
    )
    assert "`dvc` is not on PATH" in summary.read_text()


def test_reproduction_check_names_a_different_data_source(committed_project):
    proj, env = committed_project
    path = proj / "metrics/stats.json"
    committed = path.read_text()
    stats = json.loads(committed)
    stats["source"]["md5"] = "0" * 32
    path.write_text(json.dumps(stats, indent=2))
    try:
        r = check(proj, env, "--mode", "statistical")
        assert r.returncode == 1 and "`source.md5`" in r.stdout
        assert (
            "different data, so the numbers cannot match" in r.stderr
            and "BIRDPLANE_DATA_URL" in r.stderr
        )
    finally:
        path.write_text(committed)


def test_reproduction_check_refuses_changed_params_or_code(committed_project):
    proj, env = committed_project
    params = (proj / "params.yaml").read_text()
    (proj / "params.yaml").write_text(params.replace("epochs: 1", "epochs: 2"))
    try:
        r = check(proj, env)
        assert r.returncode == 2 and "params.yaml differs from HEAD" in r.stderr
        assert r.stderr.splitlines()[-1].startswith("reproduction check refused: ")
        assert "train@nll: param train.epochs modified since dvc.lock" in r.stderr
    finally:
        (proj / "params.yaml").write_text(params)
    code = proj / "pipeline/report.py"
    original = code.read_text()
    code.write_text(original + "\n# changed\n")
    try:
        r = check(proj, env)
        assert r.returncode == 2, r.stderr
        assert r.stderr.splitlines()[1:-1] == [
            "  - report: dependency pipeline/report.py modified since dvc.lock"
        ]
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
            subprocess.Popen(
                [str(BIN / "dvc"), "queue", "start", "--jobs", str(jobs)],
                cwd=proj,
                env=env,
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )

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
    logs = "\n".join(
        f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
        for p in sorted(celery.glob("*.out"))
    )
    dvc(proj, env, "queue", "stop", "--kill")
    pytest.fail(f"queued experiments not done after {deadline_s} s:\n{status}\n{logs}")


def test_two_queued_experiments_with_two_workers(committed_project):
    import mlflow

    proj, env = committed_project
    db = f"sqlite:///{proj}/mlflow.db"
    mlflow.set_tracking_uri(db)
    try:
        trained = "tags.dvc_stage LIKE 'train@%'"  # the sweep (it reads train.lr too) adds runs of its own
        before = len(
            mlflow.search_runs(
                experiment_names=["birdplane"], output_format="list", filter_string=trained
            )
        )
    finally:
        mlflow.set_tracking_uri(None)
    for lr in ("0.02", "0.05"):
        dvc(
            proj, env, "exp", "run", "--queue", "-S", f"train.lr={lr}", "-n", f"lr-{lr}", check=True
        )
    status = run_queue(proj, env, jobs=2, deadline_s=600)
    logs = "".join(dvc(proj, env, "queue", "logs", f"lr-{lr}").stdout for lr in ("0.02", "0.05"))
    assert "database is locked" not in logs
    assert status.count("Success") == 2, status + logs
    mlflow.set_tracking_uri(db)
    try:
        runs = mlflow.search_runs(
            experiment_names=["birdplane"], output_format="list", filter_string=trained
        )
    finally:
        mlflow.set_tracking_uri(None)
    new = runs[: len(runs) - before]
    assert len(runs) - before == 6, [(r.info.run_name, r.info.status) for r in runs]
    assert all(r.info.status == "FINISHED" for r in new)
    assert sorted(float(r.data.params["lr"]) for r in new) == [0.02] * 3 + [0.05] * 3
    shown = dvc(proj, env, "exp", "show", "--json", check=True).stdout
    assert "lr-0.02" in shown and "lr-0.05" in shown
