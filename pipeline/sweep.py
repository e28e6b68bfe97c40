"""Stage `sweep`: the capacity sweep behind homework task 2. The book's recipe (tanh MLP, NLLLoss,
SGD on minibatches) on every hidden width of `sweep.widths`, the book's deep net (`sweep.deep`) and
the book net (`sweep.base_width`) with each of `sweep.regularizers`, `sweep.seeds` seeds each; the
seeds of one configuration train at once with birdplane.train.batched.

Reads params `seed`, `train.device`, `train.batch_size`, `train.lr`, `train.train_metrics`,
`sweep.*`, `mlflow.experiment`. Writes per configuration the mean and std over seeds of train and
validation accuracy and their gap, against the parameter count (metrics/sweep.json,
plots/sweep/capacity.csv), every seed's result (plots/sweep/runs.csv), and the rule's pick for the
`small` variant; one MLflow parent run `sweep` with a nested run per configuration.
"""
import time
from pathlib import Path

from birdplane.cli import parser, run_stage


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--data", type=Path, default=Path("data/prepared/dataset.npz"))
    ap.add_argument("--stats", type=Path, default=Path("metrics/stats.json"))
    ap.add_argument("--metrics", type=Path, default=Path("metrics/sweep.json"))
    ap.add_argument("--plots", type=Path, default=Path("plots/sweep"), help="capacity.csv, runs.csv")
    ap.add_argument("--log", type=Path, default=Path("logs/sweep.json"), help="timings, MLflow run id, provenance")
    args = ap.parse_args()

    from birdplane.config import load_params
    params = load_params(args.params)
    sw = params.sweep

    from birdplane import tracking
    tracking.setup(params.mlflow.experiment)  # a store that is down ends the stage before any work

    import pandas as pd

    from birdplane.train import engine, provenance
    from birdplane.train.batched import train_many
    from birdplane.data import load_dataset, split_tensors
    from birdplane.inference import loss_and_accuracy
    from birdplane.io import outputs, read_json
    from birdplane.losses import LOSSES
    from birdplane.models import ModelConfig, build_model, describe, n_parameters
    from birdplane.summary import smallest_within_one_std, spread

    t_start = time.perf_counter()
    device = engine.resolve_device(params.train.device)
    stats = read_json(args.stats)
    train, val, classes = load_dataset(args.data)
    (train_x, train_y), (val_x, val_y) = (split_tensors(s, stats, device) for s in (train, val))
    seeds = [params.seed + i for i in range(sw.seeds)]

    # (name, kind, hidden layers, regularizers)
    configs = [(f"w{w}", "width", (w,), engine.Regularization(), 0.0) for w in sw.widths]
    if sw.deep:
        configs.append(("deep", "deep", tuple(sw.deep), engine.Regularization(), 0.0))
    for name, r in sw.regularizers.items():
        configs.append((name, "regularizer", (sw.base_width,),
                        engine.Regularization(weight_decay=r.weight_decay, patience=r.patience), r.dropout))

    results, rows, timings = {}, [], {}
    tags = {"dvc_stage": "sweep", "git_commit": tracking.git_commit(), "data_md5": stats.get("source", {}).get("md5")}
    with tracking.variant_run(params.mlflow.experiment, "sweep", stage="sweep", tags={**tags, "variant": "sweep"}) as parent:
        import mlflow

        mlflow.log_params({"seeds": sw.seeds, "epochs": sw.epochs, "widths": sw.widths, "deep": sw.deep,
                           "base_width": sw.base_width, "lr": params.train.lr, "batch_size": params.train.batch_size})
        for name, kind, hidden, reg, dropout in configs:
            cfg = ModelConfig(hidden=hidden, n_classes=len(classes), dropout=dropout)
            models = []
            for seed in seeds:  # each model initialised as engine.train's caller would: its own seed
                engine.seed_everything(seed)
                models.append(build_model(cfg).to(device))
            t0 = time.perf_counter()
            with tracking.nested_run(f"sweep-{name}", stage="sweep",
                                     tags={**tags, "variant": "sweep", "sweep_config": name}):
                mlflow.log_params({"config": name, "kind": kind, "model": describe(cfg), "hidden": list(hidden),
                                   "dropout": dropout, "weight_decay": reg.weight_decay, "patience": reg.patience,
                                   "seeds": seeds, "epochs": sw.epochs, "n_parameters": n_parameters(models[0])})

                def on_epoch(stats: list[engine.EpochStats]) -> None:
                    mlflow.log_metrics({"val_accuracy_mean": sum(s.val_accuracy for s in stats) / len(stats),
                                        "train_accuracy_mean": sum(s.train_accuracy for s in stats) / len(stats)},
                                       step=stats[0].epoch)

                histories = train_many(models, "nll", train_x, train_y, val_x, val_y, epochs=sw.epochs,
                                       batch_size=params.train.batch_size, lr=params.train.lr, seeds=seeds,
                                       names=[f"sweep {name} seed {s}" for s in seeds],
                                       train_metrics=params.train.train_metrics, regularization=reg,
                                       on_epoch=on_epoch)
                per_seed = []
                for seed, model, history in zip(seeds, models, histories):
                    tr_loss, tr_acc = loss_and_accuracy(model, LOSSES["nll"].mean, train_x, train_y)
                    va_loss, va_acc = loss_and_accuracy(model, LOSSES["nll"].mean, val_x, val_y)
                    best = max(history, key=lambda s: (s.val_accuracy, -s.epoch))
                    per_seed.append({"config": name, "seed": seed, "train_accuracy": tr_acc, "val_accuracy": va_acc,
                                     "overfit_gap": tr_acc - va_acc, "best_epoch": best.epoch,
                                     "epochs_trained": len(history)})
                summary = {k: spread([r[k] for r in per_seed]) for k in
                           ("train_accuracy", "val_accuracy", "overfit_gap", "best_epoch", "epochs_trained")}
                results[name] = {"kind": kind, "model": describe(cfg), "hidden": list(hidden),
                                 "n_parameters": n_parameters(models[0]), "dropout": dropout,
                                 "weight_decay": reg.weight_decay, "patience": reg.patience, **summary}
                mlflow.log_metrics({f"{k}_{stat}": float(summary[k][stat]) for k in summary for stat in ("mean", "std")})
            timings[name] = time.perf_counter() - t0
            rows += per_seed
            s = results[name]
            print(f"[sweep] {name:16s} {s['n_parameters']:>9,d} params  train {s['train_accuracy']['mean']:.4f}"
                  f"  val {s['val_accuracy']['mean']:.4f} ± {s['val_accuracy']['std']:.4f}"
                  f"  gap {s['overfit_gap']['mean']:.4f} ± {s['overfit_gap']['std']:.4f}  ({timings[name]:.1f} s)",
                  flush=True)

        capacity = {n: r for n, r in results.items() if r["kind"] in ("width", "deep")}
        pick = smallest_within_one_std(capacity)
        pick["hidden"] = results[pick["pick"]]["hidden"]
        metrics = {"seeds": seeds, "epochs": sw.epochs, "configs": results, "small_rule": pick}
        table = pd.DataFrame([{"config": n, "kind": r["kind"], "n_parameters": r["n_parameters"],
                               **{f"{k}_{stat}": r[k][stat] for k in ("train_accuracy", "val_accuracy", "overfit_gap")
                                  for stat in ("mean", "std")}} for n, r in results.items()])
        log = {"mlflow_run_id": parent.info.run_id, "seconds": timings, "stage_seconds": None,
               "finished": provenance.now(), "git_commit": tags["git_commit"], "versions": provenance.versions(),
               "machine": provenance.machine(str(device))}
        with outputs() as out:
            out.write_json(args.metrics, metrics)
            out.write_with(args.plots / "capacity.csv", lambda p: table.to_csv(p, index=False, float_format="%.6f"))
            out.write_with(args.plots / "runs.csv",
                           lambda p: pd.DataFrame(rows).to_csv(p, index=False, float_format="%.6f"))
            mlflow.log_dict(metrics, "sweep.json")
            mlflow.set_tags({"small_pick": pick["pick"]})
            log["stage_seconds"] = time.perf_counter() - t_start
            out.write_json(args.log, log)
    print(f"[sweep] the rule picks {pick['pick']} ({results[pick['pick']]['model']}): mean validation accuracy "
          f"within one std of the best ({pick['best']}, {pick['best_val_mean']:.4f} ± {pick['best_val_std']:.4f})")


if __name__ == "__main__":
    run_stage("sweep", main)
