"""Stage `evaluate`: accuracy, loss, overfitting gap, per-class precision/recall/F1, confusion
matrix and calibration of every trained variant (birdplane.metrics.evaluate_model).

One process for all variants: the data is loaded and normalized once, and torch and MLflow are
imported once (imports cost about as much as evaluating a model). Reads params `train.variants`
(which variants, and their losses), `evaluate.calibration_bins`, `mlflow.experiment`. Adds each
variant's metrics to its MLflow run (found by the md5 of its model file).
"""

from birdplane.cli import selected_variants, variants_parser
from birdplane.process import run_stage


# the figures that go to each variant's MLflow run, as eval_<key>
LOGGED = (
    "train_accuracy",
    "val_accuracy",
    "overfit_gap",
    "train_loss",
    "val_loss",
    "val_nll",
    "val_ece",
)


def main() -> None:
    args = variants_parser(
        __doc__,
        {
            "data": "the prepared images (.npz)",
            "stats": "metrics/stats.json (mean, std)",
            "models": "folder of <variant>.pt",
            "metrics": "folder for <variant>.json",
            "plots": "folder for confusion/ and calibration/ <variant>.csv",
        },
    ).parse_args()

    from birdplane import tracking
    from birdplane.config import load_params

    params = load_params(args.params)
    variants = selected_variants(args.variants, params.train.variants)
    # a store that is down ends the stage before any work
    experiment_id = tracking.setup(params.mlflow.experiment)

    import torch

    from birdplane.inputs import load_tensors
    from birdplane.io import outputs

    train, val, classes, _ = load_tensors(args.data, args.stats, torch.device("cpu"))
    losses = {v: params.train.recipe(v).loss for v in variants}
    evaluated = evaluate_variants(
        args.models, losses, classes, (train, val), params.evaluate.calibration_bins
    )
    with outputs() as out:
        write_outputs(out, args.metrics, args.plots, evaluated)
        log_to_runs(params.mlflow.experiment, args.models, evaluated)
    print(f"[evaluate] MLflow runs: {tracking.runs_address(experiment_id)}")


def evaluate_variants(models, losses: dict, classes, data, bins: int) -> dict:
    """Each variant's (result, confusion, reliability), with one line per variant on the terminal."""
    from birdplane.metrics import evaluate_model
    from birdplane.modelfile import load_model

    train, val = data
    evaluated = {}
    for v, loss in losses.items():
        model, _ = load_model(models / f"{v}.pt", n_classes=len(classes))
        evaluated[v] = evaluate_model(model, loss, classes, train, val, bins)
        r = evaluated[v][0]
        print(
            f"[{v}] train acc {r['train_accuracy']:.4f}  val acc {r['val_accuracy']:.4f}  "
            f"gap {r['overfit_gap']:.4f}  ECE {r['val_ece']:.4f}"
        )
    return evaluated


def write_outputs(out, metrics, plots, evaluated: dict) -> None:
    """Each variant's metrics JSON and its confusion and calibration CSV files."""
    for v, (result, confusion, reliability) in evaluated.items():
        out.write_json(metrics / f"{v}.json", result)
        out.write_csv(plots / "confusion" / f"{v}.csv", confusion)
        out.write_csv(plots / "calibration" / f"{v}.csv", reliability, float_format="%.6f")


def log_to_runs(experiment: str, models, evaluated: dict) -> None:
    """Each variant's figures and evaluation.json in its MLflow run (found by its model's md5)."""
    from birdplane import tracking

    for v, (result, _, _) in evaluated.items():
        tracking.add_to_variant_run(
            experiment,
            v,
            models / f"{v}.pt",
            metrics={f"eval_{k}": float(result[k]) for k in LOGGED},
            tags={"evaluated_by": "evaluate"},
            stage="evaluate",
            documents={"evaluation.json": result},
        )


if __name__ == "__main__":
    run_stage("evaluate", main)
