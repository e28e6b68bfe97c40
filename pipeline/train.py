"""Stage `train@<variant>`: train one variant of `train.variants` and record its per-epoch history.

Reads params `seed`, `train.device`, `train.engine`, `train.train_metrics`, `train.epochs`,
`train.batch_size`, `train.lr`, `train.seeds`, `train.variants.<variant>`, `mlflow.experiment`.
With several seeds (train.seeds or the variant's seeds), every seed trains its own model; the
first seed's model is the variant's model (saved, evaluated, shift-tested), and the metrics add
the mean and spread over all seeds.
"""
import contextlib
import time

from birdplane.cli import parse_variant_args, run_stage, variant_parser


def main() -> None:
    # --model and --train-log (timing, MLflow run id, provenance) are this stage's outputs
    args = parse_variant_args(variant_parser(__doc__, {"metrics": "metrics/train/{variant}.json",
                                                        "plot": "plots/train/{variant}.csv"}))
    v = args.variant

    from birdplane.config import load_params
    params = load_params(args.params)
    recipe = params.train.recipe(v)

    from birdplane import tracking
    tracking.setup(params.mlflow.experiment)  # a store that is down ends the stage now, not after training

    import pandas as pd

    from birdplane.train import engine, provenance
    from birdplane.data import load_dataset, split_tensors
    from birdplane.inference import loss_and_accuracy
    from birdplane.io import outputs, read_json
    from birdplane.losses import LOSSES
    from birdplane.models import ModelConfig, build_model, describe, head_for, n_parameters, save_model
    from birdplane.summary import spread

    t_start = time.perf_counter()
    device = engine.resolve_device(params.train.device)
    stats = read_json(args.stats)
    train, val, classes = load_dataset(args.data)
    (train_x, train_y), (val_x, val_y) = (split_tensors(s, stats, device) for s in (train, val))

    cfg = ModelConfig(hidden=recipe.hidden, n_classes=len(classes), activation=recipe.activation,
                      head=head_for(recipe.loss), arch=recipe.arch, channels=recipe.channels,
                      dropout=recipe.dropout)
    reg = engine.Regularization(weight_decay=recipe.weight_decay, patience=recipe.patience,
                                augment_shift=recipe.augment_shift)
    seeds = [params.seed + i for i in range(recipe.seeds)]
    loss_fn = LOSSES[recipe.loss].mean

    stage = f"train@{v}"
    tags = {"variant": v, "dvc_stage": stage, "git_commit": tracking.git_commit(),
            "data_md5": stats.get("source", {}).get("md5"), "model": describe(cfg)}
    with tracking.variant_run(params.mlflow.experiment, v, stage=stage, tags=tags) as run:
        import mlflow

        def train_seed(seed: int) -> tuple:
            """One model of the recipe with this seed: (model, history, final metrics)."""
            engine.seed_everything(seed)
            model = build_model(cfg).to(device)
            mlflow.log_params({**recipe.model_dump(exclude={"name"}), "seed": seed,
                               "classes": ",".join(classes), "device": str(device), "engine": params.train.engine,
                               "n_parameters": n_parameters(model), "n_train": len(train_y), "n_val": len(val_y)})

            def on_epoch(s: engine.EpochStats) -> None:
                mlflow.log_metrics({k: val for k, val in s.to_dict().items() if k != "epoch"}, step=s.epoch)
                print(f"[{v} seed {seed}] epoch {s.epoch:3d}/{recipe.epochs}  train loss {s.train_loss:.4f} "
                      f"acc {s.train_accuracy:.4f}  val loss {s.val_loss:.4f} acc {s.val_accuracy:.4f}  "
                      f"({s.seconds:.2f} s)", flush=True)

            history = engine.train(model, recipe.loss, train_x, train_y, val_x, val_y, epochs=recipe.epochs,
                                   batch_size=recipe.batch_size, lr=recipe.lr, seed=seed, name=v,
                                   fused=params.train.engine == "fused", train_metrics=params.train.train_metrics,
                                   regularization=reg, on_epoch=on_epoch)
            # the final model (the best epoch's with early stopping) on all images, as evaluate sees it
            train_loss, train_acc = loss_and_accuracy(model, loss_fn, train_x, train_y)
            val_loss, val_acc = loss_and_accuracy(model, loss_fn, val_x, val_y)
            best = max(history, key=lambda s: (s.val_accuracy, -s.epoch))
            final = {"train_accuracy": train_acc, "val_accuracy": val_acc, "train_loss": train_loss,
                     "val_loss": val_loss, "overfit_gap": train_acc - val_acc,
                     "best_val_accuracy": best.val_accuracy, "best_epoch": best.epoch,
                     "epochs_trained": len(history)}
            return model, history, final

        runs = []  # per seed: model, history, final metrics
        t_train = time.perf_counter()
        for seed in seeds:
            if seed == seeds[0]:  # the first seed logs into the variant's run, the others into nested runs
                runs.append(train_seed(seed))
                continue
            with tracking.nested_run(f"{v}-seed{seed}", stage=stage, tags={**tags, "seed": seed}):
                runs.append(train_seed(seed))
                mlflow.log_metrics({f"final_{k}": float(x) for k, x in runs[-1][2].items()})
        train_seconds = time.perf_counter() - t_train

        model, history, first = runs[0]
        metrics = {
            **first, "epochs": recipe.epochs,
            # early stopping: the model is the best epoch's, training ended at epochs_trained
            "early_stopping": recipe.patience is not None,
            "n_parameters": n_parameters(model), "model": describe(cfg), "recipe": recipe.model_dump(),
        }
        if len(seeds) > 1:
            metrics["seeds"] = {"seeds": seeds, **{k: spread([r[2][k] for r in runs]) for k in (
                "train_accuracy", "val_accuracy", "overfit_gap", "best_val_accuracy", "best_epoch")}}
        frame = pd.DataFrame([{k: val for k, val in s.to_dict().items() if k != "seconds"} for s in history])
        log = {
            "variant": v, "mlflow_run_id": run.info.run_id, "mlflow_experiment": params.mlflow.experiment,
            "train_seconds": train_seconds,
            "seconds_per_epoch": train_seconds / sum(len(r[1]) for r in runs),
            "stage_seconds": None, "model_log_seconds": None, "finished": provenance.now(),
            "git_commit": tags["git_commit"], "versions": provenance.versions(),
            "machine": provenance.machine(str(device)),
        }
        with outputs() as out:
            out.write_with(args.model, lambda p: save_model(p, model, cfg))
            out.write_json(args.metrics, metrics)
            out.write_with(args.plot,
                           lambda p: frame.to_csv(p, index=False, float_format="%.6f"))
            # two images: the signature then shows a batch dimension
            log["model_log_seconds"] = tracking.log_torch_model(model, cfg, val_x[:2].reshape(2, 3, 32, 32))
            mlflow.log_metrics({"train_seconds": train_seconds,
                                **{f"final_{k}": float(x) for k, x in first.items()}})
            log["stage_seconds"] = time.perf_counter() - t_start
            out.write_json(args.train_log, log)
    print(f"[{v}] {describe(cfg)}: train acc {first['train_accuracy']:.4f}, val acc {first['val_accuracy']:.4f} "
          f"after {len(history)} epochs ({len(seeds)} seed(s)) in {train_seconds:.1f} s")


if __name__ == "__main__":
    run_stage("train", main)
