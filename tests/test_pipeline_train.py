"""The whole pipeline through real DVC in a temporary git repo on a tiny archive, and its MLflow
runs read back through a real `mlflow server` on 127.0.0.1."""

import hashlib
import json
import shutil
import socket
import subprocess
import time
import urllib.request

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from birdplane.data import load_dataset, to_features
from birdplane.io import read_json
from birdplane.models import load_model
from conftest import (
    BIN,
    TINY_SWEEP,
    TINY_TRAIN,
    VARIANTS,
    dvc,
    files_under,
    headless_chromium,
    make_project,
    project_env,
    stage,
    stage_args,
)

pytestmark = pytest.mark.e2e


def test_every_stage_wrote_its_outputs(pipeline):
    proj, _ = pipeline
    for v in VARIANTS:
        m = read_json(proj / f"metrics/eval/{v}.json")
        assert {
            "train_accuracy",
            "val_accuracy",
            "overfit_gap",
            "n_parameters",
            "per_class",
            "confusion_matrix",
            "val_ece",
        } <= set(m)
        assert m["overfit_gap"] == pytest.approx(m["train_accuracy"] - m["val_accuracy"])
        assert sum(map(sum, m["confusion_matrix"]["rows_actual_cols_predicted"])) == 16
        # evaluate on the saved model reproduces the last epoch of training exactly
        t = read_json(proj / f"metrics/train/{v}.json")
        assert (t["val_accuracy"], t["train_accuracy"]) == (m["val_accuracy"], m["train_accuracy"])
        lines = (proj / f"plots/train/{v}.csv").read_text().splitlines()
        assert lines[0] == "epoch,train_loss,train_accuracy,val_loss,val_accuracy"
        assert len(lines) == 1 + TINY_TRAIN["epochs"]
        # every seed's curve; the plot above is their mean (params.yaml: 3 seeds for nll, mse, small)
        seeds = t.get("seeds", {}).get("seeds", [0])
        assert len(seeds) == (3 if v in ("nll", "mse", "small") else 1)
        per_seed = (proj / f"plots/train/seeds/{v}.csv").read_text().splitlines()
        assert (
            per_seed[0] == "seed," + lines[0]
            and len(per_seed) == 1 + len(seeds) * TINY_TRAIN["epochs"]
        )
        if len(seeds) == 1:
            assert [row[2:] for row in per_seed[1:]] == lines[1:]
        else:
            assert [r["seed"] for r in t["seeds"]["runs"]] == seeds and "val_ece" in t["seeds"]
        blob = torch.load(proj / f"models/{v}.pt", weights_only=True)
        assert set(blob) == {"config", "state_dict"}
        # shift-test: shift 0 is exactly the evaluated validation accuracy; rings 0..k
        sh = read_json(proj / f"metrics/shift/{v}.json")
        assert sh["accuracy_at_0"] == m["val_accuracy"] == sh["accuracy_by_shift"]["0"]
        assert list(sh["accuracy_by_shift"]) == [str(r) for r in range(9)] and "accuracy_at_4" in sh
        assert len((proj / f"plots/shift/grid/{v}.csv").read_text().splitlines()) == 1 + 17 * 17
    small, nll = (
        read_json(proj / "metrics/eval/small.json"),
        read_json(proj / "metrics/eval/nll.json"),
    )
    assert small["n_parameters"] < nll["n_parameters"]


def test_second_repro_has_nothing_to_do(pipeline):
    proj, env = pipeline
    r = dvc(proj, env, "status")
    assert r.returncode == 0 and "up to date" in r.stdout, r.stdout
    r = dvc(proj, env, "repro")
    assert r.returncode == 0 and "Running stage" not in r.stdout, r.stdout


def test_metrics_show_lists_every_variant(pipeline):
    proj, env = pipeline
    r = dvc(proj, env, "metrics", "show", "--json", check=True)
    files = next(iter(json.loads(r.stdout).values()))["data"]
    for v in VARIANTS:
        assert files[f"metrics/eval/{v}.json"]["data"]["val_accuracy"] >= 0
        assert files[f"metrics/train/{v}.json"]["data"]["epochs"] == TINY_TRAIN["epochs"]
        assert files[f"metrics/shift/{v}.json"]["data"]["accuracy_at_0"] >= 0
    r = dvc(proj, env, "plots", "show", "-o", str(proj / "plots_html"), check=True)
    assert (proj / "plots_html/index.html").exists()
    shown = json.loads(dvc(proj, env, "plots", "show", "--json", check=True).stdout)["data"]
    for v in VARIANTS:
        for kind in ("eval/confusion", "eval/calibration", "shift/by_shift", "shift/grid"):
            assert f"plots/{kind}/{v}.csv" in shown, sorted(shown)


def _tags(run: dict) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def _rest(base, path, body=None):
    req = urllib.request.Request(
        f"{base}/api/2.0/mlflow/{path}",
        method="POST" if body is not None else "GET",
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def mlflow_server(pipeline):
    proj, env = pipeline
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            str(BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{proj}/mlflow.db",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        cwd=proj,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{base}/health", timeout=2)
                break
            except OSError:
                assert proc.poll() is None, "mlflow server exited"
                time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_mlflow_rest_api_has_one_run_per_variant(pipeline, mlflow_server):
    proj, _ = pipeline
    exp = _rest(mlflow_server, "experiments/get-by-name?experiment_name=birdplane")["experiment"]
    trained = _rest(
        mlflow_server,
        "runs/search",
        {"experiment_ids": [exp["experiment_id"]], "filter": "tags.dvc_stage LIKE 'train@%'"},
    )["runs"]
    runs = [r for r in trained if "mlflow.parentRunId" not in _tags(r)]
    by_name = {r["info"]["run_name"]: r for r in runs}
    assert sorted(by_name) == sorted(VARIANTS) and len(runs) == len(VARIANTS)
    # the further seeds of nll, mse and small: child runs of their variant's run
    children = sorted(
        (r["info"]["run_name"], r["info"]["status"], _tags(r)["mlflow.parentRunId"])
        for r in trained
        if r not in runs
    )
    assert children == [
        (f"{v}-seed{s}", "FINISHED", by_name[v]["info"]["run_id"])
        for v in ("mse", "nll", "small")
        for s in (1, 2)
    ]
    for v, run in by_name.items():
        assert run["info"]["status"] == "FINISHED"
        tags = _tags(run)
        assert (
            tags["variant"] == v
            and tags["dvc_stage"] == f"train@{v}"
            and len(tags["data_md5"]) == 32
        )
        assert "git_commit" in tags
        params = {p["key"]: p["value"] for p in run["data"]["params"]}
        assert params["epochs"] == str(TINY_TRAIN["epochs"]) and params["loss"] in ("nll", "mse")
        run_id = run["info"]["run_id"]
        history = _rest(
            mlflow_server, f"metrics/get-history?run_id={run_id}&metric_key=val_accuracy"
        )["metrics"]
        assert [m["step"] for m in sorted(history, key=lambda m: m["step"])] == list(
            range(1, TINY_TRAIN["epochs"] + 1)
        )
        metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
        assert (
            metrics["eval_val_accuracy"]
            == read_json(proj / f"metrics/eval/{v}.json")["val_accuracy"]
        )
        assert metrics["shift_accuracy_at_0"] == metrics["eval_val_accuracy"]
        models = _rest(
            mlflow_server,
            "logged-models/search",
            {"experiment_ids": [exp["experiment_id"]], "filter": f"source_run_id = '{run_id}'"},
        )["models"]
        assert len(models) == 1 and models[0]["info"]["name"] == "model"


def test_logged_model_reproduces_val_accuracy(pipeline, mlflow_server):
    """The logged model loads without pickle (birdplane.serving: torch.load with weights_only) and
    predicts exactly what the DVC-tracked model predicts."""
    import mlflow

    from birdplane.serving import load_logged_model

    proj, _ = pipeline
    mlflow.set_tracking_uri(mlflow_server)
    try:
        exp = mlflow.get_experiment_by_name("birdplane")
        stats = read_json(proj / "metrics/stats.json")
        _, val, _ = load_dataset(proj / "data/prepared/dataset.npz")
        x = to_features(val.images, stats["mean"], stats["std"], torch.device("cpu")).reshape(
            -1, 3, 32, 32
        )
        for v in VARIANTS:
            run = next(
                r
                for r in mlflow.search_runs(
                    [exp.experiment_id], filter_string=f"tags.variant = '{v}'", output_format="list"
                )
                if "mlflow.parentRunId" not in r.data.tags
            )  # the variant's run, not a further seed's
            model_info = mlflow.search_logged_models(
                experiment_ids=[exp.experiment_id],
                filter_string=f"source_run_id = '{run.info.run_id}'",
                output_format="list",
            )[0]
            model = load_logged_model(f"models:/{model_info.model_id}")
            tracked, _ = load_model(proj / f"models/{v}.pt")
            with torch.no_grad():
                assert torch.equal(model(x), tracked(x))
                acc = float((model(x).argmax(1) == torch.from_numpy(val.labels)).float().mean())
            assert acc == read_json(proj / f"metrics/eval/{v}.json")["val_accuracy"]
            # no pickle anywhere in the artifact: MLflow's pyfunc format around the model file
            local = Path(mlflow.artifacts.download_artifacts(f"models:/{model_info.model_id}"))
            files = [p for p in local.rglob("*") if p.is_file()]
            assert not [p for p in files if p.suffix in (".pkl", ".pickle", ".pth", ".cloudpickle")]
            mlmodel = yaml.safe_load((local / "MLmodel").read_text())
            assert set(mlmodel["flavors"]) == {"python_function"}
            assert mlmodel["flavors"]["python_function"]["loader_module"] == "birdplane.serving"
            # the same numbers through MLflow's generic pyfunc interface
            pyfunc = mlflow.pyfunc.load_model(f"models:/{model_info.model_id}")
            assert np.array_equal(pyfunc.predict(x[:4].numpy()), tracked(x[:4]).detach().numpy())
            # pinned to this environment (tracking.log_torch_model shortcuts MLflow's package scan)
            requirements = mlflow.pyfunc.get_model_dependencies(f"models:/{model_info.model_id}")
            with open(requirements) as f:
                pins = set(f.read().split())
            assert {
                f"torch=={torch.__version__.split('+')[0]}",
                f"mlflow=={mlflow.__version__}",
            } <= pins
    finally:
        mlflow.set_tracking_uri(None)


def test_dvc_exp_run_with_set_param(pipeline):
    """`dvc exp run --temp -S …` in a copy of the repo: DVC records it, MLflow still gets the runs."""
    proj, env = pipeline
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{proj}/mlflow.db")

    def variant_runs():  # the variants' own runs, not the seeds' child runs
        return [
            r
            for r in mlflow.search_runs(
                experiment_names=["birdplane"],
                output_format="list",
                filter_string="tags.dvc_stage LIKE 'train@%'",
            )
            if "mlflow.parentRunId" not in r.data.tags
        ]

    try:
        before = len(variant_runs())
        r = dvc(proj, env, "exp", "run", "--temp", "-S", "train.epochs=1", "-n", "one-epoch")
        assert r.returncode == 0, r.stdout + r.stderr
        runs = variant_runs()
    finally:
        mlflow.set_tracking_uri(None)
    assert len(runs) == before + len(VARIANTS)  # one new run per variant, in the project's store
    exps = json.loads(dvc(proj, env, "exp", "show", "--json", check=True).stdout)
    found = [
        e for base in exps for e in (base.get("experiments") or []) if e.get("name") == "one-epoch"
    ]
    assert found, exps
    data = found[0]["revs"][0]["data"]
    assert data["params"]["params.yaml"]["data"]["train"]["epochs"] == 1
    assert data["metrics"]["metrics/train/nll.json"]["data"]["epochs"] == 1
    # the workspace itself is untouched
    assert len((proj / "plots/train/nll.csv").read_text().splitlines()) == 1 + TINY_TRAIN["epochs"]


def test_nan_loss_fails_the_stage_without_model(tmp_path, tiny_archive):
    url, md5, _ = tiny_archive

    def huge_lr(p):
        p["train"]["variants"]["boom"] = {
            "hidden": [64, 64],
            "activation": "relu",
            "loss": "nll",
            "lr": 1.0e5,
        }

    proj = make_project(tmp_path / "proj", huge_lr)
    env = project_env(url, md5)
    dvc(proj, env, "repro", "stats", check=True)
    r = stage(proj, env, "train.py", variant="boom")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert (
        "variant 'boom'" in r.stderr and "epoch 1 of 2" in r.stderr and "learning rate" in r.stderr
    )
    assert files_under(proj / "models") == [] and files_under(proj / "metrics/train") == []
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{proj}/mlflow.db")
    try:
        runs = mlflow.search_runs(experiment_names=["birdplane"], output_format="list")
        assert [(r.info.run_name, r.info.status) for r in runs] == [("boom", "FAILED")]
    finally:
        mlflow.set_tracking_uri(None)


def test_a_checkpoint_of_other_code_is_not_read_and_the_sweep_gives_the_same_bits(
    pipeline, tmp_path
):
    """checkpoints/mse.pt as if trained before a change to the training code: the sweep names the
    file and the change, trains mse_lr0.01 itself, and writes the bytes it wrote when it read it."""
    proj, env = pipeline
    blob = torch.load(proj / "checkpoints/mse.pt", weights_only=True)
    assert blob["seeds"] == [0, 1, 2] and blob["epoch"] == TINY_SWEEP["epochs"]
    assert "train/sgd.py" in blob["computation"]["code"]
    blob["computation"]["code"]["train/sgd.py"] = "0" * 32
    (tmp_path / "checkpoints").mkdir()
    torch.save(blob, tmp_path / "checkpoints/mse.pt")
    out = ["--metrics", str(tmp_path / "sweep.json"), "--plots", str(tmp_path / "plots")]
    r = stage(
        proj,
        env,
        "sweep.py",
        "--checkpoints",
        str(tmp_path / "checkpoints"),
        "--log",
        str(tmp_path / "log.json"),
        *out,
    )
    assert r.returncode == 0, r.stderr
    assert "checkpoints/mse.pt not read: src/birdplane/train/sgd.py changed since" in r.stdout
    assert read_json(tmp_path / "log.json")["from_checkpoints"] == {}
    assert (tmp_path / "sweep.json").read_bytes() == (proj / "metrics/sweep.json").read_bytes()
    for name in ("runs.csv", "capacity.csv", "curves.csv"):
        assert (tmp_path / "plots" / name).read_bytes() == (
            proj / "plots/sweep" / name
        ).read_bytes(), name


def test_a_checkpoint_names_the_md5_of_its_training_stage_s_code_and_of_no_other_file(pipeline):
    """The code in a checkpoint's computation is what the sweep compares before reading it: every
    file there is a dependency of the training stage in dvc.yaml (an edit re-runs the stage) and no
    other file is (an edit to cli.py re-runs nothing, so it must not change the checkpoint's bytes:
    `reproduce --mode exact` compares them with dvc.lock)."""
    import yaml

    from birdplane.checkpoint import NOT_COMPUTATION

    proj, _ = pipeline
    code = torch.load(proj / "checkpoints/mse.pt", weights_only=True)["computation"]["code"]
    with open(proj / "dvc.yaml") as f:
        deps = yaml.safe_load(f)["stages"]["train"]["do"]["deps"]
    listed = [d for d in deps if d.startswith("src/birdplane/")]
    for name in code:
        path = f"src/birdplane/{name}"
        assert any(path == d or path.startswith(d.rstrip("/") + "/") for d in listed), name
    assert {"checkpoint.py", "train/sgd.py", "models.py"} <= set(code)
    train_package = proj / "src/birdplane/train"
    assert {
        f"train/{p.relative_to(train_package).as_posix()}" for p in train_package.rglob("*.py")
    } <= set(code)
    assert not {n for n in code if n.removesuffix(".py") in NOT_COMPUTATION}


def test_unknown_variant_is_an_error(pipeline):
    proj, env = pipeline
    r = stage(proj, env, "train.py", variant="huge")
    assert r.returncode == 1 and "unknown variant 'huge'" in r.stderr and "mse" in r.stderr
    before = files_under(proj / "metrics/eval")
    r = stage(proj, env, "evaluate.py", "--variants", "nll", "huge")
    assert (
        r.returncode == 1
        and "unknown variant(s) ['huge']" in r.stderr
        and "Traceback" not in r.stderr
    )
    assert files_under(proj / "metrics/eval") == before


def test_sweep_summarises_every_configuration_over_seeds(pipeline):
    import mlflow
    import pandas as pd

    proj, env = pipeline
    sweep = read_json(proj / "metrics/sweep.json")
    cfgs = sweep["configs"]
    assert list(cfgs) == [
        "w2",
        "w8",
        "deep",
        "nll_lr0.01",
        "nll_lr0.1",
        "mse_lr0.01",
        "mse_lr0.1",
        "weight_decay",
        "dropout",
        "early_stopping",
    ]
    # base_width 8 at train.lr is w8: not trained again, nor for early stopping. mse_lr0.01 is the
    # `mse` variant (3072-8-2, MSE, the same recipe and seeds, kept at epoch 2 = sweep.epochs):
    # read from its checkpoint. w8 is `small` too, read from its checkpoint; early stopping watches
    # its epochs, so those it needs to see train again: both, as patience 1 never stops at epoch 1
    # (tests/test_checkpoint.py has a base that stops early)
    assert cfgs["nll_lr0.01"]["same_as"] == "w8" and cfgs["early_stopping"]["read_from"] == "w8"
    log = read_json(proj / "logs/sweep.json")
    assert log["from_checkpoints"] == {
        "w8": "checkpoints/small.pt",
        "mse_lr0.01": "checkpoints/mse.pt",
    }
    assert log["rewatched_epochs"] == {"w8": 2}
    curves = pd.read_csv(proj / "plots/sweep/curves.csv")
    assert sorted(set(curves["config"])) == sorted(set(cfgs) - {"nll_lr0.01", "early_stopping"})
    runs = pd.read_csv(proj / "plots/sweep/runs.csv")
    assert len(runs) == len(cfgs) * TINY_SWEEP["seeds"]
    for name, c in cfgs.items():
        rows = runs[runs["config"] == name]
        assert c["val_accuracy"]["values"] == pytest.approx(rows["val_accuracy"].tolist(), abs=1e-6)
        assert c["val_accuracy"]["n"] == TINY_SWEEP["seeds"] and c["val_accuracy"]["std"] >= 0
        assert c["overfit_gap"]["mean"] == pytest.approx(
            c["train_accuracy"]["mean"] - c["val_accuracy"]["mean"]
        )
        assert c["epochs_trained"]["mean"] <= TINY_SWEEP["epochs"]
    assert cfgs["w8"]["n_parameters"] == 3072 * 8 + 8 + 8 * 2 + 2 and cfgs["deep"]["hidden"] == [
        16,
        8,
    ]
    assert cfgs["dropout"]["dropout"] == 0.5 and cfgs["early_stopping"]["patience"] == 1
    assert cfgs["weight_decay"]["n_parameters"] == cfgs["w8"]["n_parameters"]  # base_width 8
    assert sweep["small_rule"]["pick"] in ("w2", "w8", "deep")
    assert list(pd.read_csv(proj / "plots/sweep/capacity.csv")["config"]) == [
        "w2",
        "w8",
        "deep",
        "weight_decay",
        "dropout",
        "early_stopping",
    ]
    header = (proj / "plots/sweep/capacity.csv").read_text().splitlines()[0]
    assert header.startswith(
        "config,kind,n_parameters,train_accuracy_mean,train_accuracy_std,val_accuracy_mean"
    )
    shown = json.loads(dvc(proj, env, "metrics", "show", "--json", check=True).stdout)
    assert "metrics/sweep.json" in next(iter(shown.values()))["data"]
    mlflow.set_tracking_uri(f"sqlite:///{proj}/mlflow.db")
    try:
        # the latest sweep run (test_dvc_exp_run_with_set_param may have run the sweep again in its copy)
        parent = mlflow.search_runs(
            experiment_names=["birdplane"],
            output_format="list",
            order_by=["start_time DESC"],
            filter_string="tags.dvc_stage = 'sweep' and attributes.run_name = 'sweep'",
        )
        assert parent and parent[0].data.tags["small_pick"] == sweep["small_rule"]["pick"]
        nested = mlflow.search_runs(
            experiment_names=["birdplane"],
            output_format="list",
            filter_string=f"tags.mlflow.parentRunId = '{parent[0].info.run_id}'",
        )
    finally:
        mlflow.set_tracking_uri(None)
    assert sorted(r.info.run_name for r in nested) == sorted(f"sweep-{n}" for n in cfgs)
    assert all("val_accuracy_mean" in r.data.metrics for r in nested)


def test_several_seeds_give_mean_and_std(pipeline, tmp_path):
    """train.variants.<v>.seeds: every seed trains; the saved model is the first seed's, the metrics
    add mean and std, each further seed is a nested MLflow run."""
    import mlflow

    proj, env = pipeline
    p = yaml.safe_load((proj / "params.yaml").read_text())
    p["train"]["variants"]["small"]["seeds"] = 3
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(p))
    store = f"sqlite:///{tmp_path}/mlflow.db"  # a store of its own: the shared one keeps one run per variant
    out = {
        f: str(tmp_path / n)
        for f, n in (
            ("--model", "m.pt"),
            ("--metrics", "m.json"),
            ("--plot", "h.csv"),
            ("--seed-curves", "s.csv"),
            ("--checkpoint", "c.pt"),
            ("--train-log", "log.json"),
        )
    }
    r = run_stage_with(
        proj,
        {**env, "MLFLOW_TRACKING_URI": store},
        "train.py",
        "--variant",
        "small",
        "--params",
        str(tmp_path / "p.yaml"),
        *[x for kv in out.items() for x in kv],
    )
    assert r.returncode == 0, r.stderr
    m = read_json(tmp_path / "m.json")
    s = m["seeds"]
    assert (
        s["seeds"] == [0, 1, 2]
        and s["val_accuracy"]["n"] == 3
        and len(s["overfit_gap"]["values"]) == 3
    )
    assert s["val_accuracy"]["values"][0] == m["val_accuracy"]
    assert (
        m["val_accuracy"] == read_json(proj / "metrics/train/small.json")["val_accuracy"]
    )  # the pipeline's seed 0
    assert [r["seed"] for r in s["runs"]] == [0, 1, 2] and s["val_ece"]["n"] == 3
    assert read_json(tmp_path / "log.json")["side_by_side"]  # 3072-8-2: the seeds train at once
    import pandas as pd

    curves, mean = pd.read_csv(tmp_path / "s.csv"), pd.read_csv(tmp_path / "h.csv")
    assert len(curves) == 3 * TINY_TRAIN["epochs"] and sorted(set(curves["seed"])) == [0, 1, 2]
    by_epoch = curves.groupby("epoch")[["train_loss", "val_accuracy"]].mean().reset_index()
    assert mean["val_accuracy"].tolist() == pytest.approx(
        by_epoch["val_accuracy"].tolist(), abs=2e-6
    )
    assert mean["train_loss"].tolist() == pytest.approx(by_epoch["train_loss"].tolist(), abs=2e-6)
    mlflow.set_tracking_uri(store)
    try:
        parent = read_json(tmp_path / "log.json")["mlflow_run_id"]
        nested = mlflow.search_runs(
            experiment_names=["birdplane"],
            output_format="list",
            filter_string=f"tags.mlflow.parentRunId = '{parent}'",
        )
    finally:
        mlflow.set_tracking_uri(None)
    assert sorted((r.info.run_name, r.info.status) for r in nested) == [
        ("small-seed1", "FINISHED"),
        ("small-seed2", "FINISHED"),
    ]


def run_stage_with(project, env, script, *args):
    variant = args[args.index("--variant") + 1]
    return subprocess.run(
        [str(BIN / "python"), f"pipeline/{script}", *stage_args(script, variant), *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_documented_loader_runs_nothing_from_the_artifact(pipeline, tmp_path):
    """A shared tracking store is untrusted: someone may change a logged model's MLmodel to name a
    loader of their own and upload its code. birdplane.serving.load_logged_model reads only the
    model file (torch.load with weights_only), so their code never runs."""
    import mlflow
    from urllib.parse import urlparse
    from urllib.request import url2pathname

    from birdplane.serving import load_logged_model

    proj, _ = pipeline
    mlflow.set_tracking_uri(f"sqlite:///{proj}/mlflow.db")
    try:
        md5 = hashlib.md5(
            (proj / "models/nll.pt").read_bytes()
        ).hexdigest()  # the run of this model file
        run = mlflow.search_runs(
            experiment_names=["birdplane"],
            output_format="list",
            filter_string=f"tags.`birdplane.model_md5` = '{md5}'",
        )[0]
        info = mlflow.search_logged_models(
            filter_string=f"source_run_id = '{run.info.run_id}'",
            experiment_ids=[run.info.experiment_id],
            output_format="list",
        )[0]
        store = Path(url2pathname(urlparse(info.artifact_location).path))
        mlmodel = store / "MLmodel"
        original = mlmodel.read_text()
        marker = tmp_path / "ran"
        (store / "code").mkdir()
        (store / "code" / "evil_loader.py").write_text(
            f"open({str(marker)!r}, 'w').close()\ndef _load_pyfunc(path):\n    raise SystemExit('evil')\n"
        )
        mlmodel.write_text(
            original.replace(
                "loader_module: birdplane.serving", "loader_module: evil_loader"
            ).replace("code: null", "code: code")
        )
        try:
            # the threat is real: MLflow's generic loader imports what the artifact names
            with pytest.raises(SystemExit, match="evil"):
                mlflow.pyfunc.load_model(f"models:/{info.model_id}")
            assert marker.exists()
            marker.unlink()
            model = load_logged_model(f"models:/{info.model_id}")
        finally:
            mlmodel.write_text(original)
            shutil.rmtree(store / "code")
    finally:
        mlflow.set_tracking_uri(None)
    assert not marker.exists()
    tracked, _ = load_model(proj / "models/nll.pt")
    x = torch.zeros(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), tracked(x))


def test_a_student_lands_on_the_runs(pipeline, mlflow_server):
    """Every stage that logs to MLflow ends by printing its experiment's runs table; the experiment
    is tagged as model training; and that address, opened in a real browser on a real MLflow
    server, shows the variants' runs (not MLflow 3's empty GenAI overview)."""
    proj, env = pipeline
    exp = _rest(mlflow_server, "experiments/get-by-name?experiment_name=birdplane")["experiment"]
    tags = {t["key"]: t["value"] for t in exp.get("tags", [])}
    assert tags.get("mlflow.experimentKind") == "custom_model_development"
    r = stage(proj, env, "evaluate.py")
    assert r.returncode == 0, r.stderr
    address = f"http://127.0.0.1:5000/#/experiments/{exp['experiment_id']}/runs"
    assert (
        f"[evaluate] MLflow runs: {address} (after `mlflow ui --backend-store-uri sqlite:///"
        in r.stdout
    )
    with headless_chromium() as page:
        page.goto(address.replace("http://127.0.0.1:5000", mlflow_server), wait_until="load")
        for name in VARIANTS:  # each variant's run by its name, in the runs table
            page.get_by_text(name, exact=True).first.wait_for(timeout=60_000)


def test_the_runs_address_of_a_server_has_no_credentials(monkeypatch):
    from birdplane import tracking

    address = tracking.runs_address("7", "https://alice:s3cret@mlflow.example:8443/?token=x")
    assert address == "https://***@mlflow.example:8443/?***/#/experiments/7/runs"
