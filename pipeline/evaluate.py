"""Stage `evaluate`: accuracy, loss, overfitting gap, per-class precision/recall/F1, confusion
matrix and calibration of every trained variant (birdplane.metrics.evaluate_model).

One process for all variants: the data is loaded and normalized once, and torch and MLflow are
imported once (imports cost about as much as evaluating a model). Reads params `train.variants`
(which variants, and their losses), `evaluate.calibration_bins`, `mlflow.experiment`. Adds each
variant's metrics to its MLflow run (found by the md5 of its model file).
"""

from birdplane.cli import selected_variants, variants_parser
from birdplane.process import run_stage


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
    from birdplane.metrics import evaluate_model
    from birdplane.modelfile import load_model

    train, val, classes, _ = load_tensors(args.data, args.stats, torch.device("cpu"))
    evaluated = {}
    for v in variants:
        model, _ = load_model(args.models / f"{v}.pt", n_classes=len(classes))
        evaluated[v] = evaluate_model(
            model,
            params.train.recipe(v).loss,
            classes,
            train,
            val,
            params.evaluate.calibration_bins,
        )
        r = evaluated[v][0]
        print(
            f"[{v}] train acc {r['train_accuracy']:.4f}  val acc {r['val_accuracy']:.4f}  "
            f"gap {r['overfit_gap']:.4f}  ECE {r['val_ece']:.4f}"
        )

    with outputs() as out:
        for v, (result, confusion, reliability) in evaluated.items():
            out.write_json(args.metrics / f"{v}.json", result)
            out.write_csv(args.plots / "confusion" / f"{v}.csv", confusion)
            out.write_csv(args.plots / "calibration" / f"{v}.csv", reliability, float_format="%.6f")
        for v, (result, _, _) in evaluated.items():
            tracking.add_to_variant_run(
                params.mlflow.experiment,
                v,
                args.models / f"{v}.pt",
                metrics={
                    f"eval_{k}": float(result[k])
                    for k in (
                        "train_accuracy",
                        "val_accuracy",
                        "overfit_gap",
                        "train_loss",
                        "val_loss",
                        "val_nll",
                        "val_ece",
                    )
                },
                tags={"evaluated_by": "evaluate"},
                stage="evaluate",
                documents={"evaluation.json": result},
            )
    print(f"[evaluate] MLflow runs: {tracking.runs_address(experiment_id)}")


if __name__ == "__main__":
    run_stage("evaluate", main)
