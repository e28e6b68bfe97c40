"""The seeded evidence behind the homework answers, as plain numbers and verdicts (no words):

- task 1 over seeds: NLL against MSE at the book's recipe, mean ± std of each figure;
- the learning-rate study: each loss at each learning rate of the sweep, its best rate, and the
  measured size of the loss's gradient on the images a net gets wrong;
- the task-2 story: the gap of the small and the book net at several training lengths.

A difference is real only when the means are further apart than the larger standard deviation over
the seeds (`differs`); otherwise the verdict is "cannot_tell".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from birdplane.summary import spread

if TYPE_CHECKING:
    import pandas as pd

# `Inputs` and `Variant` are birdplane.report.findings' (which imports this module)
Inputs = Variant = Any

# a net is "confidently wrong" on an image when p(correct class) < 0.1 (inference.logit_gradients);
# MSE's gradient is flat there if its ratio to NLL's is this much smaller than on all mistakes
FLAT_FACTOR = 1.5
# The story's gap at a length: per seed, the mean over the epochs up to it (5: validation accuracy
# jumps by a few points from one epoch to the next, the mean of five is steadier), then over seeds
GAP_WINDOW = 5


def differs(a: dict[str, float], b: dict[str, float]) -> bool:
    """Two mean ± std (over seeds) differ when the means are further apart than the larger std."""
    return abs(a["mean"] - b["mean"]) > max(a["std"], b["std"])


def verdict(a: dict[str, float] | None, b: dict[str, float] | None) -> str:
    """a against b: "higher", "lower" or "cannot_tell" (within the seed spread, a side missing, or
    a side from one seed, which has no spread to judge by)."""
    if not a or not b or min(a.get("n", 2), b.get("n", 2)) < 2 or not differs(a, b):
        return "cannot_tell"
    return "higher" if a["mean"] > b["mean"] else "lower"


def fit_epochs(curves: pd.DataFrame, threshold: float) -> list[int | None]:
    """Per seed (curves: seed, epoch, train_accuracy, ...): the first epoch whose training accuracy
    reaches `threshold`, None for a seed that never does."""
    out = []
    for _, c in curves.groupby("seed", sort=True):
        hit = c.loc[c["train_accuracy"] >= threshold, "epoch"]
        out.append(int(hit.min()) if len(hit) else None)
    return out


def fit_summary(epochs: list[int | None], length: int) -> dict[str, Any]:
    """Epochs to fit over seeds: mean ± std of the seeds that fit, how many did, and the spread with
    a seed that never fit counted as length + 1 (a lower bound), which the verdict compares."""
    hit = [e for e in epochs if e is not None]
    return {
        "spread": spread(hit) if hit else None,
        "n_fit": len(hit),
        "n": len(epochs),
        "censored": spread([length + 1 if e is None else e for e in epochs]) if epochs else None,
    }


def fit_verdict(a: dict[str, Any], b: dict[str, Any]) -> str:
    """a fits "faster" / "slower" than b, or "cannot_tell": the epochs to fit over seeds, a seed that
    never fits counted as one epoch past the end; nobody fitting on either side cannot be compared."""
    if a["n_fit"] == 0 and b["n_fit"] == 0:
        return "cannot_tell"
    return {"higher": "slower", "lower": "faster"}.get(
        verdict(a["censored"], b["censored"]), "cannot_tell"
    )


def seeded(x: Variant, threshold: float) -> dict[str, Any] | None:
    """One variant over its seeds: the spreads the training stage wrote (metrics/train/<v>.json
    "seeds") and the epochs to fit from every seed's curves (plots/train/seeds/<v>.csv)."""
    s = x.train.get("seeds")
    if not s or not s.get("runs") or x.seed_history is None:
        return None
    epochs = int(x.seed_history["epoch"].max())
    return {
        "n": len(s["runs"]),
        "epochs": epochs,
        **{k: s[k] for k in ("val_accuracy", "best_val_accuracy", "overfit_gap", "val_ece")},
        "fit": fit_summary(fit_epochs(x.seed_history, threshold), epochs),
    }


def task1(base: Variant, mse: Variant, threshold: float) -> dict[str, Any] | None:
    """NLL (base) against MSE over seeds at the book's recipe; None unless both ran several seeds."""
    a, b = seeded(mse, threshold), seeded(base, threshold)
    if not a or not b:
        return None
    return {
        "mse": a,
        "baseline": b,
        "n": min(a["n"], b["n"]),
        "verdicts": {
            **{
                k: verdict(a[k], b[k])
                for k in ("val_accuracy", "best_val_accuracy", "overfit_gap", "val_ece")
            },
            "fit": fit_verdict(a["fit"], b["fit"]),
        },
    }


def _config(configs: dict[str, dict], name: str) -> dict[str, Any]:
    """A sweep configuration, following `same_as` to the one it was read from."""
    c = configs[name]
    return {**configs[c["same_as"]], **c} if c.get("same_as") and "val_accuracy" not in c else c


def _lr_row(
    configs: dict[str, dict], name: str, curves: pd.DataFrame, threshold: float, epochs: int
) -> dict[str, Any]:
    """One configuration of the study: its loss and rate, and unless it diverged its accuracies,
    epochs to fit (from its curves) and gradient measure."""
    c = _config(configs, name)
    source = c.get("same_as") or name
    row = {
        "name": name,
        "source": source,
        "loss": c["loss"],
        "lr": c["lr"],
        "diverged": c.get("diverged"),
    }
    if not row["diverged"]:
        grads = c.get("logit_grad") or {}
        row.update(
            val=c["val_accuracy"],
            train=c["train_accuracy"],
            gap=c["overfit_gap"],
            grad=grads.get("misclassified"),
            grad_wrong=grads.get("confidently_wrong"),
            share_wrong=grads.get("share_confidently_wrong"),
            fit=fit_summary(fit_epochs(curves[curves["config"] == source], threshold), epochs),
        )
    return row


def lr_rows(
    sw: dict[str, Any], names: list[str], curves: pd.DataFrame, threshold: float
) -> dict[str, dict[float, dict[str, Any]]]:
    """The study's rows by loss, then by learning rate."""
    rows: dict[str, dict[float, dict[str, Any]]] = {}
    for n in names:
        row = _lr_row(sw["configs"], n, curves, threshold, sw["epochs"])
        rows.setdefault(row["loss"], {})[row["lr"]] = row
    return rows


def best_rates(rows: dict[str, dict[float, dict]]) -> dict[str, float | None]:
    """Each loss's best rate: the highest mean validation accuracy (the smaller rate among ties)."""
    best = {}
    for loss, by_lr in rows.items():
        ok = [r for r in by_lr.values() if not r["diverged"]]
        best[loss] = max(ok, key=lambda r: (r["val"]["mean"], -r["lr"]))["lr"] if ok else None
    return best


def fastest_rates(rows: dict[str, dict[float, dict]]) -> dict[str, float | None]:
    """Each loss's fastest-fitting rate: the fewest epochs to fit over seeds (never-fit counted as
    one past the end; the smaller rate among ties), None when no rate fits."""
    fastest = {}
    for loss, by_lr in rows.items():
        fit = [r for r in by_lr.values() if not r["diverged"] and r["fit"]["n_fit"]]
        fastest[loss] = (
            min(fit, key=lambda r: (r["fit"]["censored"]["mean"], r["lr"]))["lr"] if fit else None
        )
    return fastest


def lr_ties(rows: dict[str, dict[float, dict]], best: dict[str, float | None]) -> dict[str, list]:
    """Per loss, the rates that cannot be told from its best by validation accuracy."""
    return {
        loss: [
            lr
            for lr, r in sorted(by_lr.items())
            if best[loss] is not None
            and lr != best[loss]
            and not r["diverged"]
            and verdict(r["val"], by_lr[best[loss]]["val"]) == "cannot_tell"
        ]
        for loss, by_lr in rows.items()
    }


def _compare_rows(m: dict | None, n: dict | None) -> dict[str, str] | None:
    """Row m against row n on validation accuracy and epochs to fit; None if one is missing or
    diverged."""
    if not m or not n or m["diverged"] or n["diverged"]:
        return None
    return {"val": verdict(m["val"], n["val"]), "fit": fit_verdict(m["fit"], n["fit"])}


def _at_rates(
    rows: dict[str, dict[float, dict]], rates: dict[str, float | None], pair: dict[str, str]
) -> dict[str, dict | None]:
    """Per role of the pair, its loss's row at that loss's rate in `rates` (None without one)."""
    return {
        role: rows[loss][rates[loss]] if rates[loss] is not None else None
        for role, loss in pair.items()
    }


def pair_findings(out: dict[str, Any]) -> dict[str, Any]:
    """Task 1's pair (MSE against the book's NLL) in the study: at the book's rate, at each one's
    best and fastest rate, the gradient reason and the share of confidently wrong images."""
    rows, book = out["rows"], out["book_lr"]
    base, task = out["base"], out["task"]
    if not out["pair"]:
        return {
            "best_is_book": False,
            "at_book": None,
            "at_best": None,
            "at_fastest": None,
            "why": None,
            "share": None,
        }
    pair = {"baseline": base, "mse": task}  # the roles, as the catalogs' sentences name them
    at_book = {role: rows[loss].get(book) for role, loss in pair.items()}
    at_best = _at_rates(rows, out["best"], pair)
    at_fastest = _at_rates(rows, out["fastest"], pair)
    return {
        "best_is_book": out["best"][base] == out["best"][task] == book,
        "at_book": _compare_rows(at_book["mse"], at_book["baseline"]),
        "at_best": _compare_rows(at_best["mse"], at_best["baseline"]),
        "at_fastest": _compare_rows(at_fastest["mse"], at_fastest["baseline"]),
        "why": gradient_reason(at_book["baseline"], at_book["mse"]),
        "share": {
            role: {
                "book": (at_book[role] or {}).get("share_wrong"),
                "fastest": (at_fastest[role] or {}).get("share_wrong"),
            }
            for role in pair
        },
    }


def lr_study(inp: Inputs) -> dict[str, Any] | None:
    """The learning-rate study of the sweep (configurations of kind "lr"): per loss and rate the
    accuracies, epochs to fit and the gradient measure, for every loss of sweep.losses; each loss's
    best rate (highest mean validation accuracy); and task 1's pair, the loss of the `baseline`
    variant (`base`, the book's NLL) against the loss of the `mse` variant (`task`, MSE), at the
    book's rate and at each one's best. Without both of the pair in the study, the per-loss figures
    stand alone (`pair` False) and the comparisons are None."""
    sw, curves = inp.sweep, inp.sweep_curves
    if not sw or curves is None:
        return None
    names = [n for n, c in sw["configs"].items() if c.get("kind") == "lr"]
    if not names:
        return None
    rows = lr_rows(sw, names, curves, inp.fit_threshold)
    base, task = (inp.variants[inp.roles[r]].train["recipe"]["loss"] for r in ("baseline", "mse"))
    best = best_rates(rows)
    out = {
        "rows": rows,
        "best": best,
        "fastest": fastest_rates(rows),
        "book_lr": inp.book_lr,
        "epochs": sw["epochs"],
        "seeds": len(sw["seeds"]),
        "base": base,
        "task": task,
        "pair": {base, task} <= rows.keys(),
        "ties": lr_ties(rows, best),
    }
    return {**out, **pair_findings(out)}


def gradient_reason(nll: dict | None, mse: dict | None) -> dict[str, Any] | None:
    """The measured quantity at the book's rate: the size of each loss's gradient with respect to
    the logits on the misclassified training images, and on the confidently wrong ones. MSE's is
    smaller overall ("smaller steps", which a larger learning rate makes up for) and, if its ratio
    to NLL's is FLAT_FACTOR times smaller still on the confidently wrong images, flat exactly where
    the prediction is furthest off (the book's argument, which a learning rate cannot fix)."""
    if (
        not nll
        or not mse
        or nll["diverged"]
        or mse["diverged"]
        or not nll.get("grad")
        or not mse.get("grad")
    ):
        return None
    ratio = nll["grad"]["mean"] / mse["grad"]["mean"]
    out = {
        "baseline": nll["grad"],
        "mse": mse["grad"],
        "ratio": ratio,
        "baseline_wrong": nll.get("grad_wrong"),
        "mse_wrong": mse.get("grad_wrong"),
        "ratio_wrong": None,
    }
    if out["baseline_wrong"] and out["mse_wrong"] and out["mse_wrong"]["mean"] > 0:
        out["ratio_wrong"] = out["baseline_wrong"]["mean"] / out["mse_wrong"]["mean"]
    out["flat"] = out["ratio_wrong"] is not None and out["ratio_wrong"] > FLAT_FACTOR * ratio
    return out


def _gap_at(curves: pd.DataFrame, epoch: int) -> dict[str, Any] | None:
    """The gap (training − validation accuracy, the training accuracy as the curves record it) at
    `epoch`: per seed the mean over the GAP_WINDOW epochs up to it, then mean ± std over the seeds."""
    at = curves[(curves["epoch"] > epoch - GAP_WINDOW) & (curves["epoch"] <= epoch)]
    if at.empty or int(at["epoch"].max()) != epoch:
        return None
    return spread((at["train_accuracy"] - at["val_accuracy"]).groupby(at["seed"]).mean().tolist())


def _seeded_enough(inp: Inputs, small: Variant, base: Variant) -> bool:
    """Whether the story has what it needs: the sweep's curves, both variants' seed curves, and
    more than one seed everywhere (one seed has no spread: the story would rest on single runs)."""
    sw, curves = inp.sweep, inp.sweep_curves
    if not sw or curves is None or small.seed_history is None or base.seed_history is None:
        return False
    return bool(small.train.get("seeds") and base.train.get("seeds") and len(sw["seeds"]) > 1)


def _sweep_rows(
    sw: dict[str, Any], curves: pd.DataFrame, order: list[str], names: tuple[str, str]
) -> list[dict[str, Any]]:
    """At a third of the sweep's length and at its end: the narrowest and widest net's gap, whether
    it grows with the width, and the gap of the sweep's configurations `names` (small, book net)."""
    rows = []
    for epoch in sorted({max(1, sw["epochs"] // 3), sw["epochs"]}):
        gaps = {n: _gap_at(curves[curves["config"] == n], epoch) for n in order}
        if any(g is None for g in gaps.values()):
            continue
        rows.append(
            {
                "epoch": epoch,
                "source": "sweep",
                "narrow": order[0],
                "wide": order[-1],
                "narrow_gap": gaps[order[0]],
                "wide_gap": gaps[order[-1]],
                "grows": verdict(gaps[order[-1]], gaps[order[0]]) == "higher",
                "small": gaps[names[0]],
                "base": gaps[names[1]],
            }
        )
    return rows


def _story_key(early: dict[str, Any], end: dict[str, Any]) -> str:
    """Which statement the data support (see `story`), from the sweep's last length and the end."""
    lower_early, caught_up = (
        early["verdict"] == "lower",
        end["verdict"] in ("cannot_tell", "higher"),
    )
    if early["grows"] and lower_early and caught_up:
        return "later_not_less"
    if early["grows"] and lower_early and end["verdict"] == "lower":
        return "less"
    if not early["grows"] and not lower_early and caught_up:
        return "not_less"
    return "mixed"


def story(inp: Inputs, small: Variant, base: Variant) -> dict[str, Any] | None:
    """Task 2 across training lengths. At a third of the sweep's length and at its end (the sweep's
    curves): does the gap grow with the width (narrowest against widest), and the small and the
    book net's gap; at the variants' length (their own seeds' curves): the small against the book
    net. Then which statement the data support:

    "Early" is the sweep's last length, where its gaps have opened (a third of it can still be noise):

    - "later_not_less": early the gap grows with the width and the small net's is lower, and at the
      variants' length it cannot be told from the book net's, or is higher: smaller nets overfit
      later, not less;
    - "less": as early, and the small net's gap is still lower at the end;
    - "not_less": early the gap does not grow with the width and the small net's is not lower, nor
      at the end;
    - "mixed": anything else (said with the numbers, no conclusion drawn).
    """
    if not _seeded_enough(inp, small, base):
        return None
    sw = inp.sweep
    widths = {tuple(c["hidden"]): n for n, c in sw["configs"].items() if c.get("kind") == "width"}
    names = (
        widths.get(tuple(small.train["recipe"]["hidden"])),
        widths.get(tuple(base.train["recipe"]["hidden"])),
    )
    if None in names or len(widths) < 2:
        return None
    order = [widths[h] for h in sorted(widths, key=lambda h: h[0])]
    rows = _sweep_rows(sw, inp.sweep_curves, order, names)
    long = min(int(small.seed_history["epoch"].max()), int(base.seed_history["epoch"].max()))
    if not rows or long <= rows[-1]["epoch"]:
        return None
    end = {
        "epoch": long,
        "source": "variants",
        "small": _gap_at(small.seed_history, long),
        "base": _gap_at(base.seed_history, long),
    }
    for r in (*rows, end):
        r["verdict"] = verdict(r["small"], r["base"])
    return {
        "rows": rows,
        "early": rows[-1],  # the sweep's last length is where its gaps are open
        "end": end,
        "key": _story_key(rows[-1], end),
        "small": names[0],
        "base": names[1],
        "small_variant": small.name,
        "base_variant": base.name,
    }
