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
from birdplane.text import md_code, md_text, redact_url
from birdplane.report.study import GAP_WINDOW
from birdplane.report.findings import (
    BOOK_MEAN,
    BOOK_NLL,
    BOOK_STD,
    Inputs,
    analyse,
    best_epoch,
    own_history,
)


@dataclass
class Block:
    kind: str  # heading, paragraph, table, figure, code, list
    text: str = ""
    level: int = 2
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    src: str = ""  # figure file name, relative to reports/figures/
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
    f: dict[str, Any]  # analyse(inp)
    t: Catalog
    figures: dict[str, str]  # figure key -> file name

    def figure(self, key: str, caption_key: str) -> Block:
        return Block("figure", src=self.figures[key], text=self.t(caption_key))

    def mean_std(self, d: dict[str, float]) -> str:
        return self.t.mean_std(d["mean"], d["std"])


# ---------------------------------------------------------------- sections, in the report's order


def summary(d: Doc) -> list[Block]:
    t, f, inp = d.t, d.f, d.inp
    base, small = f["baseline"], f["small"]
    items = [summary_task1(d)]
    lr = f["lr_study"]
    if lr and lr["at_best"]:
        b = lr["best"]
        items.append(
            t(
                "summary.task1_lr.book" if lr["best_is_book"] else "summary.task1_lr.own",
                nll_lr=t.rate(b[lr["base"]]),
                mse_lr=t.rate(b[lr["task"]]),
                book=t.rate(lr["book_lr"]),
                lrs=_rates(d, lr),
                epochs=lr["epochs"],
                nll=d.mean_std(lr["rows"][lr["base"]][b[lr["base"]]]["val"]),
                mse=d.mean_std(lr["rows"][lr["task"]][b[lr["task"]]]["val"]),
                verdict=t(f"seeds.mse_verdict.{lr['at_best']['val']}"),
            )
        )
    story = f["story"]
    if story:
        end = story["end"]
        items.append(
            t(
                f"summary.story.{story['key']}",
                small=d.mean_std(end["small"]),
                nll=d.mean_std(end["base"]),
                epochs=end["epoch"],
                end_verdict=t(f"seeds.verdict.{end['verdict']}"),
            )
        )
    else:
        items.append(
            t(
                "summary.task2.reduced" if f["task2"]["reduced"] else "summary.task2.not_reduced",
                small=t.pct(small["gap"]),
                nll=t.pct(base["gap"]),
            )
        )
    if inp.variants[base["name"]].shift:
        items.append(t("summary.shift", **_shift_numbers(inp, base["name"], t)))
    return [
        paragraph(
            t(
                "summary.intro",
                classes=" / ".join(map(md_text, inp.stats["classes"])),
                n=len(inp.variants),
            )
        ),
        bullets(items),
    ]


def summary_task1(d: Doc) -> str:
    t, f = d.t, d.f
    seeds = f["task1_seeds"]
    if seeds:
        return t(
            "summary.task1_seeds",
            n=seeds["n"],
            mse=d.mean_std(seeds["mse"]["val_accuracy"]),
            nll=d.mean_std(seeds["baseline"]["val_accuracy"]),
            verdict=t(f"seeds.mse_verdict.{seeds['verdicts']['val_accuracy']}"),
        )
    return t(
        "summary.task1",
        mse=t.pct(f["mse"]["val"]),
        nll=t.pct(f["baseline"]["val"]),
        verdict=t(f"verdict.{f['task1']['val']}"),
    )


def data(d: Doc) -> list[Block]:
    t, st, num = d.t, d.inp.stats, d.t.num
    src = _source(d.inp)
    blocks = [
        heading(t("data.heading")),
        paragraph(
            t(
                "data.text",
                classes=", ".join(map(md_text, st["classes"])),
                n_train=t.int(st["n_train"]),
                n_val=t.int(st["n_val"]),
                per_class=", ".join(
                    f"{md_text(c)} {t.int(n)}" for c, n in st["train_per_class"].items()
                ),
            )
        ),
        table(
            t.texts("data.header"),
            [
                [t("data.url"), md_code(src.get("url", "?"))],
                [t("data.md5"), md_code(src.get("md5", "?"))],
                [t("data.bytes"), t.int(src.get("bytes", 0))],
            ],
        ),
    ]
    if "samples" in d.figures:
        blocks.append(d.figure("samples", "data.figure"))
    return blocks + [
        heading(t("norm.heading"), 3),
        paragraph(t("norm.text")),
        table(
            t.texts("norm.header"),
            [
                [ch, num(st["mean"][i]), num(BOOK_MEAN[i]), num(st["std"][i]), num(BOOK_STD[i])]
                for i, ch in enumerate(t.texts("norm.channels"))
            ],
        ),
    ]


def models(d: Doc) -> list[Block]:
    t = d.t
    rows = [
        [
            md_text(x.name),
            md_text(x.train["model"]),
            md_text(x.train["recipe"]["loss"].upper()),
            t.int(x.eval["n_parameters"]),
            str(x.train["recipe"]["epochs"]),
            t.num(x.train["recipe"]["lr"]),
            str(x.train["recipe"]["batch_size"]),
        ]
        for x in d.inp.variants.values()
    ]
    return [heading(t("models.heading")), table(t.texts("models.header"), rows)]


def curves(d: Doc) -> list[Block]:
    return [
        heading(d.t("curves.heading")),
        d.figure("accuracy", "curves.figure_accuracy"),
        d.figure("loss", "curves.figure_loss"),
    ]


def results(d: Doc) -> list[Block]:
    t, pct = d.t, d.t.pct
    rows = []
    for x in d.inp.variants.values():  # each variant's model: its first seed's
        h = own_history(x)
        best = best_epoch(h)
        rows.append(
            [
                md_text(x.name),
                pct(x.eval["train_accuracy"]),
                pct(x.eval["val_accuracy"]),
                pct(x.eval["overfit_gap"]),
                t.num(x.eval["val_loss"]),
                f"{pct(float(best['val_accuracy']))} ({int(best['epoch'])})",
                str(int(h["epoch"].max())),
                t.seconds(x.log.get("train_seconds")),
            ]
        )
    blocks = [
        heading(t("results.heading")),
        table(t.texts("results.header"), rows),
        paragraph(
            t(
                "results.note",
                tol=t.pp(d.f["tolerance"]),
                book_train=pct(BOOK_NLL["train_accuracy"]),
                book_val=pct(BOOK_NLL["val_accuracy"]),
            )
        ),
    ]
    seeded = [x for x in d.inp.variants.values() if x.train.get("seeds")]
    if seeded:
        blocks += [
            paragraph(t("seeds.text")),
            table(
                t.texts("seeds.header"),
                [
                    [
                        md_text(x.name),
                        str(x.train["seeds"]["val_accuracy"]["n"]),
                        *(
                            d.mean_std(x.train["seeds"][m])
                            for m in ("train_accuracy", "val_accuracy", "overfit_gap")
                        ),
                    ]
                    for x in seeded
                ],
            ),
        ]
    return blocks


def task1(d: Doc) -> list[Block]:
    t, f, pct = d.t, d.f, d.t.pct
    base, mse = f["baseline"], f["mse"]

    def when(epoch: int | None) -> str:
        return (
            t("task1.fit_epoch", epoch=epoch) if epoch else t("task1.no_fit", epochs=base["epochs"])
        )

    blocks = [heading(t("task1.heading"))]
    if f["task1_seeds"]:
        blocks += task1_seeds(d)
    else:
        blocks += [
            paragraph(
                t(
                    "task1.numbers",
                    mse_val=pct(mse["val"]),
                    nll_val=pct(base["val"]),
                    diff=t.points(mse["val"] - base["val"]),
                    verdict=t(f"verdict.{f['task1']['val']}"),
                    mse_best=pct(mse["best_val"]),
                    mse_best_epoch=mse["best_epoch"],
                    nll_best=pct(base["best_val"]),
                    nll_best_epoch=base["best_epoch"],
                )
            ),
            paragraph(
                t(
                    "task1.speed",
                    threshold=pct(d.inp.fit_threshold),
                    nll_when=when(base["fit_epoch"]),
                    mse_when=when(mse["fit_epoch"]),
                    mse_gap=pct(mse["gap"]),
                    nll_gap=pct(base["gap"]),
                    gap_verdict=t(f"relative.{f['task1']['gap']}"),
                )
            ),
            paragraph(t("task1.ece", mse=t.num(mse["ece"]), nll=t.num(base["ece"]))),
        ]
    return blocks + lr_study(d) + [paragraph(t("task1.reason"))]


def fit_text(d: Doc, fit: dict[str, Any], epochs: int) -> str:
    """Epochs to reach the fit threshold over seeds: mean ± std, or how many seeds never did."""
    t = d.t
    if fit["n_fit"] == 0:
        return t("task1.no_fit", epochs=epochs)
    value = t(
        "seeds.epochs", mean=t.num(fit["spread"]["mean"], 1), std=t.num(fit["spread"]["std"], 1)
    )
    if fit["n_fit"] < fit["n"]:
        value += " " + t("seeds.some_fit", k=fit["n_fit"], n=fit["n"], epochs=epochs)
    return value


def task1_seeds(d: Doc) -> list[Block]:
    """Task 1 over seeds: every figure as mean ± std, and a verdict only beyond the seed spread."""
    t, s = d.t, d.f["task1_seeds"]
    nll, mse, v = s["baseline"], s["mse"], s["verdicts"]
    ms, num = d.mean_std, d.t.num
    rows = [
        [
            t("task1.row.val"),
            ms(nll["val_accuracy"]),
            ms(mse["val_accuracy"]),
            t(f"seeds.verdict.{v['val_accuracy']}"),
        ],
        [
            t("task1.row.best_val"),
            ms(nll["best_val_accuracy"]),
            ms(mse["best_val_accuracy"]),
            t(f"seeds.verdict.{v['best_val_accuracy']}"),
        ],
        [
            t("task1.row.fit", threshold=t.pct(d.inp.fit_threshold)),
            fit_text(d, nll["fit"], nll["epochs"]),
            fit_text(d, mse["fit"], mse["epochs"]),
            t(f"seeds.fit_short.{v['fit']}"),
        ],
        [
            t("task1.row.gap"),
            ms(nll["overfit_gap"]),
            ms(mse["overfit_gap"]),
            t(f"seeds.verdict.{v['overfit_gap']}"),
        ],
        [
            t("task1.row.ece"),
            f"{num(nll['val_ece']['mean'])} ± {num(nll['val_ece']['std'])}",
            f"{num(mse['val_ece']['mean'])} ± {num(mse['val_ece']['std'])}",
            t(f"seeds.verdict.{v['val_ece']}"),
        ],
    ]
    lr = d.inp.variants[d.f["baseline"]["name"]].train["recipe"]["lr"]
    return [
        paragraph(t("task1.seeds_intro", n=s["n"], epochs=nll["epochs"], lr=t.rate(lr))),
        table(t.texts("task1.seeds_header"), rows),
        paragraph(t(f"task1.seeds_verdict.{v['val_accuracy']}", fit=t(f"seeds.fit.{v['fit']}"))),
    ]


def lr_row(d: Doc, s: dict[str, Any], loss: str, lr: float) -> list[str]:
    """One row of the study's table: the loss (starred at its best rate) and rate, and either the
    divergence or the accuracies, epochs to fit and gradient measure."""
    t, r, ms, num = d.t, s["rows"][loss][lr], d.mean_std, d.t.num
    name = f"{loss.upper()}{' *' if lr == s['best'][loss] else ''}"
    if r["diverged"]:
        return [
            name,
            t.rate(lr),
            t("lr.diverged", epoch=r["diverged"].get("epoch") or "?"),
            "",
            "",
            "",
        ]
    grad = f"{num(r['grad']['mean'], 3)} ± {num(r['grad']['std'], 3)}" if r["grad"] else "–"
    return [
        name,
        t.rate(lr),
        ms(r["train"]),
        ms(r["val"]),
        fit_text(d, r["fit"], s["epochs"]),
        grad,
    ]


def lr_best(d: Doc, s: dict[str, Any]) -> str:
    """Each of task 1's losses at its best rate against the other, at the book's rate, and the
    rates that cannot be told from the best."""
    t, ms, best, base, task = d.t, d.mean_std, s["best"], s["base"], s["task"]
    at_book = s["at_book"]
    ties = [f"{loss.upper()} {t.rate(lr)}" for loss, lrs in s["ties"].items() for lr in lrs]
    return (
        t(
            "lr.best.book" if s["best_is_book"] else "lr.best.own",
            nll_lr=t.rate(best[base]),
            mse_lr=t.rate(best[task]),
            epochs=s["epochs"],
            nll=ms(s["rows"][base][best[base]]["val"]),
            mse=ms(s["rows"][task][best[task]]["val"]),
            verdict=t(f"seeds.mse_verdict.{s['at_best']['val']}"),
            book=t.rate(s["book_lr"]),
            book_verdict=t(f"seeds.mse_verdict.{at_book['val']}") if at_book else "–",
        )
        + " "
        + (t("lr.ties.some", rates=", ".join(ties)) if ties else t("lr.ties.none"))
    )


def lr_why(d: Doc, s: dict[str, Any]) -> str:
    """The measured reason at the book's rate: each loss's gradient on the misclassified and the
    confidently wrong images, and their ratio."""
    t, num, why = d.t, d.t.num, s["why"]
    wrong = why["ratio_wrong"]
    return t(
        "lr.why.flat" if why["flat"] else "lr.why.smaller",
        book=t.rate(s["book_lr"]),
        epochs=s["epochs"],
        nll=f"{num(why['baseline']['mean'], 3)} ± {num(why['baseline']['std'], 3)}",
        mse=f"{num(why['mse']['mean'], 3)} ± {num(why['mse']['std'], 3)}",
        ratio=num(why["ratio"], 1),
        nll_wrong=num(why["baseline_wrong"]["mean"], 3) if why["baseline_wrong"] else "–",
        mse_wrong=num(why["mse_wrong"]["mean"], 3) if why["mse_wrong"] else "–",
        ratio_wrong=num(wrong, 1) if wrong else "–",
    )


def lr_share(d: Doc, s: dict[str, Any]) -> str | None:
    """The share of confidently wrong images at the book's and at each loss's fastest rate; None
    unless both losses fit at some rate and both shares were measured there."""
    t, share, fast, base, task = d.t, s["share"], s["fastest"], s["base"], s["task"]
    if (
        fast[task] is None
        or fast[base] is None
        or not share["mse"]["fastest"]
        or not share["baseline"]["fastest"]
    ):
        return None

    def pct_or_dash(x: dict | None) -> str:
        return t.pct(x["mean"]) if x else "–"

    return t(
        "lr.why.share",
        book=t.rate(s["book_lr"]),
        mse_lr=t.rate(fast[task]),
        nll_lr=t.rate(fast[base]),
        mse_book=pct_or_dash(share["mse"]["book"]),
        mse_fast=pct_or_dash(share["mse"]["fastest"]),
        nll_book=pct_or_dash(share["baseline"]["book"]),
        nll_fast=pct_or_dash(share["baseline"]["fastest"]),
    )


def lr_study(d: Doc) -> list[Block]:
    """The learning-rate study: each loss at each rate, its best rate, and the measured gradient."""
    t, s = d.t, d.f["lr_study"]
    if not s:
        return []
    rows = [lr_row(d, s, loss, lr) for loss, by_lr in s["rows"].items() for lr in sorted(by_lr)]
    blocks = [
        heading(t("lr.heading"), 3),
        paragraph(t("lr.intro", lrs=_rates(d, s), seeds=s["seeds"], epochs=s["epochs"])),
    ]
    if "lr_study" in d.figures:
        blocks.append(d.figure("lr_study", "lr.figure"))
    blocks.append(table(t.texts("lr.header", threshold=t.pct(d.inp.fit_threshold)), rows))
    if not s["pair"]:  # task 1's two losses are not both in the study: its figures only
        return blocks
    if s["best"][s["base"]] is not None and s["best"][s["task"]] is not None:
        blocks.append(paragraph(lr_best(d, s)))
    blocks.append(paragraph(fit_by_rate(d, s)))
    if s["why"]:
        blocks.append(paragraph(lr_why(d, s)))
        share = lr_share(d, s)
        if share is not None:
            blocks.append(paragraph(share))
    return blocks


def fit_by_rate(d: Doc, s: dict[str, Any]) -> str:
    """How fast each loss fits at its fastest rate of the study, against the book's rate (the
    variants' own seeds over their full length where task 1 has them, else the study's run)."""
    t, fast, base, task = d.t, s["fastest"], s["base"], s["task"]
    if fast[base] is None or fast[task] is None:
        return t("lr.fit.none", epochs=s["epochs"])
    seeds = d.f["task1_seeds"]

    def at_book(role: str) -> str:  # "baseline": the baseline's loss, "mse": task 1's
        if seeds:
            return fit_text(d, seeds[role]["fit"], seeds[role]["epochs"])
        r = s["rows"][base if role == "baseline" else task].get(s["book_lr"])
        return fit_text(d, r["fit"], s["epochs"]) if r and not r["diverged"] else "–"

    return t(
        "lr.fit.some",
        book=t.rate(s["book_lr"]),
        epochs=s["epochs"],
        mse_lr=t.rate(fast[task]),
        mse_fit=fit_text(d, s["rows"][task][fast[task]]["fit"], s["epochs"]),
        nll_lr=t.rate(fast[base]),
        nll_fit=fit_text(d, s["rows"][base][fast[base]]["fit"], s["epochs"]),
        mse_fit_book=at_book("mse"),
        nll_fit_book=at_book("baseline"),
        fit=t(f"seeds.fit.{s['at_fastest']['fit']}"),
    )


def _rates(d: Doc, s: dict[str, Any]) -> str:
    return ", ".join(d.t.rate(lr) for lr in sorted({lr for by in s["rows"].values() for lr in by}))


def task2(d: Doc) -> list[Block]:
    t, f, pct = d.t, d.f, d.t.pct
    base, small = f["baseline"], f["small"]
    return [
        heading(t("task2.heading")),
        paragraph(
            t(
                "task2.numbers",
                small=md_text(small["name"]),
                small_params=t.int(small["params"]),
                nll_params=t.int(base["params"]),
                ratio=f"{f['task2']['params_ratio']:.0f}",
                small_gap=pct(small["gap"]),
                nll_gap=pct(base["gap"]),
                small_val=pct(small["val"]),
                nll_val=pct(base["val"]),
            )
        ),
        *(
            story(d)
            or [
                paragraph(
                    t(
                        "task2.verdict.reduced"
                        if f["task2"]["reduced"]
                        else "task2.verdict.not_reduced",
                        val=t(f"relative.{f['task2']['val']}"),
                        n_train=t.int(d.inp.stats["n_train"]),
                    )
                )
            ]
        ),
        paragraph(best_fix(d)),
    ]


def story(d: Doc) -> list[Block]:
    """Task 2 across training lengths: the gap against width early (the sweep's curves), the small
    against the book net at every length, and the conclusion the data support."""
    t, s = d.t, d.f["story"]
    if not s:
        return []
    ms = d.mean_std
    rows = [
        [
            str(r["epoch"]),
            ms(r["small"]),
            ms(r["base"]),
            t(f"seeds.verdict.{r['verdict']}"),
            t(
                "story.trend",
                narrow=r["narrow"],
                narrow_gap=ms(r["narrow_gap"]),
                wide=r["wide"],
                wide_gap=ms(r["wide_gap"]),
            )
            if r["source"] == "sweep"
            else t("story.variants"),
        ]
        for r in (*s["rows"], s["end"])
    ]
    early, end = s["early"], s["end"]
    blocks = [
        paragraph(
            t(
                "story.intro",
                window=GAP_WINDOW,
                small=md_text(s["small_variant"]),
                small_config=md_text(s["small"]),
                base=s["base_variant"],
                base_config=md_text(s["base"]),
                lengths=", ".join(str(r["epoch"]) for r in s["rows"]),
                epochs=end["epoch"],
            )
        )
    ]
    if "story" in d.figures:
        blocks.append(d.figure("story", "story.figure"))
    blocks += [
        table(t.texts("story.header", small=md_text(s["small"]), base=md_text(s["base"])), rows),
        paragraph(
            t(
                f"story.{s['key']}",
                early=early["epoch"],
                small_early=ms(early["small"]),
                base_early=ms(early["base"]),
                narrow=early["narrow"],
                wide=early["wide"],
                epochs=end["epoch"],
                small_end=ms(end["small"]),
                base_end=ms(end["base"]),
                end_verdict=t(f"seeds.verdict.{end['verdict']}"),
            )
        ),
    ]
    return blocks


def best_fix(d: Doc) -> str:
    """What reduced overfitting: nothing beyond the noise, early stopping, or a variant (the small net)."""
    t, fix, base = d.t, d.f["best_fix"], d.f["baseline"]
    if not fix["helped"]:
        key = "task2.fix.none"
    elif fix["what"] == "early_stopping":
        key = "task2.fix.early_stopping"
    else:
        key = "task2.fix.variant"
    return t(
        key,
        name=md_text(fix["what"].split(":", 1)[-1]),
        gap=t.pct(fix["gap"]),
        val=t.pct(fix["val"]),
        best_epoch=base["best_epoch"],
        epochs=base["epochs"],
        base_gap=t.pct(base["gap"]),
    )


def sweep_table(d: Doc, sw: dict[str, Any]) -> Block:
    """The sweep's configurations: model, parameters, and accuracies and gap as mean ± std."""
    t, ms = d.t, d.mean_std
    return table(
        t.texts("sweep.header"),
        [
            [
                md_text(n),
                md_text(x["model"]),
                t.int(x["n_parameters"]),
                ms(x["train_accuracy"]),
                ms(x["val_accuracy"]),
                ms(x["overfit_gap"]),
            ]
            for n, x in sw["configs"].items()
        ],
    )


def sweep_trend(d: Doc, sw: dict[str, Any]) -> str:
    """Whether the gap grows with the width, the smallest gap and the best validation accuracy."""
    t, ms, c = d.t, d.mean_std, sw["configs"]
    return t(
        "sweep.trend",
        trend=t("sweep.grows" if sw["gap_grows"] else "sweep.flat"),
        first=sw["first"],
        last=sw["last"],
        gap_first=ms(c[sw["first"]]["overfit_gap"]),
        gap_last=ms(c[sw["last"]]["overfit_gap"]),
        min_gap=sw["min_gap"],
        min_gap_value=ms(c[sw["min_gap"]]["overfit_gap"]),
        best_val=sw["best_val"],
        best_val_value=ms(c[sw["best_val"]]["val_accuracy"]),
    )


def sweep_rule(d: Doc, sw: dict[str, Any]) -> str:
    """The sweep's pick for the small net by its rule, and whether the small variant agrees."""
    t, ms, c, rule = d.t, d.mean_std, sw["configs"], sw["rule"]
    verdict = t(
        "sweep.pick.agrees" if sw["small_agrees"] else "sweep.pick.differs",
        small=d.inp.roles["small"],
        small_hidden=str(sw["small_hidden"]),
        hidden=str(rule["hidden"]),
    )
    return t(
        "sweep.rule",
        pick=md_text(rule["pick"]),
        model=md_text(c[rule["pick"]]["model"]),
        params=t.int(c[rule["pick"]]["n_parameters"]),
        pick_val=ms(c[rule["pick"]]["val_accuracy"]),
        best=md_text(rule["best"]),
        best_val=ms(c[rule["best"]]["val_accuracy"]),
        threshold=t.pct(rule["threshold"]),
        verdict=verdict,
    )


def sweep(d: Doc) -> list[Block]:
    """Task 2's evidence: the capacity sweep, when it ran."""
    t, sw = d.t, d.f["sweep"]
    if not sw:
        return []
    blocks = [
        heading(t("sweep.heading"), 3),
        paragraph(t("sweep.intro", seeds=sw["seeds"], epochs=sw["epochs"], n=len(sw["configs"]))),
    ]
    if "sweep" in d.figures:
        blocks.append(d.figure("sweep", "sweep.figure"))
    blocks.append(sweep_table(d, sw))
    blocks.append(paragraph(sweep_trend(d, sw)))
    if sw["regularizers"]:
        blocks.append(bullets([regularizer(d, n, r) for n, r in sw["regularizers"].items()]))
    blocks.append(paragraph(sweep_rule(d, sw)))
    return blocks


def regularizer(d: Doc, name: str, r: dict[str, Any]) -> str:
    """One regularizer against the plain net; says so when early stopping ended training before the last epoch."""
    t, epochs, ms = d.t, d.f["sweep"]["epochs"], d.mean_std
    stopped = r["epochs_trained"] < epochs
    text = t(
        "sweep.regularizer.stopped_early" if stopped else "sweep.regularizer.full_length",
        name=md_text(name),
        base=md_text(d.f["sweep"]["base"]),
        gap=ms(r["gap"]),
        base_gap=ms(r["base_gap"]),
        val=ms(r["val"]),
        base_val=ms(r["base_val"]),
        gap_change=t(f"sweep.gap_change.{r['gap_change']}"),
        val_change=t(f"sweep.val_change.{r['val_change']}"),
        stopped=f"{r['epochs_trained']:.0f}",
        epochs=epochs,
    )
    return (
        f"{text} {t('sweep.read_from', base=md_text(r['read_from']))}"
        if r.get("read_from")
        else text
    )


def translation(d: Doc) -> list[Block]:
    """The shift test, when every variant ran it; the MLP / augmented / convnet table when two of them did."""
    t, inp = d.t, d.inp
    if not all(x.shift for x in inp.variants.values()):
        return []
    blocks = [
        heading(t("shift.heading")),
        paragraph(t("shift.intro", k=_k(inp))),
        d.figure("shift", "shift.figure"),
    ]
    if "shift_grid" in d.figures:
        blocks.append(d.figure("shift_grid", "shift.figure_grid"))
    blocks += [
        bullets(
            [
                t("shift.variant", name=md_text(x.name), **_shift_numbers(inp, x.name, t))
                for x in inp.variants.values()
            ]
        ),
        paragraph(t("shift.reason")),
    ]
    tr = d.f["translation"]
    if tr:
        rows, best = tr["rows"], tr["best_everywhere"]
        lead = t("translation.leader", k=tr["k"], best=best) if best else t("translation.no_leader")
        blocks += [
            table(
                t.texts("translation.header", mid=tr["mid"], k=tr["k"]),
                [
                    [
                        md_text(n),
                        md_text(inp.variants[n].train["model"]),
                        t.pct(r["a0"]),
                        t.pct(r["amid"]),
                        t.pct(r["ak"]),
                        t.points(-r["drop"]),
                    ]
                    for n, r in rows.items()
                ],
            ),
            paragraph(
                t(
                    "translation.verdict",
                    most=tr["most_robust"],
                    drop=t.pp(rows[tr["most_robust"]]["drop"]),
                    base=tr["baseline"],
                    base_drop=t.pp(rows[tr["baseline"]]["drop"]),
                    k=tr["k"],
                    lead=lead,
                )
            ),
        ]
    return blocks


def evaluation(d: Doc) -> list[Block]:
    t, num, variants = d.t, d.t.num, d.inp.variants.values()
    per_class = [
        [
            md_text(x.name),
            md_text(c),
            num(s["precision"]),
            num(s["recall"]),
            num(s["f1"]),
            str(s["support"]),
        ]
        for x in variants
        for c, s in x.eval["per_class"].items()
    ]
    return [
        heading(t("eval.heading")),
        table(t.texts("eval.header_per_class"), per_class),
        d.figure("confusion", "eval.figure_confusion"),
        table(
            t.texts("eval.header_calibration"),
            [[md_text(x.name), num(x.eval["val_ece"]), num(x.eval["val_nll"])] for x in variants],
        ),
    ]


def provenance(d: Doc) -> list[Block]:
    import yaml

    t, inp = d.t, d.inp
    src = _source(inp)
    any_log = next(iter(inp.variants.values())).log
    versions = any_log.get("versions", {})
    machine = any_log.get("machine", {})
    device = t(
        "provenance.device_value",
        device=md_text(machine.get("device", "?")),
        chip=md_text(machine.get("gpu") or machine.get("processor", "?")),
        threads=md_text(machine.get("torch_threads", "?")),
    )
    return [
        heading(t("provenance.heading")),
        table(
            t.texts("provenance.header"),
            [
                [t("provenance.commit"), md_code(any_log.get("git_commit") or "?")],
                [t("provenance.date"), md_text(any_log.get("finished", "?"))],
                [t("provenance.device"), device],
                [
                    t("provenance.versions"),
                    md_text(", ".join(f"{k} {val}" for k, val in versions.items())),
                ],
                [t("data.url"), md_code(src.get("url", "?"))],
                [t("data.md5"), md_code(src.get("md5", "?"))],
            ],
        ),
        heading(t("mlflow.heading"), 3),
        paragraph(t("mlflow.text")),
        table(
            t.texts("mlflow.header"),
            [
                [
                    md_text(x.name),
                    md_code(x.log.get("mlflow_run_id", "?")),
                    md_text(x.log.get("mlflow_experiment", "?")),
                ]
                for x in inp.variants.values()
            ],
        ),
        heading(t("params.heading"), 3),
        Block(
            "code",
            text=yaml.safe_dump(
                _shown_params(inp.params), sort_keys=False, allow_unicode=True
            ).strip(),
        ),
    ]


SECTIONS = (
    summary,
    data,
    models,
    curves,
    results,
    task1,
    task2,
    sweep,
    translation,
    evaluation,
    provenance,
)


def build_document(
    inp: Inputs, lang: str | Catalog, figures: dict[str, str]
) -> tuple[str, list[Block]]:
    """The report as (title, blocks); `lang` is a language code (report/lang/<lang>.toml) or a loaded
    `Catalog` (`phrases(code, directory)` for a catalog kept elsewhere); `figures` maps figure keys to
    file names."""
    d = Doc(inp, analyse(inp), phrases(lang) if isinstance(lang, str) else lang, figures)
    return d.t("title"), [block for section in SECTIONS for block in section(d)]


def _source(inp: Inputs) -> dict[str, Any]:
    """Where the archive came from: the stats stage's record, updated by the download log. The URL
    without its secrets (user:password@, a token in the query): the report is committed, and a log
    written before the download stage redacted them may still hold them."""
    src = {**inp.stats.get("source", {}), **(inp.download or {})}
    if isinstance(src.get("url"), str):
        src["url"] = redact_url(src["url"])
    return src


def _shown_params(params: Any) -> Any:
    """params.yaml as written, for the report, with data.url's secrets masked."""
    data = params.get("data") if isinstance(params, dict) else None
    if not (isinstance(data, dict) and isinstance(data.get("url"), str)):
        return params
    return {**params, "data": {**data, "url": redact_url(data["url"])}}


def _k(inp: Inputs) -> int:
    return int(next(iter(inp.variants.values())).shift["max_shift"])


def _shift_numbers(inp: Inputs, name: str, t: Catalog) -> dict[str, str]:
    sh = inp.variants[name].shift
    k = int(sh["max_shift"])
    mid = min(inp.summary_shift, k)
    chance = 1 / len(inp.stats["classes"])
    return {
        "a0": t.pct(sh["accuracy_at_0"]),
        "mid": str(mid),
        "amid": t.pct(sh["accuracy_by_shift"][str(mid)]),
        "k": str(k),
        "ak": t.pct(sh["accuracy_by_shift"][str(k)]),
        "chance": t.pct(chance),
    }
