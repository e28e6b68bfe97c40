"""Stage `shift-test`: accuracy of every trained variant on the validation images moved by every
(dx, dy) in -k..k pixels, the lecture's "lack of translation invariance" measured.

One process for all variants (data and imports once). Reads params `train.variants` (which
variants), `shift.max_shift`, `shift.modes`, `shift.summary_shift`, `mlflow.experiment`.
"""

from birdplane.cli import all_variants_parser, run_stage, selected_variants


def main() -> None:
    args = all_variants_parser(__doc__, {
        "metrics": "metrics/shift",  # <variant>.json
        "plots": "plots/shift",      # by_shift/<variant>.csv, grid/<variant>.csv
    }).parse_args()

    from birdplane.config import load_params
    cfg = load_params(args.params)
    variants = selected_variants(args.variants, cfg.train.variants)
    from birdplane import tracking
    tracking.setup(cfg.mlflow.experiment)  # a store that is down ends the stage before any work
    k = cfg.shift.max_shift

    import pandas as pd
    import torch

    from birdplane.data import load_dataset, split_tensors
    from birdplane.io import outputs, read_json
    from birdplane.models import load_model
    from birdplane.shift import by_ring, shift_accuracy

    stats = read_json(args.stats)
    _, val, _ = load_dataset(args.data)
    x, y = split_tensors(val, stats, torch.device("cpu"))
    x = x.reshape(-1, 3, 32, 32)

    results, tables = {}, {}
    for v in variants:
        model, _ = load_model(args.models / f"{v}.pt")
        result: dict = {}
        rings, cells = [], []
        for mode in cfg.shift.modes:
            grid = shift_accuracy(model, x, y, k, mode)
            ring = by_ring(grid)
            summary = {"accuracy_at_0": ring["0"], "accuracy_by_shift": ring,
                       f"accuracy_at_{cfg.shift.summary_shift}": ring[str(cfg.shift.summary_shift)],
                       "mean_accuracy": float(grid.mean()), "max_shift": k}
            if mode == cfg.shift.modes[0]:
                result.update(summary, mode=mode)  # the contract keys, for the first (default) mode
            else:
                result[mode] = summary
            rings += [{"mode": mode, "shift": int(r), "accuracy": a} for r, a in ring.items()]
            cells += [{"mode": mode, "dx": dx, "dy": dy, "accuracy": float(grid[dy + k, dx + k])}
                      for dy in range(-k, k + 1) for dx in range(-k, k + 1)]
        results[v], tables[v] = result, (pd.DataFrame(rings), pd.DataFrame(cells))
        print(f"[{v}] accuracy at shift 0: {result['accuracy_at_0']:.4f}, at {cfg.shift.summary_shift}: "
              f"{result[f'accuracy_at_{cfg.shift.summary_shift}']:.4f}, at {k}: {result['accuracy_by_shift'][str(k)]:.4f}")

    with outputs() as out:
        for v in variants:
            rings, cells = tables[v]
            out.write_json(args.metrics / f"{v}.json", results[v])
            out.write_with(args.plots / "by_shift" / f"{v}.csv",
                           lambda p: rings.to_csv(p, index=False, float_format="%.6f"))
            out.write_with(args.plots / "grid" / f"{v}.csv",
                           lambda p: cells.to_csv(p, index=False, float_format="%.6f"))
        for v in variants:
            tracking.add_to_variant_run(
                cfg.mlflow.experiment, v, read_json(args.train_logs / f"{v}.json").get("mlflow_run_id"),
                metrics={f"shift_accuracy_at_{r}": a for r, a in results[v]["accuracy_by_shift"].items()},
                tags={"shift_tested_by": "shift-test"}, stage="shift-test")


if __name__ == "__main__":
    run_stage("shift-test", main)
