"""Stage `evaluate@<variant>`: accuracy, loss, overfitting gap, per-class precision/recall/F1,
confusion matrix and calibration of one trained variant, on the training and validation images.

Reads params `evaluate.calibration_bins`, `mlflow.experiment`. Adds its metrics to the variant's
MLflow run (found through the train stage's log).
"""

from birdplane.cli import parse_variant_args, run_stage, variant_parser


def main() -> None:
    args = parse_variant_args(variant_parser(__doc__, {
        "metrics": "metrics/eval/{variant}.json",
        "plots": "plots/eval/{variant}",  # confusion.csv, calibration.csv
    }))
    v = args.variant

    from birdplane.config import load_params
    params = load_params(args.params)

    import pandas as pd
    import torch

    from birdplane import engine, tracking
    from birdplane.data import load_dataset
    from birdplane.io import outputs, read_json
    from birdplane.losses import LOSSES, probabilities
    from birdplane.metrics import calibration, confusion_matrix, per_class_scores
    from birdplane.models import load_model, n_parameters

    stats = read_json(args.stats)
    train, val, classes = load_dataset(args.data)
    model, cfg = load_model(args.model)
    loss_name = "nll" if cfg.head == "log_softmax" else "mse"
    loss_fn = LOSSES[loss_name]
    device = torch.device("cpu")

    result: dict = {}
    for split, data in (("train", train), ("val", val)):
        x = engine.to_features(data.images, stats["mean"], stats["std"], device)
        y = torch.from_numpy(data.labels)
        out = engine.predict(model, x)
        pred = out.argmax(1)
        result[f"{split}_accuracy"] = engine.accuracy(out, y)
        result[f"{split}_loss"] = float(loss_fn(out, y))
        if split == "val":
            cm = confusion_matrix(y, pred, len(classes))
            ece, bins = calibration(probabilities(out, cfg.head), y, params.evaluate.calibration_bins)
            # natural log-likelihood of the true class, comparable across both heads
            nll = float(-probabilities(out, cfg.head).clamp_min(1e-12).log().gather(1, y[:, None]).mean())
            val_pred, val_true = pred, y
    result = {
        "train_accuracy": result["train_accuracy"], "val_accuracy": result["val_accuracy"],
        "overfit_gap": result["train_accuracy"] - result["val_accuracy"],
        "train_loss": result["train_loss"], "val_loss": result["val_loss"], "loss": loss_name,
        "val_nll": nll, "val_ece": ece, "n_parameters": n_parameters(model),
        "per_class": per_class_scores(cm, classes),
        "confusion_matrix": {"labels": classes, "rows_actual_cols_predicted": cm.tolist()},
        "calibration_bins": bins,
    }

    plots = args.plots
    confusion = pd.DataFrame({"actual": [classes[i] for i in val_true.tolist()],
                              "predicted": [classes[i] for i in val_pred.tolist()]})
    reliability = pd.DataFrame([b for b in bins if b["count"]])[["confidence", "accuracy", "count"]]

    with outputs() as out:
        out.write_json(args.metrics, result)
        out.write_with(plots / "confusion.csv", lambda p: confusion.to_csv(p, index=False))
        out.write_with(plots / "calibration.csv",
                       lambda p: reliability.to_csv(p, index=False, float_format="%.6f"))
        tracking.add_to_variant_run(
            params.mlflow.experiment, v, read_json(args.train_log).get("mlflow_run_id"),
            metrics={f"eval_{k}": float(result[k]) for k in (
                "train_accuracy", "val_accuracy", "overfit_gap", "train_loss", "val_loss", "val_nll", "val_ece")},
            tags={"evaluated_by": f"evaluate@{v}"}, documents={"evaluation.json": result})
    print(f"[{v}] train acc {result['train_accuracy']:.4f}  val acc {result['val_accuracy']:.4f}  "
          f"gap {result['overfit_gap']:.4f}  ECE {ece:.4f}")


if __name__ == "__main__":
    run_stage("evaluate", main)
