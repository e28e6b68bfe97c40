"""Stage `sweep`: the capacity sweep behind homework task 2 and the learning-rate study behind
task 1 (birdplane.sweep): the book's recipe on every width of `sweep.widths`, the deep net and the
book net with each regularizer, and the book net with each loss at each learning rate; several seeds
each, trained K at a time, no recipe twice.

Reads params `seed`, `train.device`, `train.batch_size`, `train.lr`, `train.train_metrics`,
`sweep.*`, `mlflow.experiment`, and the training stages' checkpoints: a configuration a variant
already trained (`mse_lr0.01` is `mse`'s first 30 epochs, `w512` `nll`'s) is read from there, not
trained again, with the same results (birdplane.checkpoint). Writes mean and std over seeds per configuration
(metrics/sweep.json, plots/sweep/capacity.csv), every seed's result (plots/sweep/runs.csv), every
epoch of every trained seed (plots/sweep/curves.csv) and the rule's pick for the `small` variant;
one MLflow run `sweep` with a nested run per configuration.
"""

import time

from birdplane.cli import parser
from birdplane.process import run_stage


def main() -> None:
    args = parser(
        __doc__,
        {
            "data": "the prepared images (.npz)",
            "stats": "metrics/stats.json (mean, std)",
            "metrics": "metrics/sweep.json",
            "plots": "folder for the sweep's CSV files",
            "checkpoints": "the training stages' checkpoints (<variant>.pt)",
            "log": "timings, run id, provenance (.json)",
        },
    ).parse_args()
    t_start = time.perf_counter()

    from birdplane import provenance, tracking
    from birdplane.config import load_params

    params = load_params(args.params)
    # a store that is down ends the stage before any work
    experiment_id = tracking.setup(params.mlflow.experiment)

    from birdplane.inputs import load_tensors
    from birdplane.io import outputs
    from birdplane.train import engine
    from birdplane.sweep import run_sweep, sweep_metrics

    device = engine.resolve_device(params.train.device)
    train, val, classes, stats = load_tensors(args.data, args.stats, device)
    sw, seeds = params.sweep, [params.seed + i for i in range(params.sweep.seeds)]
    tags = run_tags(stats)
    held = checkpoints(args, params.train.variants, len(classes), device.type)
    with tracking.variant_run(params.mlflow.experiment, "sweep", stage="sweep", tags=tags) as run:
        log_sweep_params(params)
        book = book_recipe(params)
        hooks = tracking.SweepLogger(tags, echo)
        done = run_sweep(
            sw, train, val, book, seeds=seeds, n_classes=len(classes), hooks=hooks, checkpoints=held
        )
        metrics = sweep_metrics(sw, seeds, done.results)
        with outputs() as out:
            write_outputs(out, args.metrics, args.plots, done, metrics)
            out.write_json(
                args.log,
                {
                    "mlflow_run_id": run.info.run_id,
                    "seconds": done.seconds,
                    "from_checkpoints": {
                        c: (args.checkpoints / f"{v}.pt").as_posix()
                        for c, v in done.checkpointed.items()
                    },
                    # of those, the epochs trained again for early stopping to watch
                    "rewatched_epochs": done.rewatched,
                    "stage_seconds": time.perf_counter() - t_start,
                    **provenance.record(str(device), tags["git_commit"]),
                },
            )
    print_checkpointed(done, args.checkpoints)
    print_pick(metrics["small_rule"], done.results)
    print(f"[sweep] MLflow runs: {tracking.runs_address(experiment_id)}")


def print_checkpointed(done, folder) -> None:
    """One line per configuration read from a checkpoint."""
    for c, v in done.checkpointed.items():
        how = (
            f"epochs 1-{done.rewatched[c]} trained again for early stopping"
            if c in done.rewatched
            else "not trained"
        )
        print(f"[sweep] {c}: read from {(folder / f'{v}.pt').as_posix()}, {how}")


def checkpoints(args, variants, n_classes: int, device: str) -> list:
    """The checkpoints of the variants in params.yaml (a file left by a removed variant is not
    read), each checked, that hold the bits this sweep computes (birdplane.checkpoint); one line
    for each left out and why."""
    from birdplane import checkpoint, checkpointfile

    why = checkpoint.cannot_read(device)
    if why:
        print(f"[sweep] every configuration trains: {why} (docs/pipeline.md)")
        return []
    inputs, held = checkpoint.inputs_md5(args.data, args.stats), []
    for path in (args.checkpoints / f"{v}.pt" for v in variants):
        if path.is_file():
            ck = checkpointfile.read_checkpoint(path, n_classes)
            now = checkpoint.here("fused", device, inputs, ck.computation.code)
            differ = checkpoint.differences(ck.computation, now)
            if differ:
                print(f"[sweep] {path.as_posix()} not read: {'; '.join(differ)}")
            else:
                held.append(ck)
    return held


def run_tags(stats: dict) -> dict:
    """The MLflow tags of the sweep's run: stage, commit, the data's md5."""
    from birdplane import provenance

    return {
        "dvc_stage": "sweep",
        "git_commit": provenance.git_commit(),
        "data_md5": stats.get("source", {}).get("md5"),
        "variant": "sweep",
    }


def echo(c, r, seconds):
    """One line per trained configuration on the terminal."""
    if "diverged" in r:
        what = f"diverged at epoch {r['diverged']['epoch']}"
    else:
        v, gap = r["val_accuracy"], r["overfit_gap"]
        what = (
            f"train {r['train_accuracy']['mean']:.4f}  val {v['mean']:.4f} ± {v['std']:.4f}  "
            f"gap {gap['mean']:.4f} ± {gap['std']:.4f}"
        )
    origin = "".join(
        f"  {words} {r[key]}"
        for key, words in (("same_as", "same as"), ("read_from", "read from"))
        if key in r
    )
    print(
        f"[sweep] {c.name:16s} {r['n_parameters']:>9,d} params  {what}  ({seconds:.1f} s){origin}",
        flush=True,
    )


def log_sweep_params(params) -> None:
    """The sweep's settings as the MLflow params of its run."""
    import mlflow

    sw = params.sweep
    mlflow.log_params(
        {
            "seeds": sw.seeds,
            "epochs": sw.epochs,
            "widths": sw.widths,
            "deep": sw.deep,
            "base_width": sw.base_width,
            "lr": params.train.lr,
            "batch_size": params.train.batch_size,
            "losses": sw.losses,
            "learning_rates": sw.learning_rates,
        }
    )


def book_recipe(params):
    """The book's SGD recipe: its loss, with sweep.epochs, train.batch_size, train.lr."""
    from birdplane.sweep import LOSS
    from birdplane.train.sgd import SGD

    return SGD(
        loss=LOSS,
        epochs=params.sweep.epochs,
        batch_size=params.train.batch_size,
        lr=params.train.lr,
        train_metrics=params.train.train_metrics,
    )


def write_outputs(out, metrics_file, plots, done, metrics: dict) -> None:
    """The sweep's metrics and CSV files, and its metrics and pick in its MLflow run."""
    import mlflow

    from birdplane.sweep import capacity_rows

    out.write_json(metrics_file, metrics)
    out.write_csv(plots / "capacity.csv", capacity_rows(done.results), float_format="%.6f")
    out.write_csv(plots / "runs.csv", done.rows, float_format="%.6f")
    out.write_csv(plots / "curves.csv", done.curves, float_format="%.6f")
    mlflow.log_dict(metrics, "sweep.json")
    mlflow.set_tags({"small_pick": metrics["small_rule"]["pick"]})


def print_pick(pick: dict, results: dict) -> None:
    """What the rule picks for the `small` variant, and why."""
    print(
        f"[sweep] the rule picks {pick['pick']} ({results[pick['pick']]['model']}): mean validation accuracy "
        f"within one std of the best ({pick['best']}, {pick['best_val_mean']:.4f} ± {pick['best_val_std']:.4f})"
    )


if __name__ == "__main__":
    run_stage("sweep", main)
