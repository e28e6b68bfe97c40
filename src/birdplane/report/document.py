"""The report as a document: sections of blocks (headings, paragraphs, tables, figures) in one language.

`build_document` takes the findings of `birdplane.report.findings` and writes each as a phrase of
`birdplane.report.i18n` filled with their numbers: no sentence that states a result is written by
hand. `birdplane.report.render` fills the Markdown and HTML templates with the same blocks, so both
files say the same thing.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from birdplane.report.findings import BOOK_MEAN, BOOK_NLL, BOOK_STD, Inputs, analyse, best_epoch
from birdplane.report.i18n import Phrases, phrases


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
