"""The report as a document: sections of blocks (headings, paragraphs, tables, figures) in one language.

Every decision is taken here, on the findings of `birdplane.report.findings`: which sentence
applies (the KEY of the catalog entry, e.g. `task2.verdict.reduced` or `.not_reduced`) and the
values it quotes, formatted by `birdplane.report.catalog`. The language's catalog
(`report/lang/<lang>.toml`) only holds the words. `birdplane.report.render` fills the Markdown and
HTML templates with the same blocks, so both files say the same thing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from birdplane.report.catalog import Catalog, phrases
from birdplane.report.findings import BOOK_MEAN, BOOK_NLL, BOOK_STD, Inputs, analyse, best_epoch


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


# ---------------------------------------------------------------- blocks

def heading(text: str, level: int = 2) -> Block:
    return Block("heading", text=text, level=level)


def paragraph(text: str) -> Block:
    return Block("paragraph", text=text)


def table(header: list[str], rows: list[list[str]]) -> Block:
    return Block("table", header=header, rows=rows)


def bullets(items: list[str]) -> Block:
    return Block("list", items=items)


@dataclass
class Doc:
    """What every section reads: the inputs, their findings, the language and the figures drawn."""
    inp: Inputs
    f: dict[str, Any]              # analyse(inp)
    t: Catalog
    figures: dict[str, str]        # figure key -> file name

    def figure(self, key: str, caption_key: str) -> Block:
        return Block("figure", src=self.figures[key], text=self.t(caption_key))

    def mean_std(self, d: dict[str, float]) -> str:
        return self.t.mean_std(d["mean"], d["std"])


# ---------------------------------------------------------------- sections, in the report's order

def summary(d: Doc) -> list[Block]:
    t, f, inp = d.t, d.f, d.inp
    base, mse, small = f["baseline"], f["mse"], f["small"]
    items = [
        t("summary.task1", mse=t.pct(mse["val"]), nll=t.pct(base["val"]), verdict=t(f"verdict.{f['task1']['val']}")),
        t("summary.task2.reduced" if f["task2"]["reduced"] else "summary.task2.not_reduced",
          small=t.pct(small["gap"]), nll=t.pct(base["gap"])),
    ]
    if inp.variants[base["name"]].shift:
        items.append(t("summary.shift", **_shift_numbers(inp, base["name"], t)))
    return [paragraph(t("summary.intro", classes=" / ".join(inp.stats["classes"]), n=len(inp.variants))),
            bullets(items)]


def data(d: Doc) -> list[Block]:
    t, st, num = d.t, d.inp.stats, d.t.num
    src = _source(d.inp)
    blocks = [
        heading(t("data.heading")),
        paragraph(t("data.text", classes=", ".join(st["classes"]), n_train=t.int(st["n_train"]),
                    n_val=t.int(st["n_val"]),
                    per_class=", ".join(f"{c} {t.int(n)}" for c, n in st["train_per_class"].items()))),
        table(t.texts("data.header"), [[t("data.url"), f"`{src.get('url', '?')}`"],
                                       [t("data.md5"), f"`{src.get('md5', '?')}`"],
                                       [t("data.bytes"), t.int(src.get("bytes", 0))]]),
    ]
    if "samples" in d.figures:
        blocks.append(d.figure("samples", "data.figure"))
    return blocks + [
        heading(t("norm.heading"), 3),
        paragraph(t("norm.text")),
        table(t.texts("norm.header"), [[ch, num(st["mean"][i]), num(BOOK_MEAN[i]), num(st["std"][i]), num(BOOK_STD[i])]
                                       for i, ch in enumerate(t.texts("norm.channels"))]),
    ]


def models(d: Doc) -> list[Block]:
    t = d.t
    rows = [[x.name, x.train["model"], x.train["recipe"]["loss"].upper(), t.int(x.eval["n_parameters"]),
             str(x.train["recipe"]["epochs"]), t.num(x.train["recipe"]["lr"]), str(x.train["recipe"]["batch_size"])]
            for x in d.inp.variants.values()]
    return [heading(t("models.heading")), table(t.texts("models.header"), rows)]


def curves(d: Doc) -> list[Block]:
    return [heading(d.t("curves.heading")), d.figure("accuracy", "curves.figure_accuracy"),
            d.figure("loss", "curves.figure_loss")]


def results(d: Doc) -> list[Block]:
    t, pct = d.t, d.t.pct
    rows = []
    for x in d.inp.variants.values():
        best = best_epoch(x.history)
        rows.append([x.name, pct(x.eval["train_accuracy"]), pct(x.eval["val_accuracy"]), pct(x.eval["overfit_gap"]),
                     t.num(x.eval["val_loss"]), f"{pct(float(best['val_accuracy']))} ({int(best['epoch'])})",
                     str(int(x.history["epoch"].max())), t.seconds(x.log.get("train_seconds"))])
    blocks = [heading(t("results.heading")), table(t.texts("results.header"), rows),
              paragraph(t("results.note", tol=t.pp(d.f["tolerance"]), book_train=pct(BOOK_NLL["train_accuracy"]),
                          book_val=pct(BOOK_NLL["val_accuracy"])))]
    seeded = [x for x in d.inp.variants.values() if x.train.get("seeds")]
    if seeded:
        blocks += [paragraph(t("seeds.text")),
                   table(t.texts("seeds.header"), [[x.name, str(x.train["seeds"]["val_accuracy"]["n"]),
                                                    *(d.mean_std(x.train["seeds"][m])
                                                      for m in ("train_accuracy", "val_accuracy", "overfit_gap"))]
                                                   for x in seeded])]
    return blocks


def task1(d: Doc) -> list[Block]:
    t, f, pct = d.t, d.f, d.t.pct
    base, mse = f["baseline"], f["mse"]

    def when(epoch: int | None) -> str:
        return t("task1.fit_epoch", epoch=epoch) if epoch else t("task1.no_fit", epochs=base["epochs"])

    return [
        heading(t("task1.heading")),
        paragraph(t("task1.numbers", mse_val=pct(mse["val"]), nll_val=pct(base["val"]),
                    diff=t.points(mse["val"] - base["val"]), verdict=t(f"verdict.{f['task1']['val']}"),
                    mse_best=pct(mse["best_val"]), mse_best_epoch=mse["best_epoch"],
                    nll_best=pct(base["best_val"]), nll_best_epoch=base["best_epoch"])),
        paragraph(t("task1.speed", threshold=pct(d.inp.fit_threshold), nll_when=when(base["fit_epoch"]),
                    mse_when=when(mse["fit_epoch"]), mse_gap=pct(mse["gap"]), nll_gap=pct(base["gap"]),
                    gap_verdict=t(f"relative.{f['task1']['gap']}"))),
        paragraph(t("task1.ece", mse=t.num(mse["ece"]), nll=t.num(base["ece"]))),
        paragraph(t("task1.reason")),
    ]


def task2(d: Doc) -> list[Block]:
    t, f, pct = d.t, d.f, d.t.pct
    base, small = f["baseline"], f["small"]
    return [
        heading(t("task2.heading")),
        paragraph(t("task2.numbers", small=small["name"], small_params=t.int(small["params"]),
                    nll_params=t.int(base["params"]), ratio=f"{f['task2']['params_ratio']:.0f}",
                    small_gap=pct(small["gap"]), nll_gap=pct(base["gap"]), small_val=pct(small["val"]),
                    nll_val=pct(base["val"]))),
        paragraph(t("task2.verdict.reduced" if f["task2"]["reduced"] else "task2.verdict.not_reduced",
                    val=t(f"relative.{f['task2']['val']}"), n_train=t.int(d.inp.stats["n_train"]))),
        paragraph(best_fix(d)),
    ]


def best_fix(d: Doc) -> str:
    """What reduced overfitting: nothing beyond the noise, early stopping, or a variant (the small net)."""
    t, fix, base = d.t, d.f["best_fix"], d.f["baseline"]
    if not fix["helped"]:
        key = "task2.fix.none"
    elif fix["what"] == "early_stopping":
        key = "task2.fix.early_stopping"
    else:
        key = "task2.fix.variant"
    return t(key, name=fix["what"].split(":", 1)[-1], gap=t.pct(fix["gap"]), val=t.pct(fix["val"]),
             best_epoch=base["best_epoch"], epochs=base["epochs"], base_gap=t.pct(base["gap"]))


def sweep(d: Doc) -> list[Block]:
    """Task 2's evidence: the capacity sweep, when it ran."""
    t, sw, ms = d.t, d.f["sweep"], d.mean_std
    if not sw:
        return []
    c = sw["configs"]
    blocks = [heading(t("sweep.heading"), 3),
              paragraph(t("sweep.intro", seeds=sw["seeds"], epochs=sw["epochs"], n=len(c)))]
    if "sweep" in d.figures:
        blocks.append(d.figure("sweep", "sweep.figure"))
    blocks.append(table(t.texts("sweep.header"), [[n, x["model"], t.int(x["n_parameters"]), ms(x["train_accuracy"]),
                                                   ms(x["val_accuracy"]), ms(x["overfit_gap"])] for n, x in c.items()]))
    blocks.append(paragraph(t(
        "sweep.trend", trend=t("sweep.grows" if sw["gap_grows"] else "sweep.flat"), first=sw["first"],
        last=sw["last"], gap_first=ms(c[sw["first"]]["overfit_gap"]), gap_last=ms(c[sw["last"]]["overfit_gap"]),
        min_gap=sw["min_gap"], min_gap_value=ms(c[sw["min_gap"]]["overfit_gap"]), best_val=sw["best_val"],
        best_val_value=ms(c[sw["best_val"]]["val_accuracy"]))))
    if sw["regularizers"]:
        blocks.append(bullets([regularizer(d, n, r) for n, r in sw["regularizers"].items()]))
    rule = sw["rule"]
    verdict = t("sweep.pick.agrees" if sw["small_agrees"] else "sweep.pick.differs", small=d.inp.roles["small"],
                small_hidden=str(sw["small_hidden"]), hidden=str(rule["hidden"]))
    blocks.append(paragraph(t(
        "sweep.rule", pick=rule["pick"], model=c[rule["pick"]]["model"], params=t.int(c[rule["pick"]]["n_parameters"]),
        pick_val=ms(c[rule["pick"]]["val_accuracy"]), best=rule["best"], best_val=ms(c[rule["best"]]["val_accuracy"]),
        threshold=t.pct(rule["threshold"]), verdict=verdict)))
    return blocks


def regularizer(d: Doc, name: str, r: dict[str, Any]) -> str:
    """One regularizer against the plain net; says so when early stopping ended training before the last epoch."""
    t, epochs, ms = d.t, d.f["sweep"]["epochs"], d.mean_std
    stopped = r["epochs_trained"] < epochs
    return t("sweep.regularizer.stopped_early" if stopped else "sweep.regularizer.full_length",
             name=name, base=d.f["sweep"]["base"], gap=ms(r["gap"]), base_gap=ms(r["base_gap"]), val=ms(r["val"]),
             base_val=ms(r["base_val"]), gap_change=t(f"sweep.gap_change.{r['gap_change']}"),
             val_change=t(f"sweep.val_change.{r['val_change']}"), stopped=f"{r['epochs_trained']:.0f}", epochs=epochs)


def translation(d: Doc) -> list[Block]:
    """The shift test, when every variant ran it; the MLP / augmented / convnet table when two of them did."""
    t, inp = d.t, d.inp
    if not all(x.shift for x in inp.variants.values()):
        return []
    blocks = [heading(t("shift.heading")), paragraph(t("shift.intro", k=_k(inp))), d.figure("shift", "shift.figure")]
    if "shift_grid" in d.figures:
        blocks.append(d.figure("shift_grid", "shift.figure_grid"))
    blocks += [bullets([t("shift.variant", name=x.name, **_shift_numbers(inp, x.name, t))
                        for x in inp.variants.values()]),
               paragraph(t("shift.reason"))]
    tr = d.f["translation"]
    if tr:
        rows, best = tr["rows"], tr["best_everywhere"]
        lead = t("translation.leader", k=tr["k"], best=best) if best else t("translation.no_leader")
        blocks += [
            table(t.texts("translation.header", mid=tr["mid"], k=tr["k"]),
                  [[n, inp.variants[n].train["model"], t.pct(r["a0"]), t.pct(r["amid"]), t.pct(r["ak"]),
                    t.points(-r["drop"])] for n, r in rows.items()]),
            paragraph(t("translation.verdict", most=tr["most_robust"], drop=t.pp(rows[tr["most_robust"]]["drop"]),
                        base=tr["baseline"], base_drop=t.pp(rows[tr["baseline"]]["drop"]), k=tr["k"], lead=lead)),
        ]
    return blocks


def evaluation(d: Doc) -> list[Block]:
    t, num, variants = d.t, d.t.num, d.inp.variants.values()
    per_class = [[x.name, c, num(s["precision"]), num(s["recall"]), num(s["f1"]), str(s["support"])]
                 for x in variants for c, s in x.eval["per_class"].items()]
    return [heading(t("eval.heading")), table(t.texts("eval.header_per_class"), per_class),
            d.figure("confusion", "eval.figure_confusion"),
            table(t.texts("eval.header_calibration"),
                  [[x.name, num(x.eval["val_ece"]), num(x.eval["val_nll"])] for x in variants])]


def provenance(d: Doc) -> list[Block]:
    import yaml

    t, inp = d.t, d.inp
    src = _source(inp)
    any_log = next(iter(inp.variants.values())).log
    versions = any_log.get("versions", {})
    machine = any_log.get("machine", {})
    device = t("provenance.device_value", device=machine.get("device", "?"),
               chip=machine.get("gpu") or machine.get("processor", "?"), threads=machine.get("torch_threads", "?"))
    return [
        heading(t("provenance.heading")),
        table(t.texts("provenance.header"), [
            [t("provenance.commit"), f"`{any_log.get('git_commit') or '?'}`"],
            [t("provenance.date"), any_log.get("finished", "?")],
            [t("provenance.device"), device],
            [t("provenance.versions"), ", ".join(f"{k} {val}" for k, val in versions.items())],
            [t("data.url"), f"`{src.get('url', '?')}`"], [t("data.md5"), f"`{src.get('md5', '?')}`"],
        ]),
        heading(t("mlflow.heading"), 3),
        paragraph(t("mlflow.text")),
        table(t.texts("mlflow.header"), [[x.name, f"`{x.log.get('mlflow_run_id', '?')}`",
                                          x.log.get("mlflow_experiment", "?")] for x in inp.variants.values()]),
        heading(t("params.heading"), 3),
        Block("code", text=yaml.safe_dump(inp.params, sort_keys=False, allow_unicode=True).strip()),
    ]


SECTIONS = (summary, data, models, curves, results, task1, task2, sweep, translation, evaluation, provenance)


def build_document(inp: Inputs, lang: str | Catalog, figures: dict[str, str]) -> tuple[str, list[Block]]:
    """The report as (title, blocks); `lang` is a language code (report/lang/<lang>.toml) or a loaded
    `Catalog` (`phrases(code, directory)` for a catalog kept elsewhere); `figures` maps figure keys to
    file names."""
    d = Doc(inp, analyse(inp), phrases(lang) if isinstance(lang, str) else lang, figures)
    return d.t("title"), [block for section in SECTIONS for block in section(d)]


def _source(inp: Inputs) -> dict[str, Any]:
    """Where the archive came from: the stats stage's record, updated by the download log."""
    return {**inp.stats.get("source", {}), **(inp.download or {})}


def _k(inp: Inputs) -> int:
    return int(next(iter(inp.variants.values())).shift["max_shift"])


def _shift_numbers(inp: Inputs, name: str, t: Catalog) -> dict[str, str]:
    sh = inp.variants[name].shift
    k = int(sh["max_shift"])
    mid = min(inp.summary_shift, k)
    chance = 1 / len(inp.stats["classes"])
    return {"a0": t.pct(sh["accuracy_at_0"]), "mid": str(mid), "amid": t.pct(sh["accuracy_by_shift"][str(mid)]),
            "k": str(k), "ak": t.pct(sh["accuracy_by_shift"][str(k)]), "chance": t.pct(chance)}
