"""What the metrics say, as plain numbers and verdicts: no words, no language.

`analyse` turns the earlier stages' outputs (`Inputs`) into findings: the numbers each statement of
the report quotes and the verdicts that decide which statement applies ("same" / "higher" /
"lower", reduced or not, which fix helped). `birdplane.report.document` words them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from birdplane.report import study
from birdplane.report.study import differs

if TYPE_CHECKING:  # the functions only call DataFrame methods: importing the report stays light
    import pandas as pd

# Deep Learning with PyTorch, ch. 7: per-channel mean/std of the 50,000 official training images
BOOK_MEAN = (0.4915, 0.4823, 0.4468)
BOOK_STD = (0.2470, 0.2435, 0.2616)
# the book's chapter-7 notebook, 3072-512-2 + NLLLoss, 100 epochs
BOOK_NLL = {"train_accuracy": 0.998, "val_accuracy": 0.821, "n_parameters": 1_574_402}


@dataclass
class Variant:
    name: str
    train: dict[str, Any]  # metrics/train/<v>.json
    history: pd.DataFrame  # plots/train/<v>.csv
    eval: dict[str, Any]  # metrics/eval/<v>.json
    shift: dict[str, Any] | None  # metrics/shift/<v>.json
    shift_grid: pd.DataFrame | None
    log: dict[str, Any]  # logs/train/<v>.json
    seed_history: pd.DataFrame | None = None  # plots/train/seeds/<v>.csv: every seed's curves


@dataclass
class Inputs:
    stats: dict[str, Any]
    variants: dict[str, Variant]
    params: dict[str, Any]  # params.yaml as written, for the report's provenance section only
    roles: dict[str, str]  # baseline / mse / small / augmented / cnn -> variant name ("" = none)
    fit_threshold: float
    summary_shift: int  # shift.summary_shift: the translation table's middle column
    base_width: int  # sweep.base_width: the book net the regularizers were tried on
    samples: Any = None  # uint8 images per class for the data figure
    sweep: dict[str, Any] | None = None  # metrics/sweep.json
    download: dict[str, Any] | None = None  # logs/download.json: the URL and md5 actually used
    sweep_curves: pd.DataFrame | None = None  # plots/sweep/curves.csv: config, seed, epoch, ...
    book_lr: float = 0.01  # train.lr: the book's learning rate, where the study compares the losses


def first_epoch_reaching(history: pd.DataFrame, column: str, threshold: float) -> int | None:
    hit = history.loc[history[column] >= threshold, "epoch"]
    return int(hit.iloc[0]) if len(hit) else None


def noise(history: pd.DataFrame, last: int = 10) -> float:
    """Epoch-to-epoch spread of validation accuracy near the end: std over the last epochs."""
    tail = history["val_accuracy"].tail(last)
    return float(tail.std(ddof=1)) if len(tail) > 1 else 0.0


def own_history(x: Variant) -> pd.DataFrame:
    """The curves of the variant's model (its first seed's, the one saved and evaluated): the
    history file is the mean over the seeds when there are several."""
    if x.seed_history is None:
        return x.history
    first = x.seed_history[x.seed_history["seed"] == x.seed_history["seed"].min()]
    return first.drop(columns="seed").reset_index(drop=True)


def best_epoch(history: pd.DataFrame) -> pd.Series:
    """The epoch of highest validation accuracy (the earliest among ties): early stopping's pick."""
    return history.loc[history["val_accuracy"].idxmax()]


def tolerance(base: Variant) -> float:
    """Differences below this are within the book net's epoch-to-epoch noise (at least 0.005)."""
    return max(noise(own_history(base)), 0.005)


def variant_summary(x: Variant, fit_threshold: float) -> dict[str, Any]:
    """One variant's final and best-epoch figures, from its evaluation and its own curves."""
    h = own_history(x)
    b = best_epoch(h)
    return {
        "name": x.name,
        "val": x.eval["val_accuracy"],
        "train": x.eval["train_accuracy"],
        "gap": x.eval["overfit_gap"],
        "params": x.eval["n_parameters"],
        "best_val": float(b["val_accuracy"]),
        "best_epoch": int(b["epoch"]),
        "gap_at_best": float(b["train_accuracy"] - b["val_accuracy"]),
        "fit_epoch": first_epoch_reaching(h, "train_accuracy", fit_threshold),
        "epochs": int(h["epoch"].max()),
        "ece": x.eval["val_ece"],
        "seeds": x.train.get("seeds"),
    }


def compare(a: float, b: float, tol: float) -> str:
    """a against b: "same" within `tol`, else "higher" or "lower"."""
    return "same" if abs(a - b) < tol else ("higher" if a > b else "lower")


def compare_on(key: str, a: dict[str, Any], b: dict[str, Any], tol: float) -> str:
    """a against b on "val" or "gap": the means over seeds when both variants ran several, and
    then "same" unless the means differ by more than the larger std (and the epoch noise)."""
    if not (a["seeds"] and b["seeds"]):
        return compare(a[key], b[key], tol)
    metric = {"val": "val_accuracy", "gap": "overfit_gap"}[key]
    (ma, sa), (mb, sb) = ((x["seeds"][metric]["mean"], x["seeds"][metric]["std"]) for x in (a, b))
    return "same" if abs(ma - mb) <= max(tol, sa, sb) else ("higher" if ma > mb else "lower")


def best_fix(base: Variant, small: Variant, s_base: dict[str, Any], tol: float) -> dict[str, Any]:
    """What reduced overfitting most, if anything: the small variant's final gap or early stopping's."""
    candidates = [
        (f"variant:{x.name}", x.eval["overfit_gap"], x.eval["val_accuracy"]) for x in (base, small)
    ]
    candidates.append(("early_stopping", s_base["gap_at_best"], s_base["best_val"]))
    fix = min(candidates, key=lambda c: c[1])
    helped = fix[1] < s_base["gap"] - tol
    return {"what": fix[0], "gap": fix[1], "val": fix[2], "helped": helped}


def analyse(inp: Inputs) -> dict[str, Any]:
    """Plain numbers and verdicts for every statement of the report."""
    v = inp.variants
    base, mse, small = (v[inp.roles[r]] for r in ("baseline", "mse", "small"))
    tol = tolerance(base)
    s_base, s_mse, s_small = (variant_summary(x, inp.fit_threshold) for x in (base, mse, small))
    return {
        "sweep": analyse_sweep(inp) if inp.sweep else None,
        "task1_seeds": study.task1(base, mse, inp.fit_threshold),
        "lr_study": study.lr_study(inp),
        "story": study.story(inp, small, base),
        "translation": analyse_translation(inp),
        "tolerance": tol,
        "baseline": s_base,
        "mse": s_mse,
        "small": s_small,
        "task1": {
            "val": compare_on("val", s_mse, s_base, tol),
            "best": compare(s_mse["best_val"], s_base["best_val"], tol),
            "gap": compare_on("gap", s_mse, s_base, tol),
        },
        "task2": {
            "reduced": compare_on("gap", s_small, s_base, tol) == "lower",
            "val": compare_on("val", s_small, s_base, tol),
            "params_ratio": s_base["params"] / s_small["params"],
        },
        "best_fix": best_fix(base, small, s_base, tol),
    }


def capacity(configs: dict[str, dict]) -> dict[str, dict]:
    """The sweep's capacity configurations (widths, the deep net, regularizers): the learning-rate
    study's belong to task 1."""
    return {n: c for n, c in configs.items() if c["kind"] != "lr"}


def analyse_sweep(inp: Inputs) -> dict[str, Any]:
    """The capacity sweep: trends over width, the regularizers against the plain book net, the pick."""
    sw = inp.sweep
    configs = capacity(sw["configs"])
    widths = {n: c for n, c in configs.items() if c["kind"] == "width"}
    base_name = next((n for n, c in widths.items() if c["hidden"] == [inp.base_width]), None)
    base = configs[base_name] if base_name else None
    first, last = list(widths)[0], list(widths)[-1]
    regs = {}
    for n, c in configs.items():
        if c["kind"] == "regularizer" and base is not None:
            regs[n] = {
                "gap": c["overfit_gap"],
                "val": c["val_accuracy"],
                "base_gap": base["overfit_gap"],
                "base_val": base["val_accuracy"],
                "gap_change": "same"
                if not differs(c["overfit_gap"], base["overfit_gap"])
                else (
                    "lower" if c["overfit_gap"]["mean"] < base["overfit_gap"]["mean"] else "higher"
                ),
                "val_change": "same"
                if not differs(c["val_accuracy"], base["val_accuracy"])
                else (
                    "higher"
                    if c["val_accuracy"]["mean"] > base["val_accuracy"]["mean"]
                    else "lower"
                ),
                "epochs_trained": c["epochs_trained"]["mean"],
                "best_epoch": c["best_epoch"]["mean"],
                "read_from": c.get("read_from"),
            }
    rule = sw["small_rule"]
    small = inp.variants[inp.roles["small"]]
    small_hidden = small.train["recipe"]["hidden"]
    return {
        "configs": configs,
        "seeds": len(sw["seeds"]),
        "epochs": sw["epochs"],
        "base": base_name,
        "first": first,
        "last": last,
        "gap_grows": widths[last]["overfit_gap"]["mean"] > widths[first]["overfit_gap"]["mean"]
        and differs(widths[last]["overfit_gap"], widths[first]["overfit_gap"]),
        "min_gap": min(widths, key=lambda n: widths[n]["overfit_gap"]["mean"]),
        "best_val": max(configs, key=lambda n: configs[n]["val_accuracy"]["mean"]),
        "regularizers": regs,
        "rule": rule,
        "small_agrees": list(small_hidden) == list(rule["hidden"]),
        "small_hidden": list(small_hidden),
    }


def analyse_translation(inp: Inputs) -> dict[str, Any] | None:
    """MLP, MLP trained on shifted images and convnet at the summary shift and the largest shift."""
    names = [inp.roles["baseline"], inp.roles.get("augmented", ""), inp.roles.get("cnn", "")]
    present = [n for n in names if n and n in inp.variants and inp.variants[n].shift]
    if len(present) < 2:
        return None
    k = int(inp.variants[present[0]].shift["max_shift"])
    mid = min(inp.summary_shift, k)
    rows = {
        n: {
            "a0": inp.variants[n].shift["accuracy_at_0"],
            "amid": inp.variants[n].shift["accuracy_by_shift"][str(mid)],
            "ak": inp.variants[n].shift["accuracy_by_shift"][str(k)],
        }
        for n in present
    }
    for r in rows.values():
        r["drop"] = r["a0"] - r["ak"]
    most_robust = min(rows, key=lambda n: rows[n]["drop"])
    # the variant with the highest accuracy at every shift ring, if one is
    grids = {n: inp.variants[n].shift["accuracy_by_shift"] for n in present}
    leaders = {max(present, key=lambda n: grids[n][r]) for r in grids[present[0]]}
    return {
        "rows": rows,
        "mid": mid,
        "k": k,
        "most_robust": most_robust,
        "baseline": names[0],
        "best_everywhere": leaders.pop() if len(leaders) == 1 else None,
    }
