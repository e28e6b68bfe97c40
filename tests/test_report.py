"""The report stage on the tiny pipeline: numbers equal the metrics, both languages, self-contained
HTML, and the page in a real headless Chromium."""

import json
import re
import shutil
from html.parser import HTMLParser

import pytest
import yaml

from birdplane.io import read_json
from conftest import VARIANTS, headless_chromium, stage

pytestmark = pytest.mark.e2e


def md_table(md: str, first_header: str, column: str = "") -> list[dict[str, str]]:
    """The Markdown table whose first column is headed `first_header` and which has `column`, as dicts."""
    lines = md.splitlines()
    start = next(
        i
        for i, line in enumerate(lines)
        if line.startswith(f"| {first_header} |") and f"| {column}" in line
    )
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(header, (c.strip() for c in line.strip("|").split("|")))))
    return rows


def pct(x: float, decimal=".") -> str:
    return f"{100 * x:.2f}".replace(".", decimal) + " %"


def mean_std(s: dict) -> str:
    return f"{pct(s['mean'])} ± {100 * s['std']:.2f}"


def test_report_numbers_equal_metrics(pipeline):
    proj, _ = pipeline
    md = (proj / "reports/report.md").read_text()
    rows = {r["variant"]: r for r in md_table(md, "variant", "val. acc.")}
    assert sorted(rows) == sorted(VARIANTS)
    for v in VARIANTS:
        e = read_json(proj / f"metrics/eval/{v}.json")
        assert rows[v]["train acc."] == pct(e["train_accuracy"])
        assert rows[v]["val. acc."] == pct(e["val_accuracy"])
        assert rows[v]["gap"] == pct(e["overfit_gap"])
        assert rows[v]["val. loss"] == f"{e['val_loss']:.4f}"
        sh = read_json(proj / f"metrics/shift/{v}.json")
        assert (
            f"{v}: {pct(sh['accuracy_at_0'])} unshifted, {pct(sh['accuracy_by_shift']['4'])} at 4 pixels, "
            f"{pct(sh['accuracy_by_shift']['8'])} at 8 pixels" in md
        )
    stats = read_json(proj / "metrics/stats.json")
    norm = md_table(md, "channel")
    assert [r["mean (here)"] for r in norm] == [f"{m:.4f}" for m in stats["mean"]]
    assert stats["source"]["md5"] in md and read_json(proj / "logs/download.json")["url"] in md
    nll, mse = (
        read_json(proj / f"metrics/train/{v}.json")["seeds"]["val_accuracy"] for v in ("nll", "mse")
    )
    assert (
        f"over 3 seeds, MSELoss ends at {mean_std(mse)} validation accuracy and NLLLoss at {mean_std(nll)}"
        in md
    )
    for v in VARIANTS:  # every MLflow run is named
        assert read_json(proj / f"logs/train/{v}.json")["mlflow_run_id"] in md
    for fig in re.findall(r"\]\(figures/([^)]+)\)", md):
        assert (proj / "reports/figures" / fig).stat().st_size > 1000


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs, self.imgs = [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("src", "href", "data", "action", "poster"):
            if a.get(key):
                self.refs.append((tag, a[key]))
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        if tag == "link":
            self.refs.append((tag, a.get("href", "")))


def test_html_is_self_contained(pipeline):
    proj, _ = pipeline
    html = (proj / "reports/report.html").read_text()
    p = _Refs()
    p.feed(html)
    assert len(p.imgs) == len(list((proj / "reports/figures").glob("*.png")))
    assert all(src.startswith("data:image/png;base64,") for src in p.imgs)
    assert [r for r in p.refs if not r[1].startswith("data:")] == []
    assert "url(" not in html and "@import" not in html


def test_german_report_has_the_same_numbers(pipeline, tmp_path):
    proj, env = pipeline
    params = yaml.safe_load((proj / "params.yaml").read_text())
    params["report"]["lang"] = "de"
    de_params = tmp_path / "params-de.yaml"
    de_params.write_text(yaml.safe_dump(params, sort_keys=False))
    r = stage(proj, env, "report.py", "--params", str(de_params), "--out", str(tmp_path / "de"))
    assert r.returncode == 0, r.stderr
    de = (tmp_path / "de/report.md").read_text()
    en = (proj / "reports/report.md").read_text()
    assert "Aufgabe 1: MSELoss statt NLLLoss" in de and "Task 1" not in de
    rows = {r["Variante"]: r for r in md_table(de, "Variante", "Val.-Gen.")}
    for v in VARIANTS:
        e = read_json(proj / f"metrics/eval/{v}.json")
        assert rows[v]["Val.-Gen."] == pct(e["val_accuracy"], ",")
        assert rows[v]["Lücke"] == pct(e["overfit_gap"], ",")
    # same numbers: every percentage of the English report appears in the German one, with a comma
    en_pcts = sorted(re.findall(r"\d+\.\d\d %", en))
    de_pcts = sorted(p.replace(",", ".") for p in re.findall(r"\d+,\d\d %", de))
    assert en_pcts == de_pcts and len(en_pcts) > 20
    assert (tmp_path / "de/report.html").read_text().startswith('<!DOCTYPE html>\n<html lang="de">')


def test_report_opens_in_headless_chromium(pipeline):
    proj, _ = pipeline
    with headless_chromium() as page:
        problems = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("requestfailed", lambda r: problems.append(f"failed: {r.url[:80]}"))
        page.goto((proj / "reports/report.html").as_uri(), wait_until="load")
        images = page.eval_on_selector_all(
            "img", "imgs => imgs.map(i => [i.complete, i.naturalWidth])"
        )
        assert len(images) >= 5 and all(done and width > 0 for done, width in images), images
        assert problems == []
        assert page.title().startswith("Birds vs airplanes")


def test_report_shows_the_sweep_and_the_translation_comparison(pipeline):
    proj, _ = pipeline
    md = (proj / "reports/report.md").read_text()
    sweep = read_json(proj / "metrics/sweep.json")
    rows = {r["configuration"]: r for r in md_table(md, "configuration", "gap")}
    capacity = {
        n: c for n, c in sweep["configs"].items() if c["kind"] != "lr"
    }  # the lr study is task 1's
    assert sorted(rows) == sorted(capacity)
    for name, c in capacity.items():
        assert (
            rows[name]["val. acc."]
            == f"{pct(c['val_accuracy']['mean'])} ± {100 * c['val_accuracy']['std']:.2f}"
        )
        assert (
            rows[name]["gap"]
            == f"{pct(c['overfit_gap']['mean'])} ± {100 * c['overfit_gap']['std']:.2f}"
        )
    rule = sweep["small_rule"]
    assert f"It picks {rule['pick']} (" in md and "](figures/sweep.png)" in md
    translation = {r["variant"]: r for r in md_table(md, "variant", "unshifted")}
    assert sorted(translation) == ["augmented", "cnn", "nll"]
    for v, r in translation.items():
        sh = read_json(proj / f"metrics/shift/{v}.json")
        assert r["unshifted"] == pct(sh["accuracy_at_0"]) and r["shift 8"] == pct(
            sh["accuracy_by_shift"]["8"]
        )
    assert "Smallest loss under shifts: " in md


def test_report_compares_means_when_variants_ran_several_seeds(pipeline):
    """With seeds, the report adds a mean ± std table and the task verdicts compare means, calling a
    difference real only beyond the larger std."""
    import pandas as pd

    from birdplane.report import Inputs, Variant, analyse, build_document

    proj, _ = pipeline
    variants = {}
    for v in VARIANTS:
        variants[v] = Variant(
            name=v,
            train=read_json(proj / f"metrics/train/{v}.json"),
            history=pd.read_csv(proj / f"plots/train/{v}.csv"),
            eval=read_json(proj / f"metrics/eval/{v}.json"),
            shift=read_json(proj / f"metrics/shift/{v}.json"),
            shift_grid=None,
            log=read_json(proj / f"logs/train/{v}.json"),
        )

    def seeds(val, gap, std):
        spread = lambda m: {"mean": m, "std": std, "n": 3, "values": [m - std, m, m + std]}  # noqa: E731
        return {
            "seeds": [0, 1, 2],
            "train_accuracy": spread(val + gap),
            "val_accuracy": spread(val),
            "overfit_gap": spread(gap),
            "best_val_accuracy": spread(val),
            "best_epoch": spread(5),
        }

    params = yaml.safe_load((proj / "params.yaml").read_text())
    roles = {
        "baseline": "nll",
        "mse": "mse",
        "small": "small",
        "augmented": "augmented",
        "cnn": "cnn",
    }

    def inputs(small_gap, std):
        variants["nll"].train["seeds"] = seeds(0.80, 0.10, std)
        variants["small"].train["seeds"] = seeds(0.80, small_gap, std)
        return Inputs(
            stats=read_json(proj / "metrics/stats.json"),
            variants=variants,
            params=params,
            roles=roles,
            fit_threshold=0.95,
            summary_shift=params["shift"]["summary_shift"],
            base_width=params["sweep"]["base_width"],
            sweep=read_json(proj / "metrics/sweep.json"),
        )

    assert analyse(inputs(small_gap=0.05, std=0.01))["task2"]["reduced"] is True
    assert (
        analyse(inputs(small_gap=0.05, std=0.06))["task2"]["reduced"] is False
    )  # within the seed spread
    figs = {
        k: f"{k}.png" for k in ("accuracy", "loss", "confusion", "shift", "shift_grid", "sweep")
    }
    _, blocks = build_document(inputs(0.05, 0.01), "en", figs)
    tables = [b for b in blocks if b.kind == "table" and b.header and b.header[1] == "seeds"]
    assert tables and [r[0] for r in tables[0].rows] == [
        "nll",
        "mse",
        "small",
    ]  # the variants with seeds
    assert tables[0].rows[2][4] == "5.00 % ± 1.00"


def test_report_answers_task1_over_seeds_and_with_each_losss_best_learning_rate(pipeline):
    """Task 1's table is the seeds' mean ± std from metrics/train, the learning-rate study's table has
    every (loss, rate) of the sweep with its best rate marked, and the gradient measure is quoted."""
    import pandas as pd

    proj, _ = pipeline
    md = (proj / "reports/report.md").read_text()
    t1 = {r[""]: r for r in md_table(md, "", "MSE against NLL")}
    for v, col in (("nll", "NLL"), ("mse", "MSE")):
        s = read_json(proj / f"metrics/train/{v}.json")["seeds"]
        assert t1["final val. acc."][col] == mean_std(s["val_accuracy"])
        assert t1["gap (train − val.)"][col] == mean_std(s["overfit_gap"])
        assert (
            t1["calibration error (ECE)"][col]
            == f"{s['val_ece']['mean']:.4f} ± {s['val_ece']['std']:.4f}"
        )
        assert (
            len(pd.read_csv(proj / f"plots/train/seeds/{v}.csv")["seed"].unique())
            == len(s["runs"])
            == 3
        )
    sweep = read_json(proj / "metrics/sweep.json")
    study = {n: c for n, c in sweep["configs"].items() if c["kind"] == "lr"}
    rows = md_table(md, "loss", "lr")
    assert sorted((r["loss"].rstrip(" *"), float(r["lr"])) for r in rows) == sorted(
        (c["loss"].upper(), c["lr"]) for c in study.values()
    )
    for loss in ("NLL", "MSE"):
        best = max(
            (c for c in study.values() if c["loss"].upper() == loss and "val_accuracy" in c),
            key=lambda c: (c["val_accuracy"]["mean"], -c["lr"]),
        )
        marked = [r for r in rows if r["loss"] == f"{loss} *"]
        assert [float(r["lr"]) for r in marked] == [best["lr"]]
        assert marked[0]["val. acc."] == mean_std(best["val_accuracy"])
    assert ("Best learning rate by validation accuracy" in md) != (
        "is the best of these for both losses" in md
    )
    assert (
        "How fast each loss fits the training set depends on the rate." in md
        or "neither loss reaches the fit threshold" in md
    )
    # the gradient measure is quoted where both losses' nets still get training images wrong
    grads = [study[f"{loss}_lr0.01"] for loss in ("nll", "mse")]
    grads = [sweep["configs"].get(c.get("same_as"), c) if c.get("same_as") else c for c in grads]
    assert ("Why, measured: " in md) == all(
        (c.get("logit_grad") or {}).get("misclassified") for c in grads
    )
    assert (
        "](figures/lr_study.png)" in md
        and (proj / "reports/figures/lr_study.png").stat().st_size > 1000
    )


def test_the_task2_story_reads_the_sweeps_and_the_variants_curves(pipeline):
    """The story's numbers come from plots/sweep/curves.csv and plots/train/seeds/<v>.csv as the stages
    write them. (The tiny pipeline's variants are not widths of its sweep and train as long as it,
    so the inputs are matched up here: the small net as w2, the book net as w8, the sweep cut to 1 epoch.)"""
    from birdplane.config import load_params
    from birdplane.report import analyse, build_document
    from birdplane.report.inputs import load_inputs

    proj, _ = pipeline
    params = load_params(proj / "params.yaml")
    inp = load_inputs(
        params,
        proj / "params.yaml",
        proj / "metrics/stats.json",
        proj / "metrics",
        proj / "plots",
        proj / "logs",
    )
    inp.variants["small"].train["recipe"]["hidden"] = [2]
    inp.variants["nll"].train["recipe"]["hidden"] = [8]
    inp.sweep["epochs"] = 1
    story = analyse(inp)["story"]
    assert story and (story["small"], story["base"]) == ("w2", "w8")
    curves = inp.sweep_curves
    at1 = curves[(curves["config"] == "w2") & (curves["epoch"] == 1)]
    assert story["rows"][0]["small"]["values"] == pytest.approx(
        (at1["train_accuracy"] - at1["val_accuracy"]).tolist()
    )
    seeds = inp.variants[
        "nll"
    ].seed_history  # 2 epochs: the gap per seed is the mean of both (GAP_WINDOW 5)
    per_seed = (seeds["train_accuracy"] - seeds["val_accuracy"]).groupby(seeds["seed"]).mean()
    assert story["end"]["epoch"] == 2 and story["end"]["base"]["values"] == pytest.approx(
        per_seed.tolist()
    )
    figs = {
        k: f"{k}.png"
        for k in ("accuracy", "loss", "confusion", "shift", "shift_grid", "sweep", "story")
    }
    _, blocks = build_document(inp, "de", figs)
    assert any(b.kind == "table" and b.header[:2] == ["Epochen", "Lücke w2"] for b in blocks)


INJECTIONS = {
    "experiment": "<img src=x onerror=alert(1)> | *bold* [link](http://evil.example)",
    "url": "http://127.0.0.1:8000/`<script>alert(1)</script>`|x.tar.gz",
    "commit": "abc``def|<b>",
    "finished": "2026-12-03 <iframe src=x>\n# heading",
}


def _tokens(md: str):
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark").enable("table").parse(md)


def test_report_escapes_values_from_params_environment_and_logs(pipeline, tmp_path):
    """Strings that reach report.md from params, the environment or another stage's files cannot
    add HTML, end a table cell or break out of a code span: parsed back as CommonMark + tables,
    the Markdown shows each value as the text it is, and the HTML escapes it."""
    proj, env = pipeline
    logs = tmp_path / "logs"
    shutil.copytree(proj / "logs", logs)
    for f in (logs / "train").glob("*.json"):
        log = read_json(f)
        log |= {
            "mlflow_experiment": INJECTIONS["experiment"],
            "git_commit": INJECTIONS["commit"],
            "finished": INJECTIONS["finished"],
        }
        f.write_text(json.dumps(log))
    download = read_json(logs / "download.json")
    (logs / "download.json").write_text(json.dumps({**download, "url": INJECTIONS["url"]}))
    r = stage(proj, env, "report.py", "--logs", str(logs), "--out", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    md = (tmp_path / "out/report.md").read_text()
    tokens = _tokens(md)
    inline = [c for t in tokens if t.type == "inline" for c in t.children]
    html_blocks = [t.content for t in tokens if t.type == "html_block"]
    assert html_blocks == [
        md.splitlines(keepends=True)[0]
    ]  # the template's own "do not edit" comment
    assert not [c for c in inline if c.type == "html_inline"]
    assert not [c for c in inline if c.type == "link_open"]  # no link or image made of a value
    code = {c.content for c in inline if c.type == "code_inline"}
    assert INJECTIONS["url"] in code and INJECTIONS["commit"] in code
    texts = "".join(c.content for c in inline if c.type == "text")
    assert INJECTIONS["experiment"] in texts
    # every row of every table has as many cells as its header: no value ended a cell
    tables, cells = [], 0
    for t in tokens:
        if t.type == "table_open":
            tables.append([])
        elif t.type in ("th_open", "td_open"):
            cells += 1
        elif t.type == "tr_close":
            tables[-1].append(cells)
            cells = 0
    assert len(tables) > 5 and all(len(set(rows)) == 1 for rows in tables)
    html = (tmp_path / "out/report.html").read_text()
    assert "<img src=x" not in html and "<script>alert" not in html and "<iframe" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
