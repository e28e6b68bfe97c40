"""The report's languages are data: every catalog has the same keys and placeholders, every key the
document uses exists and renders from small synthetic inputs (no pipeline) that take every branch,
and a third language is one file."""

from __future__ import annotations

import string
from pathlib import Path

import pandas as pd
import pytest

from birdplane.report import Inputs, Variant, analyse, build_document, languages, phrases
from birdplane.summary import spread as summary_spread
from birdplane.report.catalog import LANG_DIR, CatalogError, placeholders

EPOCHS = 12
CLASSES = ["airplane", "bird"]
FIGURES = {
    k: f"{k}.png"
    for k in ("samples", "accuracy", "loss", "confusion", "shift", "shift_grid", "sweep")
}
LANGS = languages()


def history(best_val: float, best_epoch: int, final_val: float, fits: bool) -> pd.DataFrame:
    """Training accuracy climbs (to 1.0 by epoch 5 when the net fits, else to at most 0.9);
    validation accuracy is flat except for one best epoch, so the baseline's noise is ~0."""
    epochs = list(range(1, EPOCHS + 1))
    train = [min(1.0, 0.5 + 0.1 * e) if fits else min(0.9, 0.5 + 0.03 * e) for e in epochs]
    val = [best_val if e == best_epoch else final_val for e in epochs]
    return pd.DataFrame(
        {
            "epoch": epochs,
            "train_accuracy": train,
            "val_accuracy": val,
            "train_loss": [1 / e for e in epochs],
            "val_loss": [1.2 / e for e in epochs],
        }
    )


def seeds(val: float, gap: float, std: float) -> dict:
    spread = lambda m: {"mean": m, "std": std, "n": 3, "values": [m - std, m, m + std]}  # noqa: E731
    return {
        "seeds": [0, 1, 2],
        "train_accuracy": spread(val + gap),
        "val_accuracy": spread(val),
        "overfit_gap": spread(gap),
        "best_val_accuracy": spread(val),
        "best_epoch": spread(5),
    }


def shift(a0: float, drop: float, k: int = 2) -> dict:
    by = {str(r): a0 - drop * r / k for r in range(k + 1)}
    return {"max_shift": k, "accuracy_at_0": a0, "accuracy_by_shift": by}


def variant(
    name: str,
    train: float,
    val: float,
    *,
    hidden=(512,),
    loss="nll",
    best=(None, 2),
    fits=True,
    sh: dict | None = None,
    seed: dict | None = None,
    log: dict | None = None,
) -> Variant:
    best_val, best_epoch = best
    n = 3072 * hidden[0] + hidden[0] + 2 * hidden[0] + 2
    return Variant(
        name=name,
        train={
            "model": f"3072-{hidden[0]}-2",
            "recipe": {
                "loss": loss,
                "epochs": EPOCHS,
                "lr": 0.01,
                "batch_size": 64,
                "hidden": list(hidden),
            },
            **({"seeds": seed} if seed else {}),
        },
        history=history(best_val if best_val is not None else val, best_epoch, val, fits),
        eval={
            "train_accuracy": train,
            "val_accuracy": val,
            "overfit_gap": train - val,
            "n_parameters": n,
            "val_ece": 0.05,
            "val_loss": 0.45,
            "val_nll": 0.46,
            "per_class": {
                c: {"precision": 0.8, "recall": 0.81, "f1": 0.805, "support": 1000} for c in CLASSES
            },
        },
        shift=sh,
        shift_grid=None,
        log=log
        if log is not None
        else {
            "mlflow_run_id": f"run-{name}",
            "mlflow_experiment": "birdplane",
            "train_seconds": 12.34,
            "git_commit": "abc123",
            "finished": "2025-01-01T00:00:00",
            "versions": {"torch": "2.5.0", "numpy": "2.1.0"},
            "machine": {"device": "cpu", "gpu": None, "processor": "x86_64", "torch_threads": 2},
        },
    )


def stat(mean, std, n=3):
    return {"mean": mean, "std": std, "n": n, "values": [mean] * n}


def config(kind, hidden, gap, val, gap_std=0.01, val_std=0.01, epochs_trained=EPOCHS):
    return {
        "kind": kind,
        "model": f"3072-{hidden[0]}-2",
        "hidden": list(hidden),
        "n_parameters": 3074 * hidden[0],
        "train_accuracy": stat(val + gap, 0.01),
        "val_accuracy": stat(val, val_std),
        "overfit_gap": stat(gap, gap_std),
        "best_epoch": stat(7, 1.0),
        "epochs_trained": stat(epochs_trained, 0.0),
    }


def sweep(grows: bool, agrees: bool, regularizers: bool) -> dict:
    configs = {
        "w8": config("width", [8], 0.05, 0.80),
        "w32": config("width", [32], 0.08, 0.81),
        "w512": config("width", [512], 0.15 if grows else 0.06, 0.80),
    }
    if regularizers:
        configs["weight_decay"] = config(
            "regularizer", [512], 0.155 if grows else 0.065, 0.80
        )  # same, same
        configs["early_stopping"] = config(
            "regularizer", [512], 0.02, 0.84, epochs_trained=8.7
        )  # lower, higher
        configs["dropout"] = config("regularizer", [512], 0.30, 0.70)  # higher, lower
    return {
        "seeds": [0, 1, 2],
        "epochs": EPOCHS,
        "configs": configs,
        "small_rule": {
            "pick": "w32",
            "best": "w32",
            "threshold": 0.80,
            "hidden": [32] if agrees else [8],
        },
    }


def stats(download_in_stats: bool) -> dict:
    return {
        "classes": CLASSES,
        "n_train": 10000,
        "n_val": 2000,
        "train_per_class": {c: 5000 for c in CLASSES},
        "mean": [0.49, 0.48, 0.45],
        "std": [0.25, 0.24, 0.26],
        "source": {
            "md5": "c58f30108f718f92721af3b95e74349a",
            "bytes": 170498071,
            **({"url": "https://example.org/cifar.tar.gz"} if download_in_stats else {}),
        },
    }


def scenario(name: str) -> tuple[Inputs, dict[str, str]]:
    """Inputs that between them take every branch of the findings (see the comments per scenario)."""
    if name.startswith("seeded_"):
        return seeded_scenario(name)
    roles = {
        "baseline": "nll",
        "mse": "mse",
        "small": "small",
        "augmented": "augmented",
        "cnn": "cnn",
    }
    params = {"shift": {"summary_shift": 1}, "sweep": {"base_width": 512}, "report": {"lang": "en"}}
    figures = dict(FIGURES)
    if name == "everything":
        # task 1: MSE higher, its gap lower, it never reaches the fit threshold; task 2: smaller gap
        # (means over seeds), same accuracy; early stopping is the best fix; the sweep's gap grows,
        # the rule agrees, regularizers of every verdict; translation with one leader everywhere
        vs = [
            variant(
                "nll", 1.0, 0.80, best=(0.82, 2), sh=shift(0.80, 0.30), seed=seeds(0.80, 0.20, 0.01)
            ),
            variant("mse", 0.84, 0.82, loss="mse", fits=False, sh=shift(0.82, 0.30)),
            variant(
                "small",
                0.85,
                0.80,
                hidden=(32,),
                sh=shift(0.80, 0.30),
                seed=seeds(0.80, 0.05, 0.01),
            ),
            variant("augmented", 0.90, 0.80, sh=shift(0.80, 0.10)),
            variant("cnn", 0.90, 0.85, hidden=(32,), sh=shift(0.85, 0.05)),
        ]
        sw, download = (
            sweep(grows=True, agrees=True, regularizers=True),
            {"url": "file:///tmp/c.tar.gz", "md5": "x"},
        )
    elif name == "minimal":
        # no seeds, no sweep, no shift test, no samples figure, no download log; task 1 the same,
        # MSE's gap higher; task 2 not reduced, lower accuracy; nothing helped; a run without a GPU
        # name, commit or training time
        log = {
            "mlflow_run_id": "r",
            "finished": "2025-01-02",
            "machine": {"device": "cpu", "processor": "arm"},
            "git_commit": None,
            "train_seconds": None,
        }
        vs = [
            variant("nll", 0.95, 0.80, best=(0.802, 8), log=log),
            variant("mse", 1.0, 0.801, loss="mse", log=log),
            variant("small", 1.0, 0.79, hidden=(32,), log=log),
        ]
        roles.update(augmented="", cnn="")
        figures = {
            k: v for k, v in figures.items() if k not in ("samples", "sweep", "shift", "shift_grid")
        }
        sw, download = None, None
    elif name == "variant_fix":
        # task 1 lower, same gap; task 2 reduced with higher accuracy and the small net as the fix;
        # the sweep's gap does not grow, the rule disagrees, no regularizers and no sweep figure;
        # translation without one leader, no shift-grid figure
        vs = [
            variant("nll", 1.0, 0.80, best=(0.802, 8), sh=shift(0.80, 0.30)),
            variant("mse", 0.98, 0.78, loss="mse", sh=shift(0.78, 0.30)),
            variant("small", 0.87, 0.82, hidden=(32,), sh=shift(0.82, 0.30)),
            variant("augmented", 0.90, 0.86, sh=shift(0.86, 0.10)),
            variant("cnn", 0.90, 0.85, hidden=(32,), sh=shift(0.85, 0.01)),
        ]
        figures = {k: v for k, v in figures.items() if k not in ("sweep", "shift_grid")}
        sw, download = sweep(grows=False, agrees=False, regularizers=False), None
    elif name == "baseline_shift_only":
        # only the baseline was shift-tested: the summary names it, no translation section
        vs = [
            variant("nll", 1.0, 0.80, best=(0.82, 2), sh=shift(0.80, 0.30)),
            variant("mse", 1.0, 0.80, loss="mse"),
            variant("small", 1.0, 0.80, hidden=(32,)),
        ]
        roles.update(augmented="", cnn="")
        sw, download = None, {"url": "https://mirror.example/c.tar.gz"}
    elif name == "no_comparison":
        # every variant shift-tested but no augmented or cnn role: translation without its table
        vs = [
            variant("nll", 1.0, 0.80, best=(0.82, 2), sh=shift(0.80, 0.30)),
            variant("mse", 1.0, 0.80, loss="mse", sh=shift(0.80, 0.3)),
            variant("small", 1.0, 0.80, hidden=(32,), sh=shift(0.80, 0.3)),
        ]
        roles.update(augmented="", cnn="")
        sw, download = None, None
    else:
        raise ValueError(name)
    inp = Inputs(
        stats=stats(download_in_stats=name != "minimal"),
        variants={v.name: v for v in vs},
        params=params,
        roles=roles,
        fit_threshold=0.95,
        summary_shift=params["shift"]["summary_shift"],
        base_width=params["sweep"]["base_width"],
        sweep=sw,
        download=download,
    )
    return inp, figures


SWEEP_EPOCHS = 6  # shorter than the variants' EPOCHS: the task-2 story needs a longer length


def seed_curves(
    fit_epochs: list[int | None], val: float, gaps: tuple[float, float]
) -> pd.DataFrame:
    """Every seed's per-epoch curves (seed, epoch, ...) over EPOCHS: seed k's training accuracy
    reaches 0.95 at fit_epochs[k] (never if None); the gap (train - val) at the last epoch is
    gaps[1] and gaps[0] at a third of SWEEP_EPOCHS, the seeds 0.002 apart."""
    rows = []
    for k, fit in enumerate(fit_epochs):
        for e in range(1, EPOCHS + 1):
            gap = (gaps[0] if e <= SWEEP_EPOCHS // 3 else gaps[1]) + 0.002 * (k - 1)
            train = 0.96 if fit and e >= fit else 0.90
            rows.append(
                {
                    "seed": k,
                    "epoch": e,
                    "train_loss": 0.1,
                    "train_accuracy": train,
                    "val_loss": 0.2,
                    "val_accuracy": train - gap,
                }
            )
    return pd.DataFrame(rows)


def seed_runs(val: float, gap: float, std: float, ece: float, grad: tuple[float, float]) -> dict:
    runs = [
        {
            "seed": k,
            "val_accuracy": val + std * (k - 1),
            "best_val_accuracy": val + 0.01 + std * (k - 1),
            "overfit_gap": gap + std * (k - 1),
            "val_ece": ece + std * (k - 1),
            "logit_grad": {"misclassified": grad[0] * (1 + 0.01 * k), "confidently_wrong": grad[1]},
        }
        for k in range(3)
    ]
    # the spreads as the training stage writes them (train.variant.variant_metrics) from its runs
    return {
        **seeds(val, gap, std),
        "runs": runs,
        **{
            k: summary_spread([r[k] for r in runs])
            for k in ("val_accuracy", "best_val_accuracy", "overfit_gap", "val_ece")
        },
    }


def lr_configs(
    nll: dict[float, float], mse: dict[float, float | None], grads: dict[str, tuple]
) -> dict:
    """The lr study's configurations: val accuracy per rate (None: diverged); nll at 0.01 is w512's."""
    out = {}
    for loss, by_lr in (("nll", nll), ("mse", mse)):
        for lr, val in by_lr.items():
            name = f"{loss}_lr{lr:g}"
            if loss == "nll" and lr == 0.01:
                out[name] = {"kind": "lr", "loss": loss, "lr": lr, "same_as": "w512"}
            elif val is None:
                out[name] = {"kind": "lr", "loss": loss, "lr": lr, "diverged": {"epoch": 3}}
            else:
                out[name] = {
                    **config("lr", [512], 0.05, val),
                    "loss": loss,
                    "lr": lr,
                    "logit_grad": {
                        "misclassified": stat(grads[loss][0], 0.01),
                        "confidently_wrong": stat(grads[loss][1], 0.01),
                        "share_confidently_wrong": stat(0.1 + lr, 0.02),
                    },
                }
    return out


def sweep_curves(
    configs: dict, gaps: dict[str, tuple[float, float]], fits: dict[str, list]
) -> pd.DataFrame:
    frames = []
    for name, c in configs.items():
        if c.get("same_as") or c.get("diverged") or c.get("read_from"):
            continue
        cur = seed_curves(fits.get(name, [3, 3, 4]), 0.8, gaps.get(name, (0.01, 0.05)))
        frames.append(cur[cur["epoch"] <= SWEEP_EPOCHS].assign(config=name))
    return pd.concat(frames)


def seeded_scenario(name: str) -> tuple[Inputs, dict[str, str]]:
    """nll, mse and small with several seeds, the lr study and the sweep's curves: the task-1 verdicts
    over seeds, the gradient explanation and the task-2 story, one branch per scenario:

    - seeded_later: MSE cannot be told apart, fits more slowly (one seed never), its gradient flat
      where far off; a diverged rate; early stopping read off w512; smaller nets overfit later
    - seeded_less: MSE higher and faster, gradient smaller evenly; the small net overfits less
    - seeded_same: MSE lower, fit cannot tell; the small net does not overfit less
    - seeded_mixed: the lengths disagree
    """
    grads = {
        "seeded_later": {"nll": (0.8, 1.2), "mse": (0.2, 0.05)},
        "seeded_less": {"nll": (0.8, 1.2), "mse": (0.4, 0.6)},
    }.get(name, {"nll": (0.8, 1.2), "mse": (0.4, 0.6)})
    task1 = {
        "seeded_later": (0.80, 0.80, [3, 3, 4], [8, 9, None]),
        "seeded_less": (0.80, 0.85, [8, 9, 9], [2, 2, 3]),
        "seeded_same": (0.85, 0.80, [3, 4, 5], [3, 5, 4]),
        "seeded_mixed": (0.80, 0.80, [3, 3, 4], [3, 3, 4]),
    }
    nll_val, mse_val, nll_fit, mse_fit = task1[name]
    # gap of the small net / the book net at epoch 2 (= SWEEP_EPOCHS // 3), at 6, and at EPOCHS (variants)
    story = {
        "seeded_later": ((0.01, 0.03), (0.05, 0.08), 0.18, 0.18),
        "seeded_less": ((0.01, 0.03), (0.05, 0.08), 0.10, 0.18),
        "seeded_same": ((0.05, 0.05), (0.08, 0.08), 0.18, 0.18),
        "seeded_mixed": ((0.05, 0.03), (0.08, 0.06), 0.10, 0.18),
    }[name]
    small_gap, base_gap = story[2], story[3]
    # validation accuracy per rate of NLL (0.01 is w512's, 0.80) and MSE (None: diverged); in
    # seeded_same the book's rate 0.01 is best for both
    rates = {
        "seeded_less": ({0.01: 0.80, 0.1: 0.81}, {0.01: 0.78, 0.1: 0.86, 1.0: None}),
        "seeded_same": ({0.01: 0.80, 0.1: 0.79}, {0.01: 0.80, 0.1: 0.78}),
    }.get(
        name, ({0.01: 0.80, 0.1: 0.805}, {0.01: 0.78, 0.1: 0.80, 1.0: None})
    )  # NLL's two rates tie

    def seeded(vname, val, gap, fits, hidden=(512,), loss="nll", ece=0.05):
        v = variant(vname, val + gap, val, hidden=hidden, loss=loss, sh=shift(val, 0.3))
        v.train["seeds"] = seed_runs(val, gap, 0.005, ece, grads.get(loss, (0.5, 0.5)))
        v.seed_history = seed_curves(fits, val, (gap, gap))
        return v

    vs = [
        seeded("nll", nll_val, base_gap, nll_fit, ece=0.10),
        seeded("mse", mse_val, 0.10, mse_fit, loss="mse"),
        seeded("small", 0.80, small_gap, [4, 4, 5], hidden=(32,)),
    ]
    widths = {
        "w8": config("width", [8], 0.01, 0.80),
        "w32": config("width", [32], 0.03, 0.81),
        "w512": {
            **config("width", [512], 0.06, 0.80),
            "logit_grad": {
                "misclassified": stat(grads["nll"][0], 0.01),
                "confidently_wrong": stat(grads["nll"][1], 0.01),
                "share_confidently_wrong": stat(0.11, 0.02),
            },
        },
    }
    configs = {
        **widths,
        "early_stopping": {
            **config("regularizer", [512], 0.02, 0.81, epochs_trained=4),
            "read_from": "w512",
        },
        **lr_configs(*rates, grads),
    }
    fits = {"mse_lr0.01": [None, None, None], "mse_lr0.1": [3, 4, 4]}
    if name == "seeded_mixed":  # no rate fits within the study
        fits = {n: [None, None, None] for n in ("w512", "nll_lr0.1", "mse_lr0.01", "mse_lr0.1")}
    early, late = {"w8": (0.05, 0.08) if name == "seeded_same" else (0.005, 0.01)}, {}
    early["w32"], early["w512"] = (story[0][0], story[1][0]), (story[0][1], story[1][1])
    curves = sweep_curves(configs, {**early, **late}, fits)
    sw = {
        "seeds": [0, 1, 2],
        "epochs": SWEEP_EPOCHS,
        "configs": configs,
        "small_rule": {"pick": "w32", "best": "w32", "threshold": 0.80, "hidden": [32]},
    }
    roles = {"baseline": "nll", "mse": "mse", "small": "small", "augmented": "", "cnn": ""}
    params = {"shift": {"summary_shift": 1}, "sweep": {"base_width": 512}, "report": {"lang": "en"}}
    figures = {**FIGURES, "lr_study": "lr_study.png", "story": "story.png"}
    inp = Inputs(
        stats=stats(download_in_stats=True),
        variants={v.name: v for v in vs},
        params=params,
        roles=roles,
        fit_threshold=0.95,
        summary_shift=1,
        base_width=512,
        sweep=sw,
        sweep_curves=curves,
        book_lr=0.01,
    )
    return inp, figures


SEEDED = ["seeded_later", "seeded_less", "seeded_same", "seeded_mixed"]
SCENARIOS = [
    "everything",
    "minimal",
    "variant_fix",
    "baseline_shift_only",
    "no_comparison",
    *SEEDED,
]


def test_the_scenarios_take_every_branch_of_the_findings():
    """Guards the fixture: if a scenario stops taking the branch it is meant to, this says which."""
    f = {s: analyse(scenario(s)[0]) for s in SCENARIOS}
    assert {f[s]["task1"]["val"] for s in SCENARIOS} >= {"same", "higher", "lower"}
    assert {f[s]["task1"]["gap"] for s in SCENARIOS} >= {"same", "higher", "lower"}
    assert {f[s]["task2"]["reduced"] for s in SCENARIOS} == {True, False}
    assert {f[s]["task2"]["val"] for s in SCENARIOS} >= {"same", "higher", "lower"}
    assert {f[s]["mse"]["fit_epoch"] is None for s in SCENARIOS} == {True, False}
    sweeps = [f[s]["sweep"] for s in SCENARIOS if f[s]["sweep"]]
    assert {sw["gap_grows"] for sw in sweeps} == {True, False}
    assert {sw["small_agrees"] for sw in sweeps} == {True, False}
    regs = [r for sw in sweeps for r in sw["regularizers"].values()]
    assert (
        {r["gap_change"] for r in regs}
        == {r["val_change"] for r in regs}
        == {"same", "higher", "lower"}
    )
    assert {r["epochs_trained"] < EPOCHS for r in regs} == {True, False}
    translations = [f[s]["translation"] for s in SCENARIOS if f[s]["translation"]]
    assert {t["best_everywhere"] is None for t in translations} == {True, False}
    assert (
        f["everything"]["best_fix"]["what"] == "early_stopping"
        and f["everything"]["best_fix"]["helped"]
    )
    assert (
        f["variant_fix"]["best_fix"]["what"] == "variant:small"
        and f["variant_fix"]["best_fix"]["helped"]
    )
    assert not f["minimal"]["best_fix"]["helped"]
    # over seeds: task 1's verdicts, the learning-rate study and the task-2 story
    t1 = [f[s]["task1_seeds"] for s in SEEDED]
    assert {t["verdicts"]["val_accuracy"] for t in t1} == {"cannot_tell", "higher", "lower"}
    assert {t["verdicts"]["fit"] for t in t1} == {"faster", "slower", "cannot_tell"}
    assert f["seeded_later"]["task1_seeds"]["mse"]["fit"]["n_fit"] == 2  # one seed never fits
    lr = [f[s]["lr_study"] for s in SEEDED]
    assert {x["why"]["flat"] for x in lr} == {True, False}
    assert f["seeded_less"]["lr_study"]["best"] == {"nll": 0.1, "mse": 0.1}
    assert f["seeded_later"]["lr_study"]["rows"]["mse"][1.0]["diverged"]
    assert {x["best_is_book"] for x in lr} == {True, False}
    assert {bool(x["ties"]["nll"]) for x in lr} == {True, False}
    assert {x["fastest"]["mse"] is None for x in lr} == {True, False}
    assert {f[s]["story"]["key"] for s in SEEDED} == {"later_not_less", "less", "not_less", "mixed"}
    assert all(
        f[s]["task1_seeds"] is None and f[s]["story"] is None for s in SCENARIOS if s not in SEEDED
    )


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("name", SCENARIOS)
def test_every_branch_renders_in_every_language(name, lang, tmp_path):
    from birdplane.report import render

    inp, figures = scenario(name)
    title, blocks = build_document(inp, lang, figures)
    for fig in figures.values():
        (tmp_path / fig).write_bytes(b"\x89PNG")
    md, html = render(title, blocks, lang, tmp_path)
    text = md.split("```yaml")[0]  # the params listing is data, not a sentence
    assert "{" not in text and "}" not in text, "a placeholder was left unfilled"
    assert html.startswith(f'<!DOCTYPE html>\n<html lang="{lang}">')


def fields(entry) -> set[tuple[str, str, str | None]]:
    """(name, format spec, conversion) of every placeholder, parsed the way str.format does."""
    texts = [entry] if isinstance(entry, str) else entry
    return {
        (name, spec, conv)
        for text in texts
        for _, name, spec, conv in string.Formatter().parse(text)
        if name is not None
    }


def flat(lang: str, directory: Path = LANG_DIR) -> dict:
    import tomllib

    def walk(prefix: str, table: dict) -> dict:
        out = {}
        for k, v in table.items():
            out.update(walk(f"{prefix}{k}.", v) if isinstance(v, dict) else {prefix + k: v})
        return out

    with (directory / f"{lang}.toml").open("rb") as f:
        return walk("", tomllib.load(f))


def test_the_shipped_languages_are_the_catalog_files():
    assert {"en", "de"} <= set(LANGS) and LANGS == sorted(p.stem for p in LANG_DIR.glob("*.toml"))


@pytest.mark.parametrize("lang", LANGS)
def test_every_catalog_has_the_same_keys_and_placeholders_as_the_english_one(lang):
    en, other = flat("en"), flat(lang)
    assert sorted(other) == sorted(en)
    for key, entry in en.items():
        assert type(other[key]) is type(entry), key
        if isinstance(entry, list):
            assert len(other[key]) == len(entry), key
        assert fields(other[key]) == fields(entry), key
        assert all(spec == "" and conv is None for _, spec, conv in fields(entry)), (
            f"{key}: plain {{name}} only"
        )


@pytest.mark.parametrize("lang", LANGS)
def test_the_document_uses_every_key_and_only_keys_that_exist(lang):
    """Rendering every scenario with one catalog raises KeyError on a key the catalog lacks; what the
    scenarios looked up is then every key there is, so no entry is dead."""
    t = phrases(lang)
    for name in SCENARIOS:
        inp, figures = scenario(name)
        build_document(inp, t, figures)
    # the figures' words are drawn, not written: test_figures_speak_the_reports_language looks them up
    assert sorted(k for k in set(t.entries) - t.used if not k.startswith("figure.")) == []


def _drawn_texts(inp, t, folder: Path, monkeypatch) -> list[str]:
    """Every text matplotlib draws on the report's figures for `inp` in the language of `t`."""
    import numpy as np
    from matplotlib.text import Text

    from birdplane.report import figures
    from birdplane.report.inputs import draw_figures

    texts, save = [], figures._save

    def keep_texts(fig, path):
        texts.extend(x.get_text() for x in fig.findobj(Text) if x.get_text())
        save(fig, path)

    monkeypatch.setattr(figures, "_save", keep_texts)
    folder.mkdir()
    images, labels = np.zeros((4, 3, 32, 32), dtype=np.uint8), np.array([0, 1, 0, 1])
    made = draw_figures(inp, t, images, labels, ["airplane", "bird"], folder)
    assert {"sweep", "lr_study", "story", "shift", "shift_grid"} <= made.keys()
    return texts


def test_figures_speak_the_reports_language(tmp_path, monkeypatch):
    """Every axis label and legend word comes from the catalog: the German figures have none of the
    English words, and the figures look up every figure.* entry there is."""
    inp, _ = scenario(
        "seeded_later"
    )  # every figure: the sweep, the learning-rate study, the story, the shifts
    for v in inp.variants.values():  # what only the figures read
        v.eval["confusion_matrix"] = {
            "labels": ["airplane", "bird"],
            "rows_actual_cols_predicted": [[9, 1], [2, 8]],
        }
        v.shift_grid = pd.DataFrame(
            [
                {"mode": "fill", "dx": dx, "dy": dy, "accuracy": 0.9 - 0.1 * abs(dx * dy)}
                for dx in (-1, 0, 1)
                for dy in (-1, 0, 1)
            ]
        )
    en, de = phrases("en"), phrases("de")
    english = _drawn_texts(inp, en, tmp_path / "en", monkeypatch)
    german = _drawn_texts(inp, de, tmp_path / "de", monkeypatch)
    assert sorted(k for k in en.entries if k.startswith("figure.") and k not in en.used) == []
    # ("Training" is German too)
    words = {
        "epoch",
        "accuracy",
        "validation",
        "predicted",
        "actual",
        "parameters",
        "pixels",
        "learning rate",
        "hidden layer",
        "mean over seeds",
        "train",
        "val",
        "same nets",
        "is right",
        "is down",
    }
    assert any("validation accuracy" in x for x in english)
    leaked = sorted(
        {
            w
            for x in german
            for w in words
            if w in x.lower().replace("(", " ").replace(")", " ").split()
            or (" " in w and w in x.lower())
        }
    )
    assert leaked == [], f"English on the German figures: {leaked}"
    assert any("Validierungsgenauigkeit" in x for x in german) and any(
        "Epoche" in x for x in german
    )


def test_a_third_language_is_one_file(tmp_path):
    text = (LANG_DIR / "en.toml").read_text(encoding="utf-8")
    text = text.replace('title = "Birds vs airplanes', 'title = "Oiseaux ou avions')
    text = text.replace('number.decimal = "."', 'number.decimal = ","').replace(
        'number.thousands = ","', 'number.thousands = " "'
    )
    (tmp_path / "fr.toml").write_text(text, encoding="utf-8")
    assert languages(tmp_path) == ["fr"]
    inp, figures = scenario("everything")
    title, blocks = build_document(inp, phrases("fr", tmp_path), figures)
    assert title.startswith("Oiseaux ou avions")
    table = next(
        b
        for b in blocks
        if b.kind == "table" and b.header[0] == "variant" and "val. acc." in b.header
    )
    assert table.rows[0][2] == "80,00 %"  # numbers follow the file's decimal mark
    from birdplane.report import render

    for fig in figures.values():
        (tmp_path / fig).write_bytes(b"\x89PNG")
    _, html = render(title, blocks, "fr", tmp_path)
    assert (
        html.startswith('<!DOCTYPE html>\n<html lang="fr">') and "<title>Oiseaux ou avions" in html
    )


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda s: s.replace(
                'title = "Birds vs airplanes: NLLLoss, MSELoss and a smaller net"\n', ""
            ),
            "missing title",
        ),
        (lambda s: s + 'extra = "x"\n', "unknown extra"),
        (
            lambda s: s.replace("{verdict}.", "{verdikt}."),
            "summary.task1 must use exactly {mse}, {nll}, {verdict}",
        ),
        (
            lambda s: s.replace("by {k} pixels to {ak}", "by {k:d} pixels to {ak}"),
            "summary.shift: {k:d} is not a plain",
        ),
        (lambda s: s.replace('"lower than"', '["lower than"]'), "relative.lower must be text"),
        (lambda s: s.replace('title = "Birds', "title = Birds"), "fix the TOML syntax"),
    ],
)
def test_a_catalog_that_does_not_fit_is_refused_in_one_line(tmp_path, edit, message):
    (tmp_path / "xx.toml").write_text(
        edit((LANG_DIR / "en.toml").read_text(encoding="utf-8")), encoding="utf-8"
    )
    with pytest.raises(CatalogError) as e:
        phrases("xx", tmp_path)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_an_unknown_language_names_the_ones_there_are():
    with pytest.raises(CatalogError, match=r"no report language 'xx': choose one of de, en"):
        phrases("xx")
    with pytest.raises(CatalogError, match="no report language '../en'"):
        phrases("../en")


def test_importing_the_report_package_stays_light():
    """Loading a catalog (e.g. to list the languages a config may name) pulls in no pandas, numpy,
    matplotlib, jinja2 or yaml: those load when a report is built, rendered or drawn."""
    import subprocess
    import sys

    code = (
        "import sys, birdplane.report; birdplane.report.languages(); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'pandas', 'numpy', 'matplotlib', 'jinja2', 'yaml'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _with_a_third_loss(inp, drop: str | None = None):
    """The study's configurations and curves with every MSE run copied as a loss named 'hinge'
    (and those of `drop` removed)."""
    configs, curves = inp.sweep["configs"], inp.sweep_curves
    for name in [n for n, c in configs.items() if c.get("kind") == "lr" and c["loss"] == "mse"]:
        new = name.replace("mse", "hinge")
        configs[new] = {**configs[name], "loss": "hinge"}
        if "same_as" in configs[new]:
            configs[new]["same_as"] = configs[new]["same_as"].replace("mse", "hinge")
        copied = curves[curves["config"] == name].assign(config=new)
        curves = pd.concat([curves, copied], ignore_index=True)
    for name in [n for n, c in configs.items() if c.get("kind") == "lr" and c["loss"] == drop]:
        del configs[name]
    inp.sweep_curves = curves
    return inp


def _lr_table(blocks, t):
    header = t.texts("lr.header", threshold=t.pct(0.95))
    return next(b for b in blocks if b.kind == "table" and b.header[1:3] == header[1:3])


@pytest.mark.parametrize("drop", [None, "nll"])
def test_the_learning_rate_study_shows_every_loss_of_the_sweep(drop):
    """A loss added to sweep.losses gets its rows in the study's table; without task 1's pair (NLL
    gone) the table still shows every loss and the comparisons are left out, not a crash."""
    inp, figures = scenario("seeded_later")
    inp = _with_a_third_loss(inp, drop)
    t = phrases("en")
    study = analyse(inp)["lr_study"]
    assert study["pair"] is (drop is None) and "hinge" in study["rows"]
    _, blocks = build_document(inp, t, figures)
    losses = {row[0].rstrip(" *") for row in _lr_table(blocks, t).rows}
    assert losses == ({"HINGE", "MSE", "NLL"} - {str(drop).upper()})


def test_the_report_code_names_no_loss():
    """Loss-generic: the report's code names no loss; task 1's two losses are the losses of the
    variants in the roles `report.baseline` and `report.mse` (read from params), and "mse" appears
    only as that role's name."""
    import ast

    from birdplane.losses import LOSSES

    for path in (LANG_DIR.parent).glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and node.value in LOSSES
            ):
                assert node.value == "mse", (
                    f"{path.name}:{node.lineno}: the loss {node.value!r} by name"
                )


def test_the_figures_hold_only_the_catalogs_words(tmp_path, monkeypatch):
    """A catalog whose every figure.* entry is a marker: the figures' text is markers, numbers and
    the names the data brings (variants, configurations, classes, losses), nothing else."""
    import re

    inp, _ = scenario("seeded_later")
    for v in inp.variants.values():
        v.eval["confusion_matrix"] = {
            "labels": ["airplane", "bird"],
            "rows_actual_cols_predicted": [[9, 1], [2, 8]],
        }
        v.shift_grid = pd.DataFrame(
            [
                {"mode": "fill", "dx": dx, "dy": dy, "accuracy": 0.9}
                for dx in (-1, 0, 1)
                for dy in (-1, 0, 1)
            ]
        )
    t = phrases("en")
    t.entries = {
        k: (
            f"⟦{k}⟧" + "".join(f" {{{n}}}" for n in sorted(placeholders(e)))
            if k.startswith("figure.")
            else e
        )
        for k, e in t.entries.items()
    }
    texts = _drawn_texts(inp, t, tmp_path / "markers", monkeypatch)
    names = {
        *inp.variants,
        *inp.sweep["configs"],
        "airplane",
        "bird",
        "MSE",
        "NLL",
        *(f"{n} ({v.train['model']})" for n, v in inp.variants.items()),
    }
    number = re.compile(
        r"^[−\-+]?[\d.,]+(e[−\-+]?\d+)?%?$|^\$.*\$$"
    )  # ticks: 0.8, −2, 10^5 as mathtext
    words = [w for text in texts for w in re.split(r"⟦[a-z_.]+⟧", text)]
    leftover = {w.strip() for w in words} - names - {""}
    leftover = {
        w
        for w in leftover
        if not number.match(w)
        and not all(x in names or number.match(x) or not x for x in re.split(r"[\s(),…]+", w))
    }
    assert leftover == set(), f"figure text not from the catalog: {sorted(leftover)[:10]}"
