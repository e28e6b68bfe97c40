"""The homework report: what the metrics say, as a document model rendered to Markdown and HTML.

`analyse` turns the earlier stages' outputs into findings (plain numbers and verdicts);
`build_document` turns findings into sections of blocks (headings, paragraphs, tables, figures)
in one language; `birdplane.report.render` fills the Markdown and HTML templates with the same
blocks, so both files say the same thing. No sentence that states a result is written by hand: each is a
phrase from `birdplane.report.i18n` filled with numbers from the findings.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from birdplane.report.i18n import Phrases, phrases

# Deep Learning with PyTorch, ch. 7: per-channel mean/std of the 50,000 official training images
BOOK_MEAN = (0.4915, 0.4823, 0.4468)
BOOK_STD = (0.2470, 0.2435, 0.2616)
# the book's chapter-7 notebook, 3072-512-2 + NLLLoss, 100 epochs
BOOK_NLL = {"train_accuracy": 0.998, "val_accuracy": 0.821, "n_parameters": 1_574_402}


@dataclass
class Variant:
    name: str
    train: dict[str, Any]          # metrics/train/<v>.json
    history: pd.DataFrame          # plots/train/<v>.csv
    eval: dict[str, Any]           # metrics/eval/<v>.json
    shift: dict[str, Any] | None   # metrics/shift/<v>.json
    shift_grid: pd.DataFrame | None
    log: dict[str, Any]            # logs/train/<v>.json


@dataclass
class Inputs:
    stats: dict[str, Any]
    variants: dict[str, Variant]
    params: dict[str, Any]
    roles: dict[str, str]          # baseline / mse / small / augmented / cnn -> variant name ("" = none)
    fit_threshold: float
    samples: Any = None            # uint8 images per class for the data figure
    sweep: dict[str, Any] | None = None  # metrics/sweep.json
    download: dict[str, Any] | None = None  # logs/download.json: the URL and md5 actually used


@dataclass
class Block:
    kind: str                      # heading, paragraph, table, figure, code, list
    text: str = ""
    level: int = 2
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    src: str = ""                  # figure file name, relative to reports/figures/
    anchor: str = ""


# ---------------------------------------------------------------- analysis (numbers only)

def first_epoch_reaching(history: pd.DataFrame, column: str, threshold: float) -> int | None:
    hit = history.loc[history[column] >= threshold, "epoch"]
    return int(hit.iloc[0]) if len(hit) else None


def noise(history: pd.DataFrame, last: int = 10) -> float:
    """Epoch-to-epoch spread of validation accuracy near the end: std over the last epochs."""
    tail = history["val_accuracy"].tail(last)
    return float(tail.std(ddof=1)) if len(tail) > 1 else 0.0


def best_epoch(history: pd.DataFrame) -> pd.Series:
    """The epoch of highest validation accuracy (the earliest among ties): early stopping's pick."""
    return history.loc[history["val_accuracy"].idxmax()]


def analyse(inp: Inputs) -> dict[str, Any]:
    """Plain numbers and verdicts for every statement of the report."""
    v = inp.variants
    base, mse, small = (v[inp.roles[r]] for r in ("baseline", "mse", "small"))
    tol = max(noise(base.history), 0.005)  # differences below this are within epoch-to-epoch noise

    def summary(x: Variant) -> dict[str, Any]:
        b = best_epoch(x.history)
        return {
            "name": x.name, "val": x.eval["val_accuracy"], "train": x.eval["train_accuracy"],
            "gap": x.eval["overfit_gap"], "params": x.eval["n_parameters"],
            "best_val": float(b["val_accuracy"]), "best_epoch": int(b["epoch"]),
            "gap_at_best": float(b["train_accuracy"] - b["val_accuracy"]),
            "fit_epoch": first_epoch_reaching(x.history, "train_accuracy", inp.fit_threshold),
            "epochs": int(x.history["epoch"].max()), "ece": x.eval["val_ece"],
            "seeds": x.train.get("seeds"),
        }

    s_base, s_mse, s_small = summary(base), summary(mse), summary(small)

    def compare(a: float, b: float) -> str:
        return "same" if abs(a - b) < tol else ("higher" if a > b else "lower")

    def compare_on(key: str, a: dict[str, Any], b: dict[str, Any]) -> str:
        """a against b on "val" or "gap": the means over seeds when both variants ran several, and
        then "same" unless the means differ by more than the larger std (and the epoch noise)."""
        if not (a["seeds"] and b["seeds"]):
            return compare(a[key], b[key])
        metric = {"val": "val_accuracy", "gap": "overfit_gap"}[key]
        (ma, sa), (mb, sb) = ((x["seeds"][metric]["mean"], x["seeds"][metric]["std"]) for x in (a, b))
        return "same" if abs(ma - mb) <= max(tol, sa, sb) else ("higher" if ma > mb else "lower")

    # what reduced overfitting, if anything: the small variant's final gap and early stopping's gap
    candidates = [(f"variant:{x.name}", x.eval["overfit_gap"], x.eval["val_accuracy"]) for x in (base, small)]
    candidates.append(("early_stopping", s_base["gap_at_best"], s_base["best_val"]))
    best_fix = min(candidates, key=lambda c: c[1])
    helped = best_fix[1] < s_base["gap"] - tol
    return {
        "sweep": analyse_sweep(inp) if inp.sweep else None,
        "translation": analyse_translation(inp),
        "tolerance": tol, "baseline": s_base, "mse": s_mse, "small": s_small,
        "task1": {"val": compare_on("val", s_mse, s_base), "best": compare(s_mse["best_val"], s_base["best_val"]),
                  "gap": compare_on("gap", s_mse, s_base)},
        "task2": {"reduced": compare_on("gap", s_small, s_base) == "lower",
                  "val": compare_on("val", s_small, s_base),
                  "params_ratio": s_base["params"] / s_small["params"]},
        "best_fix": {"what": best_fix[0], "gap": best_fix[1], "val": best_fix[2], "helped": helped},
    }


def differs(a: dict[str, float], b: dict[str, float]) -> bool:
    """Two mean ± std (over seeds) differ when the means are further apart than the larger std."""
    return abs(a["mean"] - b["mean"]) > max(a["std"], b["std"])


def analyse_sweep(inp: Inputs) -> dict[str, Any]:
    """The capacity sweep: trends over width, the regularizers against the plain book net, the pick."""
    sw = inp.sweep
    configs = sw["configs"]
    widths = {n: c for n, c in configs.items() if c["kind"] == "width"}
    base_width = inp.params.get("sweep", {}).get("base_width", 512)
    base_name = next((n for n, c in widths.items() if c["hidden"] == [base_width]), None)
    base = configs[base_name] if base_name else None
    first, last = list(widths)[0], list(widths)[-1]
    regs = {}
    for n, c in configs.items():
        if c["kind"] == "regularizer" and base is not None:
            regs[n] = {"gap": c["overfit_gap"], "val": c["val_accuracy"], "base_gap": base["overfit_gap"],
                       "base_val": base["val_accuracy"],
                       "gap_change": "same" if not differs(c["overfit_gap"], base["overfit_gap"]) else
                       ("lower" if c["overfit_gap"]["mean"] < base["overfit_gap"]["mean"] else "higher"),
                       "val_change": "same" if not differs(c["val_accuracy"], base["val_accuracy"]) else
                       ("higher" if c["val_accuracy"]["mean"] > base["val_accuracy"]["mean"] else "lower"),
                       "epochs_trained": c["epochs_trained"]["mean"], "best_epoch": c["best_epoch"]["mean"]}
    rule = sw["small_rule"]
    small = inp.variants[inp.roles["small"]]
    small_hidden = small.train["recipe"]["hidden"]
    return {
        "configs": configs, "seeds": len(sw["seeds"]), "epochs": sw["epochs"], "base": base_name,
        "first": first, "last": last,
        "gap_grows": widths[last]["overfit_gap"]["mean"] > widths[first]["overfit_gap"]["mean"]
        and differs(widths[last]["overfit_gap"], widths[first]["overfit_gap"]),
        "min_gap": min(widths, key=lambda n: widths[n]["overfit_gap"]["mean"]),
        "best_val": max(configs, key=lambda n: configs[n]["val_accuracy"]["mean"]),
        "regularizers": regs, "rule": rule,
        "small_agrees": list(small_hidden) == list(rule["hidden"]), "small_hidden": list(small_hidden),
    }


def analyse_translation(inp: Inputs) -> dict[str, Any] | None:
    """MLP, MLP trained on shifted images and convnet at the summary shift and the largest shift."""
    names = [inp.roles["baseline"], inp.roles.get("augmented", ""), inp.roles.get("cnn", "")]
    present = [n for n in names if n and n in inp.variants and inp.variants[n].shift]
    if len(present) < 2:
        return None
    k = int(inp.variants[present[0]].shift["max_shift"])
    mid = min(int(inp.params.get("shift", {}).get("summary_shift", 4)), k)
    rows = {n: {"a0": inp.variants[n].shift["accuracy_at_0"],
                "amid": inp.variants[n].shift["accuracy_by_shift"][str(mid)],
                "ak": inp.variants[n].shift["accuracy_by_shift"][str(k)]} for n in present}
    for r in rows.values():
        r["drop"] = r["a0"] - r["ak"]
    most_robust = min(rows, key=lambda n: rows[n]["drop"])
    # the variant with the highest accuracy at every shift ring, if one is
    grids = {n: inp.variants[n].shift["accuracy_by_shift"] for n in present}
    leaders = {max(present, key=lambda n: grids[n][r]) for r in grids[present[0]]}
    return {"rows": rows, "mid": mid, "k": k, "most_robust": most_robust, "baseline": names[0],
            "best_everywhere": leaders.pop() if len(leaders) == 1 else None}


# ---------------------------------------------------------------- document

def _mlflow_rows(inp: Inputs, t: Phrases) -> list[list[str]]:
    return [[x.name, f"`{x.log.get('mlflow_run_id', '?')}`", x.log.get("mlflow_experiment", "?")]
            for x in inp.variants.values()]


def build_document(inp: Inputs, lang: str, figures: dict[str, str]) -> tuple[str, list[Block]]:
    """The report as (title, blocks) in `lang`; `figures` maps figure keys to file names."""
    t = phrases(lang)
    f = analyse(inp)
    pct, num = t.pct, t.num
    st = inp.stats
    base, mse, small = f["baseline"], f["mse"], f["small"]
    blocks: list[Block] = []
    H = lambda text, level=2: blocks.append(Block("heading", text=text, level=level))  # noqa: E731
    P = lambda text: blocks.append(Block("paragraph", text=text))  # noqa: E731

    def table(header, rows):
        blocks.append(Block("table", header=header, rows=rows))

    def figure(key, caption):
        blocks.append(Block("figure", src=figures[key], text=caption))

    # --- summary
    P(t.intro(classes=" / ".join(st["classes"]), n=len(inp.variants)))
    blocks.append(Block("list", items=[
        t.summary_task1(mse=pct(mse["val"]), nll=pct(base["val"]), verdict=t.verdict(f["task1"]["val"])),
        t.summary_task2(small=pct(small["gap"]), nll=pct(base["gap"]), reduced=f["task2"]["reduced"]),
        t.summary_shift(**_shift_numbers(inp, base["name"], t)) if inp.variants[base["name"]].shift else "",
    ]))
    blocks[-1].items = [i for i in blocks[-1].items if i]

    # --- data
    H(t.h_data)
    src = {**st.get("source", {}), **(inp.download or {})}
    P(t.data(classes=", ".join(st["classes"]), n_train=t.int(st["n_train"]), n_val=t.int(st["n_val"]),
             per_class=", ".join(f"{c} {t.int(n)}" for c, n in st["train_per_class"].items())))
    table(t.source_header, [[t.source_url, f"`{src.get('url', '?')}`"], [t.source_md5, f"`{src.get('md5', '?')}`"],
                            [t.source_bytes, t.int(src.get("bytes", 0))]])
    if "samples" in figures:
        figure("samples", t.fig_samples)
    H(t.h_norm, 3)
    P(t.norm_text)
    table(t.norm_header, [[ch, num(st["mean"][i]), num(BOOK_MEAN[i]), num(st["std"][i]), num(BOOK_STD[i])]
                          for i, ch in enumerate(t.channels)])

    # --- models
    H(t.h_models)
    table(t.models_header, [[x.name, x.train["model"], x.train["recipe"]["loss"].upper(), t.int(x.eval["n_parameters"]),
                             str(x.train["recipe"]["epochs"]), num(x.train["recipe"]["lr"]),
                             str(x.train["recipe"]["batch_size"])] for x in inp.variants.values()])

    # --- learning curves and results
    H(t.h_curves)
    figure("accuracy", t.fig_accuracy)
    figure("loss", t.fig_loss)
    H(t.h_results)
    table(t.results_header, [[
        x.name, pct(x.eval["train_accuracy"]), pct(x.eval["val_accuracy"]), pct(x.eval["overfit_gap"]),
        num(x.eval["val_loss"]), f"{pct(float(best_epoch(x.history)['val_accuracy']))} ({int(best_epoch(x.history)['epoch'])})",
        str(int(x.history["epoch"].max())), t.seconds(x.log.get("train_seconds"))] for x in inp.variants.values()])
    P(t.results_note(tol=t.pp(f["tolerance"]), book_train=pct(BOOK_NLL["train_accuracy"]),
                     book_val=pct(BOOK_NLL["val_accuracy"])))
    seeded = [x for x in inp.variants.values() if x.train.get("seeds")]
    if seeded:
        ms = lambda d: t.mean_std(d["mean"], d["std"])  # noqa: E731
        P(t.seeds_text)
        table(t.seeds_header, [[x.name, str(x.train["seeds"]["val_accuracy"]["n"]), ms(x.train["seeds"]["train_accuracy"]),
                                ms(x.train["seeds"]["val_accuracy"]), ms(x.train["seeds"]["overfit_gap"])] for x in seeded])

    # --- task 1
    H(t.h_task1)
    P(t.task1_numbers(mse_val=pct(mse["val"]), nll_val=pct(base["val"]), diff=t.points(mse["val"] - base["val"]),
                      verdict=t.verdict(f["task1"]["val"]), mse_best=pct(mse["best_val"]), mse_best_epoch=mse["best_epoch"],
                      nll_best=pct(base["best_val"]), nll_best_epoch=base["best_epoch"]))
    P(t.task1_speed(threshold=pct(inp.fit_threshold), nll_epoch=base["fit_epoch"], mse_epoch=mse["fit_epoch"],
                    epochs=base["epochs"], mse_gap=pct(mse["gap"]), nll_gap=pct(base["gap"]),
                    gap_verdict=t.relative(f["task1"]["gap"])))
    P(t.task1_ece(mse=num(mse["ece"]), nll=num(base["ece"])))
    P(t.task1_reason)

    # --- task 2
    H(t.h_task2)
    P(t.task2_numbers(small=small["name"], small_params=t.int(small["params"]), nll_params=t.int(base["params"]),
                      ratio=f"{f['task2']['params_ratio']:.0f}", small_gap=pct(small["gap"]), nll_gap=pct(base["gap"]),
                      small_val=pct(small["val"]), nll_val=pct(base["val"])))
    P(t.task2_verdict(reduced=f["task2"]["reduced"], val=t.relative(f["task2"]["val"]), n_train=t.int(st["n_train"])))
    fix = f["best_fix"]
    P(t.task2_best_fix(what=fix["what"], gap=pct(fix["gap"]), val=pct(fix["val"]), best_epoch=base["best_epoch"],
                       epochs=base["epochs"], base_gap=pct(base["gap"]), helped=fix["helped"]))
    sw = f["sweep"]
    if sw:
        ms = lambda d: t.mean_std(d["mean"], d["std"])  # noqa: E731
        H(t.h_sweep, 3)
        P(t.sweep_intro(seeds=sw["seeds"], epochs=sw["epochs"], n=len(sw["configs"])))
        if "sweep" in figures:
            figure("sweep", t.fig_sweep)
        table(t.sweep_header, [[n, c["model"], t.int(c["n_parameters"]), ms(c["train_accuracy"]), ms(c["val_accuracy"]),
                                ms(c["overfit_gap"])] for n, c in sw["configs"].items()])
        c = sw["configs"]
        P(t.sweep_trend(first=sw["first"], last=sw["last"], gap_first=ms(c[sw["first"]]["overfit_gap"]),
                        gap_last=ms(c[sw["last"]]["overfit_gap"]), grows=sw["gap_grows"], min_gap=sw["min_gap"],
                        min_gap_value=ms(c[sw["min_gap"]]["overfit_gap"]), best_val=sw["best_val"],
                        best_val_value=ms(c[sw["best_val"]]["val_accuracy"])))
        if sw["regularizers"]:
            blocks.append(Block("list", items=[
                t.sweep_regularizer(name=n, base=sw["base"], gap=ms(r["gap"]), base_gap=ms(r["base_gap"]),
                                    val=ms(r["val"]), base_val=ms(r["base_val"]), gap_change=r["gap_change"],
                                    val_change=r["val_change"], stopped=r["epochs_trained"], epochs=sw["epochs"])
                for n, r in sw["regularizers"].items()]))
        rule = sw["rule"]
        P(t.sweep_rule(pick=rule["pick"], model=c[rule["pick"]]["model"], params=t.int(c[rule["pick"]]["n_parameters"]),
                       pick_val=ms(c[rule["pick"]]["val_accuracy"]), best=rule["best"],
                       best_val=ms(c[rule["best"]]["val_accuracy"]), threshold=pct(rule["threshold"]),
                       small=inp.roles["small"], small_hidden=sw["small_hidden"], agrees=sw["small_agrees"],
                       hidden=rule["hidden"]))

    # --- translation
    if all(x.shift for x in inp.variants.values()):
        H(t.h_shift)
        P(t.shift_intro(k=_k(inp)))
        figure("shift", t.fig_shift)
        if "shift_grid" in figures:
            figure("shift_grid", t.fig_shift_grid)
        blocks.append(Block("list", items=[t.shift_variant(name=x.name, **_shift_numbers(inp, x.name, t))
                                           for x in inp.variants.values()]))
        P(t.shift_reason)
        tr = f["translation"]
        if tr:
            rows = tr["rows"]
            table(t.translation_header(tr["mid"], tr["k"]),
                  [[n, inp.variants[n].train["model"], pct(r["a0"]), pct(r["amid"]), pct(r["ak"]), t.points(-r["drop"])]
                   for n, r in rows.items()])
            P(t.translation_verdict(most=tr["most_robust"], drop=t.pp(rows[tr["most_robust"]]["drop"]),
                                    base=tr["baseline"], base_drop=t.pp(rows[tr["baseline"]]["drop"]), k=tr["k"],
                                    best=tr["best_everywhere"]))

    # --- evaluation details
    H(t.h_eval)
    rows = []
    for x in inp.variants.values():
        for c, s in x.eval["per_class"].items():
            rows.append([x.name, c, num(s["precision"]), num(s["recall"]), num(s["f1"]), str(s["support"])])
    table(t.per_class_header, rows)
    figure("confusion", t.fig_confusion)
    table(t.calibration_header, [[x.name, num(x.eval["val_ece"]), num(x.eval["val_nll"])] for x in inp.variants.values()])

    # --- provenance
    H(t.h_provenance)
    any_log = next(iter(inp.variants.values())).log
    versions = any_log.get("versions", {})
    machine = any_log.get("machine", {})
    table(t.prov_header, [
        [t.prov_commit, f"`{any_log.get('git_commit') or '?'}`"],
        [t.prov_date, any_log.get("finished", "?")],
        [t.prov_device, f"{machine.get('device', '?')} ({machine.get('gpu') or machine.get('processor', '?')}, "
                        f"{machine.get('torch_threads', '?')} threads)"],
        [t.prov_versions, ", ".join(f"{k} {val}" for k, val in versions.items())],
        [t.source_url, f"`{src.get('url', '?')}`"], [t.source_md5, f"`{src.get('md5', '?')}`"],
    ])
    H(t.h_mlflow, 3)
    P(t.mlflow_text)
    table(t.mlflow_header, _mlflow_rows(inp, t))
    H(t.h_params, 3)
    import yaml
    blocks.append(Block("code", text=yaml.safe_dump(inp.params, sort_keys=False, allow_unicode=True).strip()))
    return t.title, blocks


def _k(inp: Inputs) -> int:
    return int(next(iter(inp.variants.values())).shift["max_shift"])


def _shift_numbers(inp: Inputs, name: str, t: Phrases) -> dict[str, str]:
    sh = inp.variants[name].shift
    k = int(sh["max_shift"])
    mid = min(int(inp.params.get("shift", {}).get("summary_shift", 4)), k)
    chance = 1 / len(inp.stats["classes"])
    return {"a0": t.pct(sh["accuracy_at_0"]), "mid": str(mid), "amid": t.pct(sh["accuracy_by_shift"][str(mid)]),
            "k": str(k), "ak": t.pct(sh["accuracy_by_shift"][str(k)]), "chance": t.pct(chance)}
