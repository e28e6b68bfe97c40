"""Stage `train@<variant>`: train one variant of `train.variants` and record its per-epoch history.

Reads params `seed`, `train.device`, `train.engine`, `train.train_metrics`, `train.epochs`,
`train.batch_size`, `train.lr`, `train.seeds`, `train.checkpoint_epoch`, `train.variants.<variant>`,
`evaluate.calibration_bins`, `mlflow.experiment`. With several seeds every seed trains its own
model; the first seed's model is the variant's model (saved, evaluated, shift-tested), the metrics
add mean and std over all seeds and each seed's figures, the plot is the mean curve and the seed
curves are each seed's; the checkpoint holds every seed's weights at `train.checkpoint_epoch`
(birdplane.checkpoint), for the sweep.
"""

import time

from birdplane.cli import parser
from birdplane.process import run_stage


def arguments():
    """The stage's command line: the params file, its inputs and outputs, the variant."""
    ap = parser(
        __doc__,
        {
            "data": "the prepared images (.npz)",
            "stats": "metrics/stats.json (mean, std)",
            "model": "the model file",
            "metrics": "final metrics (.json)",
            "plot": "per-epoch history, the mean over the seeds (.csv)",
            "seed-curves": "per-epoch history of every seed (.csv)",
            "checkpoint": "every seed's weights at train.checkpoint_epoch, for the sweep (.pt)",
            "train-log": "timings, run id, provenance (.json)",
        },
    )
    ap.add_argument("--variant", required=True, help="a key of train.variants")
    return ap.parse_args()


def main() -> None:
    args = arguments()
    t_start = time.perf_counter()

    from birdplane import provenance, tracking
    from birdplane.config import load_params

    params = load_params(args.params)
    recipe = params.train.recipe(args.variant)
    # a store that is down ends the stage now, not after training
    experiment_id = tracking.setup(params.mlflow.experiment)

    from birdplane.inputs import load_tensors
    from birdplane.train import engine
    from birdplane.train.variant import Options, model_config, side_by_side, train_variant

    device = engine.resolve_device(params.train.device)
    train, val, classes, stats = load_tensors(args.data, args.stats, device)
    cfg = model_config(recipe, len(classes))
    seeds = [params.seed + i for i in range(recipe.seeds)]
    stage, v = f"train@{args.variant}", args.variant
    tags = run_tags(v, stage, stats, cfg)
    run_params = mlflow_params(recipe, classes, device, params.train.engine, (train, val))
    echo = progress(v, recipe.epochs)
    with tracking.variant_run(params.mlflow.experiment, v, stage=stage, tags=tags) as run:
        t_train = time.perf_counter()
        runs = train_variant(
            recipe,
            cfg,
            train,
            val,
            seeds=seeds,
            options=Options(
                params.train.engine, params.train.train_metrics, params.train.checkpoint_epoch
            ),
            hooks=tracking.SeedLogger(v, stage, seeds, run_params, tags, echo),
        )
        train_seconds = time.perf_counter() - t_train
        log = {
            "variant": v,
            "mlflow_run_id": run.info.run_id,
            "mlflow_experiment": params.mlflow.experiment,
            "train_seconds": train_seconds,
            "seconds_per_epoch": train_seconds / sum(len(r.history) for r in runs),
            "side_by_side": side_by_side(recipe, cfg, params.train.engine, len(seeds), device.type),
            **provenance.record(str(device), tags["git_commit"]),
        }
        write_outputs(args, params, recipe, cfg, runs, (train, val), log, t_start)
    print_result(v, cfg, runs, len(seeds), train_seconds)
    print(f"[{v}] MLflow runs: {tracking.runs_address(experiment_id)}")


def run_tags(variant: str, stage: str, stats: dict, cfg) -> dict:
    """The MLflow tags of the variant's run: variant, stage, commit, the data's md5, the model."""
    from birdplane import provenance
    from birdplane.models import describe

    return {
        "variant": variant,
        "dvc_stage": stage,
        "git_commit": provenance.git_commit(),
        "data_md5": stats.get("source", {}).get("md5"),
        "model": describe(cfg),
    }


def mlflow_params(recipe, classes: list[str], device, engine: str, data) -> dict:
    """The MLflow params of each seed's run: the recipe, the classes, device, engine, set sizes."""
    train, val = data
    return {
        **recipe.model_dump(exclude={"name"}),
        "classes": ",".join(classes),
        "device": str(device),
        "engine": engine,
        "n_train": len(train[1]),
        "n_val": len(val[1]),
    }


def print_result(variant: str, cfg, runs, n_seeds: int, train_seconds: float) -> None:
    """The first seed's final accuracies, on one line."""
    from birdplane.models import describe

    first = runs[0]
    print(
        f"[{variant}] {describe(cfg)}: train acc {first.final['train_accuracy']:.4f}, val acc "
        f"{first.final['val_accuracy']:.4f} after {len(first.history)} epochs ({n_seeds} seed(s)) "
        f"in {train_seconds:.1f} s"
    )


def progress(variant: str, epochs: int):
    """echo(seed, stats): one line per seed and epoch on the terminal."""

    def echo(seed, s):
        print(
            f"[{variant} seed {seed}] epoch {s.epoch:3d}/{epochs}  train loss {s.train_loss:.4f} "
            f"acc {s.train_accuracy:.4f}  val loss {s.val_loss:.4f} acc {s.val_accuracy:.4f}  ({s.seconds:.2f} s)",
            flush=True,
        )

    return echo


def write_outputs(args, params, recipe, cfg, runs, data, log: dict, t_start: float) -> None:
    """The stage's files, all or nothing, with the first seed's model and final figures in the
    variant's MLflow run; the train log (`log` and the timings) last."""
    from birdplane import tracking
    from birdplane.io import outputs
    from birdplane.models import model_bytes
    from birdplane.train.variant import mean_rows, seed_rows, variant_metrics

    (train, val), first = data, runs[0]
    blob = model_bytes(first.model, cfg)
    with outputs() as out:
        out.write_bytes(args.model, blob)
        tracking.tag_model(blob)  # evaluate and shift-test find this run by the model file's md5
        inputs = (args.data, args.stats)
        kept = checkpoint_bytes(params, recipe, cfg, runs, inputs, train[0].device.type)
        out.write_bytes(args.checkpoint, kept)
        out.write_json(
            args.metrics,
            variant_metrics(recipe, cfg, runs, train, val, params.evaluate.calibration_bins),
        )
        out.write_csv(args.plot, mean_rows(runs), float_format="%.6f")
        out.write_csv(args.seed_curves, seed_rows(runs), float_format="%.6f")
        # two images: the signature then shows a batch dimension
        log["model_log_seconds"] = tracking.log_torch_model(
            first.model, cfg, val[0][:2].reshape(2, 3, 32, 32)
        )
        tracking.log_final(log["train_seconds"], first.final)
        out.write_json(args.train_log, {**log, "stage_seconds": time.perf_counter() - t_start})


def checkpoint_bytes(params, recipe, cfg, runs, inputs, device: str) -> bytes:
    """checkpoints/<variant>.pt: the seeds' weights at train.checkpoint_epoch and what decides
    their bits (none kept without it, or where training ended before it); `inputs`: the data and
    stats files it trained on."""
    from dataclasses import replace

    from birdplane import checkpoint
    from birdplane.train.variant import sgd_recipe

    epoch = params.train.checkpoint_epoch
    sgd = replace(sgd_recipe(recipe, params.train.train_metrics), epochs=epoch or recipe.epochs)
    computation = checkpoint.here(
        params.train.engine, device, checkpoint.inputs_md5(*inputs), checkpoint.computation_files()
    )
    ck = checkpoint.of_runs(recipe.name, cfg, sgd, computation, runs)
    return checkpoint.checkpoint_bytes(ck)


if __name__ == "__main__":
    run_stage("train", main)
