"""The report's figures (matplotlib, no display). Each function writes one PNG and returns nothing;
every word on a figure comes from the report's language (`t`, a birdplane.report.catalog.Catalog)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from birdplane.report import Inputs
    from birdplane.report.catalog import Catalog

DPI = 110
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "figure.dpi": DPI,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "font.size": 10,
        }
    )
    return plt


def _save(fig, path: Path) -> None:
    # no timestamps or software tags in the file: the same figure gives the same bytes
    fig.savefig(path, format="png", metadata={"Software": None}, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)


def samples(
    images: np.ndarray, labels: np.ndarray, classes: list[str], path: Path, per_class: int = 10
) -> None:
    plt = _plt()
    fig, axes = plt.subplots(len(classes), per_class, figsize=(per_class * 0.8, len(classes) * 0.9))
    axes = np.atleast_2d(axes)
    for r, c in enumerate(classes):
        idx = np.flatnonzero(labels == r)[:per_class]
        for j in range(per_class):
            ax = axes[r, j]
            ax.axis("off")
            if j < len(idx):
                ax.imshow(images[idx[j]].transpose(1, 2, 0), interpolation="nearest")
        axes[r, 0].text(-4, 16, c, ha="right", va="center", fontsize=10)
    fig.subplots_adjust(wspace=0.05, hspace=0.05)
    _save(fig, path)


def learning_curves(
    inp: "Inputs", t: "Catalog", column: str, path: Path, shared_y: bool = True
) -> None:
    """Train (dashed) and validation (solid) per epoch, the mean over a variant's seeds; where it ran
    several seeds, a band of ± one standard deviation around each. One panel, or one per variant if
    not shared_y."""
    plt = _plt()
    names = list(inp.variants)
    if shared_y:
        fig, ax = plt.subplots(figsize=(8, 4.2))
        axes = [ax] * len(names)
    else:
        fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.6), squeeze=False)
        axes = list(axes[0])
    for i, (name, ax) in enumerate(zip(names, axes)):
        v = inp.variants[name]
        h, color = v.history, COLORS[i % len(COLORS)]
        band = _seed_band(v.seed_history, [f"train_{column}", f"val_{column}"])
        for split, style, lw in (("train", "--", 1.2), ("val", "-", 1.6)):
            col = f"{split}_{column}"
            ax.plot(
                h["epoch"],
                h[col],
                style,
                color=color,
                lw=lw,
                label=t("figure.curve", name=name, split=t(f"figure.{split}")),
            )
            if band is not None:
                ax.fill_between(
                    band.index,
                    band[(col, "mean")] - band[(col, "std")],
                    band[(col, "mean")] + band[(col, "std")],
                    color=color,
                    alpha=0.15,
                    lw=0,
                )
        ax.set_xlabel(t("figure.epoch"))
        ax.set_ylabel(t(f"figure.{column}"))
        if not shared_y:
            ax.set_title(f"{name} ({v.train['recipe']['loss'].upper()})")
            ax.legend(fontsize=8)
    if shared_y:
        axes[0].legend(ncol=len(names), fontsize=8, loc="lower right")
    fig.tight_layout()
    _save(fig, path)


def _seed_band(curves, columns: list[str]):
    """Mean and std over seeds per epoch (a DataFrame indexed by epoch), or None for one seed."""
    if curves is None or curves["seed"].nunique() < 2:
        return None
    return curves.groupby("epoch")[columns].agg(["mean", "std"]).fillna(0.0)


def lr_study(inp: "Inputs", t: "Catalog", study: dict, path: Path) -> None:
    """Validation accuracy at the end against the learning rate, per loss (mean ± std over seeds),
    and the mean training accuracy per epoch of every (loss, rate)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    curves = inp.sweep_curves
    for i, (loss, by_lr) in enumerate(study["rows"].items()):
        color = COLORS[i % len(COLORS)]
        ok = [(lr, r) for lr, r in sorted(by_lr.items()) if not r["diverged"]]
        if ok:
            axes[0].errorbar(
                [lr for lr, _ in ok],
                [r["val"]["mean"] for _, r in ok],
                yerr=[r["val"]["std"] for _, r in ok],
                fmt="o-",
                color=color,
                capsize=3,
                label=loss.upper(),
            )
        for j, (lr, r) in enumerate(ok):
            mean = curves[curves["config"] == r["source"]].groupby("epoch")["train_accuracy"].mean()
            axes[1].plot(
                mean.index,
                mean.values,
                ["-", "--", ":", "-."][j % 4],
                color=color,
                label=t("figure.lr_curve", loss=loss.upper(), lr=t.rate(lr)),
            )
    axes[0].set_xscale("log")
    axes[0].set_xlabel(t("figure.learning_rate"))
    axes[0].set_ylabel(t("figure.val_accuracy"))
    axes[0].legend(fontsize=8)
    axes[1].axhline(inp.fit_threshold, ls=":", color="grey")
    axes[1].set_xlabel(t("figure.epoch"))
    axes[1].set_ylabel(t("figure.train_accuracy_mean"))
    axes[1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    _save(fig, path)


def story(inp: "Inputs", t: "Catalog", story: dict, path: Path) -> None:
    """The gap per epoch: every width of the sweep (thin, mean over seeds, darker = wider) and the
    small and the book variant to their last epoch (thick, ± one std over seeds)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4.2))
    curves = inp.sweep_curves
    widths = [
        (n, c["hidden"][0]) for n, c in inp.sweep["configs"].items() if c.get("kind") == "width"
    ]
    cmap = plt.get_cmap("viridis")
    for i, (n, _) in enumerate(sorted(widths, key=lambda w: w[1])):
        c = curves[curves["config"] == n]
        gap = (c["train_accuracy"] - c["val_accuracy"]).groupby(c["epoch"]).mean()
        ax.plot(
            gap.index,
            gap.values,
            color=cmap(i / max(1, len(widths) - 1)),
            lw=0.9,
            alpha=0.8,
            label=n,
        )
    for name, color in ((story["small_variant"], COLORS[1]), (story["base_variant"], COLORS[0])):
        c = inp.variants[name].seed_history
        g = (
            (c["train_accuracy"] - c["val_accuracy"])
            .groupby(c["epoch"])
            .agg(["mean", "std"])
            .fillna(0.0)
        )
        ax.plot(
            g.index,
            g["mean"],
            color=color,
            lw=2.2,
            label=f"{name} ({inp.variants[name].train['model']})",
        )
        ax.fill_between(
            g.index, g["mean"] - g["std"], g["mean"] + g["std"], color=color, alpha=0.2, lw=0
        )
    for r in (*story["rows"], story["end"]):
        ax.axvline(r["epoch"], ls=":", color="grey", lw=0.8)
    ax.set_xlabel(t("figure.epoch"))
    ax.set_ylabel(t("figure.gap_epoch"))
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    _save(fig, path)


def shift_curves(inp: "Inputs", t: "Catalog", path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (name, v) in enumerate(inp.variants.items()):
        ring = v.shift["accuracy_by_shift"]
        ax.plot(
            [int(r) for r in ring],
            list(ring.values()),
            "o-",
            color=COLORS[i % len(COLORS)],
            label=name,
        )
    ax.axhline(1 / len(inp.stats["classes"]), ls=":", color="grey")
    ax.set_xlabel(t("figure.shift"))
    ax.set_ylabel(t("figure.val_accuracy"))
    ax.legend()
    fig.tight_layout()
    _save(fig, path)


def shift_grids(inp: "Inputs", t: "Catalog", path: Path) -> None:
    plt = _plt()
    names = [n for n, v in inp.variants.items() if v.shift_grid is not None]
    fig, axes = plt.subplots(
        1,
        len(names),
        figsize=(3.4 * len(names) + 1, 3.4),
        squeeze=False,
        sharey=True,
        layout="constrained",
    )
    for i, (ax, name) in enumerate(zip(axes[0], names)):
        g = inp.variants[name].shift_grid
        g = g[g["mode"] == g["mode"].iloc[0]]
        table = g.pivot(index="dy", columns="dx", values="accuracy")
        k = int(table.columns.max())
        im = ax.imshow(
            table.to_numpy(),
            origin="upper",
            extent=(-k - 0.5, k + 0.5, k + 0.5, -k - 0.5),
            vmin=1 / len(inp.stats["classes"]),
            vmax=1,
            cmap="viridis",
        )
        ax.set_title(name)
        ax.set_xlabel(t("figure.dx"))
        if i == 0:
            ax.set_ylabel(t("figure.dy"))
        ax.grid(False)
    fig.colorbar(im, ax=list(axes[0]), shrink=0.9, label=t("figure.val_accuracy"))
    _save(fig, path)


def confusion(inp: "Inputs", t: "Catalog", path: Path) -> None:
    plt = _plt()
    names = list(inp.variants)
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        cm = np.array(inp.variants[name].eval["confusion_matrix"]["rows_actual_cols_predicted"])
        labels = inp.variants[name].eval["confusion_matrix"]["labels"]
        ax.imshow(cm, cmap="Blues")
        for (r, c), n in np.ndenumerate(cm):
            ax.text(
                c,
                r,
                str(n),
                ha="center",
                va="center",
                color="white" if n > cm.max() / 2 else "black",
            )
        ax.set_xticks(range(len(labels)), labels, rotation=45 if len(labels) > 3 else 0)
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel(t("figure.predicted"))
        ax.set_ylabel(t("figure.actual"))
        ax.set_title(name)
        ax.grid(False)
    fig.tight_layout()
    _save(fig, path)


def sweep(inp: "Inputs", t: "Catalog", path: Path) -> None:
    """Validation accuracy and train-minus-validation gap against parameters, mean ± std over seeds:
    one line through the widths, the deep net and each regularized book net as its own marker."""
    from birdplane.report.findings import capacity

    plt = _plt()
    configs = capacity(inp.sweep["configs"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, label in (
        (axes[0], "val_accuracy", t("figure.accuracy")),
        (axes[1], "overfit_gap", t("figure.gap")),
    ):
        widths = [
            (c["n_parameters"], c[key]["mean"], c[key]["std"], n)
            for n, c in configs.items()
            if c["kind"] == "width"
        ]
        x, y, e, names = zip(*widths)
        ax.errorbar(
            x,
            y,
            yerr=e,
            fmt="o-",
            color=COLORS[0],
            capsize=3,
            label=t("figure.widths", first=names[0][1:], last=names[-1][1:]),
        )
        if key == "val_accuracy":
            tr = [
                (c["n_parameters"], c["train_accuracy"]["mean"])
                for c in configs.values()
                if c["kind"] == "width"
            ]
            ax.plot(*zip(*tr), "o--", color=COLORS[0], alpha=0.4, label=t("figure.train_same_nets"))
        others = [(n, c) for n, c in configs.items() if c["kind"] != "width"]
        for i, (n, c) in enumerate(others):
            # regularized nets share the book net's parameter count: spread them a little to be seen
            x_pos = c["n_parameters"] * (
                1 + 0.12 * (i - (len(others) - 1) / 2) * (c["kind"] == "regularizer")
            )
            ax.errorbar(
                [x_pos],
                [c[key]["mean"]],
                yerr=[c[key]["std"]],
                fmt="sD^vP*X"[i % 7],
                color=COLORS[(i + 1) % len(COLORS)],
                capsize=3,
                label=n,
                ms=7,
                alpha=0.85,
            )
        ax.set_xscale("log")
        ax.set_xlabel(t("figure.parameters"))
        ax.set_ylabel(label)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
