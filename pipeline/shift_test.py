"""Stage `shift-test`: accuracy of every trained variant on the validation images moved by every
(dx, dy) in -k..k pixels (birdplane.shift), the lecture's "lack of translation invariance" measured.

One process for all variants (data and imports once). Reads params `train.variants` (which
variants), `shift.max_shift`, `shift.modes`, `shift.summary_shift`, `mlflow.experiment`.
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
            "plots": "folder for by_shift/ and grid/ <variant>.csv",
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
    from birdplane.modelfile import load_model
    from birdplane.shift import shift_test

    sh = params.shift
    _, (x, y), classes, _ = load_tensors(args.data, args.stats, torch.device("cpu"))
    x = x.reshape(-1, 3, 32, 32)
    tested = {}
    for v in variants:
        model, _ = load_model(args.models / f"{v}.pt", n_classes=len(classes))
        tested[v] = result, _, _ = shift_test(model, x, y, sh.max_shift, sh.modes, sh.summary_shift)
        print(
            f"[{v}] accuracy at shift 0: {result['accuracy_at_0']:.4f}, at {sh.summary_shift}: "
            f"{result[f'accuracy_at_{sh.summary_shift}']:.4f}, at {sh.max_shift}: "
            f"{result['accuracy_by_shift'][str(sh.max_shift)]:.4f}"
        )

    with outputs() as out:
        for v, (result, rings, cells) in tested.items():
            out.write_json(args.metrics / f"{v}.json", result)
            out.write_csv(args.plots / "by_shift" / f"{v}.csv", rings, float_format="%.6f")
            out.write_csv(args.plots / "grid" / f"{v}.csv", cells, float_format="%.6f")
        for v, (result, _, _) in tested.items():
            tracking.add_to_variant_run(
                params.mlflow.experiment,
                v,
                args.models / f"{v}.pt",
                metrics={
                    f"shift_accuracy_at_{r}": a for r, a in result["accuracy_by_shift"].items()
                },
                tags={"shift_tested_by": "shift-test"},
                stage="shift-test",
            )
    print(f"[shift-test] MLflow runs: {tracking.runs_address(experiment_id)}")


if __name__ == "__main__":
    run_stage("shift-test", main)
