"""Stage `evaluate`: accuracy, loss, overfitting gap, per-class precision/recall/F1, confusion
matrix and calibration of every trained variant, on the training and validation images.

One process for all variants: the data is loaded and normalized once, and torch and MLflow are
imported once (imports cost about as much as evaluating a model). Reads params `train.variants`
(which variants), `evaluate.calibration_bins`, `mlflow.experiment`. Adds each variant's metrics
to its MLflow run (found through the train stage's log).
"""

from birdplane.cli import all_variants_parser, run_stage, selected_variants


def main() -> None:
    args = all_variants_parser(__doc__, {
        "metrics": "metrics/eval",  # <variant>.json
        "plots": "plots/eval",      # confusion/<variant>.csv, calibration/<variant>.csv
    }).parse_args()

    from birdplane.config import load_params
    params = load_params(args.params)
    variants = selected_variants(args.variants, params.train.variants)
    from birdplane import tracking
    tracking.setup(params.mlflow.experiment)  # a store that is down ends the stage before any work

    import pandas as pd
    import torch

    from birdplane.data import load_dataset, split_tensors
    from birdplane.inference import accuracy, predict
    from birdplane.io import outputs, read_json
    from birdplane.losses import LOSSES, probabilities
    from birdplane.metrics import calibration, confusion_matrix, per_class_scores
    from birdplane.models import load_model, n_parameters

    stats = read_json(args.stats)
    train, val, classes = load_dataset(args.data)
    device = torch.device("cpu")
    splits = {"train": split_tensors(train, stats, device), "val": split_tensors(val, stats, device)}
    bins_n = params.evaluate.calibration_bins

    results, tables = {}, {}
    for v in variants:
        model, cfg = load_model(args.models / f"{v}.pt")
        loss_name = params.train.recipe(v).loss
        r: dict = {}
        for split, (x, y) in splits.items():
            out = predict(model, x)
            r[f"{split}_accuracy"] = accuracy(out, y)
            r[f"{split}_loss"] = float(LOSSES[loss_name].mean(out, y))
        x, y = splits["val"]
        probs = probabilities(out, cfg.head)
        pred = out.argmax(1)
        cm = confusion_matrix(y, pred, len(classes))
        ece, bins = calibration(probs, y, bins_n)
        results[v] = {
            "train_accuracy": r["train_accuracy"], "val_accuracy": r["val_accuracy"],
            "overfit_gap": r["train_accuracy"] - r["val_accuracy"],
            "train_loss": r["train_loss"], "val_loss": r["val_loss"], "loss": loss_name,
            # natural log-likelihood of the true class, comparable across both heads
            "val_nll": float(-probs.clamp_min(1e-12).log().gather(1, y[:, None]).mean()),
            "val_ece": ece, "n_parameters": n_parameters(model),
            "per_class": per_class_scores(cm, classes),
            "confusion_matrix": {"labels": classes, "rows_actual_cols_predicted": cm.tolist()},
            "calibration_bins": bins,
        }
        tables[v] = (
            pd.DataFrame({"actual": [classes[i] for i in y.tolist()], "predicted": [classes[i] for i in pred.tolist()]}),
            pd.DataFrame([b for b in bins if b["count"]])[["confidence", "accuracy", "count"]],
        )
        res = results[v]
        print(f"[{v}] train acc {res['train_accuracy']:.4f}  val acc {res['val_accuracy']:.4f}  "
              f"gap {res['overfit_gap']:.4f}  ECE {ece:.4f}")

    with outputs() as out:
        for v in variants:
            confusion, reliability = tables[v]
            out.write_json(args.metrics / f"{v}.json", results[v])
            out.write_with(args.plots / "confusion" / f"{v}.csv", lambda p: confusion.to_csv(p, index=False))
            out.write_with(args.plots / "calibration" / f"{v}.csv",
                           lambda p: reliability.to_csv(p, index=False, float_format="%.6f"))
        for v in variants:
            tracking.add_to_variant_run(
                params.mlflow.experiment, v, read_json(args.train_logs / f"{v}.json").get("mlflow_run_id"),
                metrics={f"eval_{k}": float(results[v][k]) for k in (
                    "train_accuracy", "val_accuracy", "overfit_gap", "train_loss", "val_loss", "val_nll", "val_ece")},
                tags={"evaluated_by": "evaluate"}, stage="evaluate", documents={"evaluation.json": results[v]})


if __name__ == "__main__":
    run_stage("evaluate", main)
