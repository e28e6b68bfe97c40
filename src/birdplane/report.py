"""The homework report: what the metrics say, as a document model rendered to Markdown and HTML.

`analyse` turns the earlier stages' outputs into findings (plain numbers and verdicts);
`build_document` turns findings into sections of blocks (headings, paragraphs, tables, figures)
in one language; `render` fills the Markdown and HTML templates with the same blocks, so both
files say the same thing. No sentence that states a result is written by hand: each is a
phrase from `birdplane.i18n` filled with numbers from the findings.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from birdplane.i18n import Phrases, phrases

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
    roles: dict[str, str]          # baseline / mse / small -> variant name
    fit_threshold: float
    samples: Any = None            # uint8 images per class for the data figure


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
        }

    s_base, s_mse, s_small = summary(base), summary(mse), summary(small)

    def compare(a: float, b: float) -> str:
        return "same" if abs(a - b) < tol else ("higher" if a > b else "lower")

    # what reduced overfitting, if anything: every variant's final gap and early stopping's gap
    candidates = [(f"variant:{x.name}", x.eval["overfit_gap"], x.eval["val_accuracy"]) for x in v.values()]
    candidates.append(("early_stopping", s_base["gap_at_best"], s_base["best_val"]))
    best_fix = min(candidates, key=lambda c: c[1])
    helped = best_fix[1] < s_base["gap"] - tol
    return {
        "tolerance": tol, "baseline": s_base, "mse": s_mse, "small": s_small,
        "task1": {"val": compare(s_mse["val"], s_base["val"]), "best": compare(s_mse["best_val"], s_base["best_val"]),
                  "gap": compare(s_mse["gap"], s_base["gap"])},
        "task2": {"reduced": s_small["gap"] < s_base["gap"] - tol,
                  "val": compare(s_small["val"], s_base["val"]),
                  "params_ratio": s_base["params"] / s_small["params"]},
        "best_fix": {"what": best_fix[0], "gap": best_fix[1], "val": best_fix[2], "helped": helped},
    }


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
    src = st.get("source", {})
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


# ---------------------------------------------------------------- rendering

def render(title: str, blocks: list[Block], lang: str, figure_dir: Path) -> tuple[str, str]:
    """(markdown, html) from the same blocks; HTML embeds every figure as a data URI."""
    import jinja2

    env_md = jinja2.Environment(loader=jinja2.PackageLoader("birdplane", "templates"),
                                autoescape=False, keep_trailing_newline=True,
                                trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    env_html = jinja2.Environment(loader=jinja2.PackageLoader("birdplane", "templates"),
                                  autoescape=True, trim_blocks=True, lstrip_blocks=True,
                                  undefined=jinja2.StrictUndefined)
    env_md.filters["cell"] = lambda s: str(s).replace("|", "\\|").replace("\n", " ")
    env_html.filters["code"] = _inline_code

    def data_uri(name: str) -> str:
        with (figure_dir / name).open("rb") as fh:
            return "data:image/png;base64," + base64.b64encode(fh.read()).decode("ascii")

    md = env_md.get_template("report.md.j2").render(title=title, blocks=blocks, lang=lang)
    html = env_html.get_template("report.html.j2").render(title=title, blocks=blocks, lang=lang, data_uri=data_uri)
    return md, html


def _inline_code(text: str):
    """`code` spans as <code> in HTML; everything else escaped."""
    from markupsafe import Markup, escape

    parts = str(text).split("`")
    return Markup("".join(escape(p) if i % 2 == 0 else Markup("<code>") + escape(p) + Markup("</code>")
                          for i, p in enumerate(parts)))
