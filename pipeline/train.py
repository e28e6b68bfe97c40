"""Stage `train@<variant>`: train one variant of `train.variants` and record its per-epoch history.

Reads params `seed`, `train.device`, `train.engine`, `train.train_metrics`, `train.epochs`, `train.batch_size`, `train.lr`,
`train.variants.<variant>`, `mlflow.experiment`.
"""
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

    import pandas as pd

    from birdplane import engine, provenance, tracking
    from birdplane.data import load_dataset
    from birdplane.io import outputs, read_json
    from birdplane.losses import LOSSES
    from birdplane.models import HEAD_FOR_LOSS, ModelConfig, build_model, describe, n_parameters, save_model

    t_start = time.perf_counter()
    device = engine.resolve_device(params.train.device)
    stats = read_json(args.stats)
    train, val, classes = load_dataset(args.data)
    train_x = engine.to_features(train.images, stats["mean"], stats["std"], device)
    val_x = engine.to_features(val.images, stats["mean"], stats["std"], device)
    train_y, val_y = (torch_labels(s.labels, device) for s in (train, val))

    engine.seed_everything(params.seed)
    cfg = ModelConfig(hidden=recipe.hidden, n_classes=len(classes), activation=recipe.activation,
                      head=HEAD_FOR_LOSS[recipe.loss])
    model = build_model(cfg).to(device)

    tags = {"variant": v, "dvc_stage": f"train@{v}", "git_commit": tracking.git_commit(),
            "data_md5": stats.get("source", {}).get("md5"), "model": describe(cfg)}
    with tracking.variant_run(params.mlflow.experiment, v, tags=tags) as run:
        import mlflow

        mlflow.log_params({**recipe.model_dump(exclude={"name"}), "seed": params.seed,
                           "classes": ",".join(classes), "device": str(device), "engine": params.train.engine,
                           "n_parameters": n_parameters(model), "n_train": len(train_y), "n_val": len(val_y)})

        def on_epoch(s: engine.EpochStats) -> None:
            mlflow.log_metrics({k: val for k, val in s.to_dict().items() if k != "epoch"}, step=s.epoch)
            print(f"[{v}] epoch {s.epoch:3d}/{recipe.epochs}  train loss {s.train_loss:.4f} acc {s.train_accuracy:.4f}"
                  f"  val loss {s.val_loss:.4f} acc {s.val_accuracy:.4f}  ({s.seconds:.2f} s)", flush=True)

        t_train = time.perf_counter()
        history = engine.train(model, recipe.loss, train_x, train_y, val_x, val_y, epochs=recipe.epochs,
                               batch_size=recipe.batch_size, lr=recipe.lr, seed=params.seed, name=v,
                               fused=params.train.engine == "fused", train_metrics=params.train.train_metrics,
                               on_epoch=on_epoch)
        train_seconds = time.perf_counter() - t_train

        last = history[-1]
        best = max(history, key=lambda s: (s.val_accuracy, -s.epoch))
        # the final model on all training images (the per-epoch train figures may be running means)
        train_loss, train_acc = engine.loss_and_accuracy(model, LOSSES[recipe.loss], train_x, train_y)
        metrics = {
            "train_accuracy": train_acc, "val_accuracy": last.val_accuracy,
            "train_loss": train_loss, "val_loss": last.val_loss,
            "overfit_gap": train_acc - last.val_accuracy,
            "best_val_accuracy": best.val_accuracy, "best_epoch": best.epoch,
            "epochs": recipe.epochs, "n_parameters": n_parameters(model),
            "model": describe(cfg), "recipe": recipe.model_dump(),
        }
        frame = pd.DataFrame([{k: val for k, val in s.to_dict().items() if k != "seconds"} for s in history])
        log = {
            "variant": v, "mlflow_run_id": run.info.run_id, "mlflow_experiment": params.mlflow.experiment,
            "train_seconds": train_seconds, "seconds_per_epoch": train_seconds / recipe.epochs,
            "stage_seconds": None, "finished": provenance.now(), "git_commit": tags["git_commit"],
            "versions": provenance.versions(), "machine": provenance.machine(str(device)),
        }
        with outputs() as out:
            out.write_with(args.model, lambda p: save_model(p, model, cfg))
            out.write_json(args.metrics, metrics)
            out.write_with(args.plot,
                           lambda p: frame.to_csv(p, index=False, float_format="%.6f"))
            # two images: the signature then shows a batch dimension
            tracking.log_torch_model(model, val_x[:2].reshape(2, 3, 32, 32))
            mlflow.log_metrics({"train_seconds": train_seconds})
            log["stage_seconds"] = time.perf_counter() - t_start
            out.write_json(args.train_log, log)
    print(f"[{v}] {describe(cfg)}: train acc {train_acc:.4f}, val acc {last.val_accuracy:.4f} "
          f"after {recipe.epochs} epochs in {train_seconds:.1f} s")


def torch_labels(labels, device):
    import torch
    return torch.from_numpy(labels).to(device)


if __name__ == "__main__":
    run_stage("train", main)
