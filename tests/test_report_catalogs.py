"""The report's languages are data: every catalog has the same keys and placeholders, every key the
document uses exists and renders from small synthetic inputs (no pipeline) that take every branch,
and a third language is one file."""
from __future__ import annotations

import string
from pathlib import Path

import pandas as pd
import pytest

from birdplane.report import Inputs, Variant, analyse, build_document, languages, phrases
from birdplane.report.catalog import LANG_DIR, CatalogError

EPOCHS = 12
CLASSES = ["airplane", "bird"]
FIGURES = {k: f"{k}.png" for k in ("samples", "accuracy", "loss", "confusion", "shift", "shift_grid", "sweep")}
LANGS = languages()


def history(best_val: float, best_epoch: int, final_val: float, fits: bool) -> pd.DataFrame:
    """Training accuracy climbs (to 1.0 by epoch 5 when the net fits, else to at most 0.9);
    validation accuracy is flat except for one best epoch, so the baseline's noise is ~0."""
    epochs = list(range(1, EPOCHS + 1))
    train = [min(1.0, 0.5 + 0.1 * e) if fits else min(0.9, 0.5 + 0.03 * e) for e in epochs]
    val = [best_val if e == best_epoch else final_val for e in epochs]
    return pd.DataFrame({"epoch": epochs, "train_accuracy": train, "val_accuracy": val,
                         "train_loss": [1 / e for e in epochs], "val_loss": [1.2 / e for e in epochs]})


def seeds(val: float, gap: float, std: float) -> dict:
    spread = lambda m: {"mean": m, "std": std, "n": 3, "values": [m - std, m, m + std]}  # noqa: E731
    return {"seeds": [0, 1, 2], "train_accuracy": spread(val + gap), "val_accuracy": spread(val),
            "overfit_gap": spread(gap), "best_val_accuracy": spread(val), "best_epoch": spread(5)}


def shift(a0: float, drop: float, k: int = 2) -> dict:
    by = {str(r): a0 - drop * r / k for r in range(k + 1)}
    return {"max_shift": k, "accuracy_at_0": a0, "accuracy_by_shift": by}


def variant(name: str, train: float, val: float, *, hidden=(512,), loss="nll", best=(None, 2), fits=True,
            sh: dict | None = None, seed: dict | None = None, log: dict | None = None) -> Variant:
    best_val, best_epoch = best
    n = 3072 * hidden[0] + hidden[0] + 2 * hidden[0] + 2
    return Variant(
        name=name,
        train={"model": f"3072-{hidden[0]}-2", "recipe": {"loss": loss, "epochs": EPOCHS, "lr": 0.01,
                                                          "batch_size": 64, "hidden": list(hidden)},
               **({"seeds": seed} if seed else {})},
        history=history(best_val if best_val is not None else val, best_epoch, val, fits),
        eval={"train_accuracy": train, "val_accuracy": val, "overfit_gap": train - val, "n_parameters": n,
              "val_ece": 0.05, "val_loss": 0.45, "val_nll": 0.46,
              "per_class": {c: {"precision": 0.8, "recall": 0.81, "f1": 0.805, "support": 1000} for c in CLASSES}},
        shift=sh, shift_grid=None,
        log=log if log is not None else {
            "mlflow_run_id": f"run-{name}", "mlflow_experiment": "birdplane", "train_seconds": 12.34,
            "git_commit": "abc123", "finished": "2025-01-01T00:00:00",
            "versions": {"torch": "2.5.0", "numpy": "2.1.0"},
            "machine": {"device": "cpu", "gpu": None, "processor": "x86_64", "torch_threads": 2}})


def stat(mean, std, n=3):
    return {"mean": mean, "std": std, "n": n, "values": [mean] * n}


def config(kind, hidden, gap, val, gap_std=0.01, val_std=0.01, epochs_trained=EPOCHS):
    return {"kind": kind, "model": f"3072-{hidden[0]}-2", "hidden": list(hidden), "n_parameters": 3074 * hidden[0],
            "train_accuracy": stat(val + gap, 0.01), "val_accuracy": stat(val, val_std),
            "overfit_gap": stat(gap, gap_std), "best_epoch": stat(7, 1.0),
            "epochs_trained": stat(epochs_trained, 0.0)}


def sweep(grows: bool, agrees: bool, regularizers: bool) -> dict:
    configs = {"w8": config("width", [8], 0.05, 0.80), "w32": config("width", [32], 0.08, 0.81),
               "w512": config("width", [512], 0.15 if grows else 0.06, 0.80)}
    if regularizers:
        configs["weight_decay"] = config("regularizer", [512], 0.155 if grows else 0.065, 0.80)   # same, same
        configs["early_stopping"] = config("regularizer", [512], 0.02, 0.84, epochs_trained=8.7)  # lower, higher
        configs["dropout"] = config("regularizer", [512], 0.30, 0.70)                             # higher, lower
    return {"seeds": [0, 1, 2], "epochs": EPOCHS, "configs": configs,
            "small_rule": {"pick": "w32", "best": "w32", "threshold": 0.80, "hidden": [32] if agrees else [8]}}


def stats(download_in_stats: bool) -> dict:
    return {"classes": CLASSES, "n_train": 10000, "n_val": 2000, "train_per_class": {c: 5000 for c in CLASSES},
            "mean": [0.49, 0.48, 0.45], "std": [0.25, 0.24, 0.26],
            "source": {"md5": "c58f30108f718f92721af3b95e74349a", "bytes": 170498071,
                       **({"url": "https://example.org/cifar.tar.gz"} if download_in_stats else {})}}


def scenario(name: str) -> tuple[Inputs, dict[str, str]]:
    """Inputs that between them take every branch of the findings (see the comments per scenario)."""
    roles = {"baseline": "nll", "mse": "mse", "small": "small", "augmented": "augmented", "cnn": "cnn"}
    params = {"shift": {"summary_shift": 1}, "sweep": {"base_width": 512}, "report": {"lang": "en"}}
    figures = dict(FIGURES)
    if name == "everything":
        # task 1: MSE higher, its gap lower, it never reaches the fit threshold; task 2: smaller gap
        # (means over seeds), same accuracy; early stopping is the best fix; the sweep's gap grows,
        # the rule agrees, regularizers of every verdict; translation with one leader everywhere
        vs = [variant("nll", 1.0, 0.80, best=(0.82, 2), sh=shift(0.80, 0.30), seed=seeds(0.80, 0.20, 0.01)),
              variant("mse", 0.84, 0.82, loss="mse", fits=False, sh=shift(0.82, 0.30)),
              variant("small", 0.85, 0.80, hidden=(32,), sh=shift(0.80, 0.30), seed=seeds(0.80, 0.05, 0.01)),
              variant("augmented", 0.90, 0.80, sh=shift(0.80, 0.10)),
              variant("cnn", 0.90, 0.85, hidden=(32,), sh=shift(0.85, 0.05))]
        sw, download = sweep(grows=True, agrees=True, regularizers=True), {"url": "file:///tmp/c.tar.gz", "md5": "x"}
    elif name == "minimal":
        # no seeds, no sweep, no shift test, no samples figure, no download log; task 1 the same,
        # MSE's gap higher; task 2 not reduced, lower accuracy; nothing helped; a run without a GPU
        # name, commit or training time
        log = {"mlflow_run_id": "r", "finished": "2025-01-02", "machine": {"device": "cpu", "processor": "arm"},
               "git_commit": None, "train_seconds": None}
        vs = [variant("nll", 0.95, 0.80, best=(0.802, 8), log=log),
              variant("mse", 1.0, 0.801, loss="mse", log=log),
              variant("small", 1.0, 0.79, hidden=(32,), log=log)]
        roles.update(augmented="", cnn="")
        figures = {k: v for k, v in figures.items() if k not in ("samples", "sweep", "shift", "shift_grid")}
        sw, download = None, None
    elif name == "variant_fix":
        # task 1 lower, same gap; task 2 reduced with higher accuracy and the small net as the fix;
        # the sweep's gap does not grow, the rule disagrees, no regularizers and no sweep figure;
        # translation without one leader, no shift-grid figure
        vs = [variant("nll", 1.0, 0.80, best=(0.802, 8), sh=shift(0.80, 0.30)),
              variant("mse", 0.98, 0.78, loss="mse", sh=shift(0.78, 0.30)),
              variant("small", 0.87, 0.82, hidden=(32,), sh=shift(0.82, 0.30)),
              variant("augmented", 0.90, 0.86, sh=shift(0.86, 0.10)),
              variant("cnn", 0.90, 0.85, hidden=(32,), sh=shift(0.85, 0.01))]
        figures = {k: v for k, v in figures.items() if k not in ("sweep", "shift_grid")}
        sw, download = sweep(grows=False, agrees=False, regularizers=False), None
    elif name == "baseline_shift_only":
        # only the baseline was shift-tested: the summary names it, no translation section
        vs = [variant("nll", 1.0, 0.80, best=(0.82, 2), sh=shift(0.80, 0.30)),
              variant("mse", 1.0, 0.80, loss="mse"), variant("small", 1.0, 0.80, hidden=(32,))]
        roles.update(augmented="", cnn="")
        sw, download = None, {"url": "https://mirror.example/c.tar.gz"}
    elif name == "no_comparison":
        # every variant shift-tested but no augmented or cnn role: translation without its table
        vs = [variant("nll", 1.0, 0.80, best=(0.82, 2), sh=shift(0.80, 0.30)),
              variant("mse", 1.0, 0.80, loss="mse", sh=shift(0.80, 0.3)),
              variant("small", 1.0, 0.80, hidden=(32,), sh=shift(0.80, 0.3))]
        roles.update(augmented="", cnn="")
        sw, download = None, None
    else:
        raise ValueError(name)
    inp = Inputs(stats=stats(download_in_stats=name != "minimal"), variants={v.name: v for v in vs}, params=params,
                 roles=roles, fit_threshold=0.95, summary_shift=params["shift"]["summary_shift"],
                 base_width=params["sweep"]["base_width"], sweep=sw, download=download)
    return inp, figures


SCENARIOS = ["everything", "minimal", "variant_fix", "baseline_shift_only", "no_comparison"]


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
    assert {r["gap_change"] for r in regs} == {r["val_change"] for r in regs} == {"same", "higher", "lower"}
    assert {r["epochs_trained"] < EPOCHS for r in regs} == {True, False}
    translations = [f[s]["translation"] for s in SCENARIOS if f[s]["translation"]]
    assert {t["best_everywhere"] is None for t in translations} == {True, False}
    assert f["everything"]["best_fix"]["what"] == "early_stopping" and f["everything"]["best_fix"]["helped"]
    assert f["variant_fix"]["best_fix"]["what"] == "variant:small" and f["variant_fix"]["best_fix"]["helped"]
    assert not f["minimal"]["best_fix"]["helped"]


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
    return {(name, spec, conv) for text in texts for _, name, spec, conv in string.Formatter().parse(text)
            if name is not None}


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
        assert all(spec == "" and conv is None for _, spec, conv in fields(entry)), f"{key}: plain {{name}} only"


@pytest.mark.parametrize("lang", LANGS)
def test_the_document_uses_every_key_and_only_keys_that_exist(lang):
    """Rendering every scenario with one catalog raises KeyError on a key the catalog lacks; what the
    scenarios looked up is then every key there is, so no entry is dead."""
    t = phrases(lang)
    for name in SCENARIOS:
        inp, figures = scenario(name)
        build_document(inp, t, figures)
    assert sorted(set(t.entries) - t.used) == []


def test_a_third_language_is_one_file(tmp_path):
    text = (LANG_DIR / "en.toml").read_text(encoding="utf-8")
    text = text.replace('title = "Birds vs airplanes', 'title = "Oiseaux ou avions')
    text = text.replace('number.decimal = "."', 'number.decimal = ","').replace('number.thousands = ","',
                                                                              'number.thousands = " "')
    (tmp_path / "fr.toml").write_text(text, encoding="utf-8")
    assert languages(tmp_path) == ["fr"]
    inp, figures = scenario("everything")
    title, blocks = build_document(inp, phrases("fr", tmp_path), figures)
    assert title.startswith("Oiseaux ou avions")
    table = next(b for b in blocks if b.kind == "table" and b.header[0] == "variant" and "val. acc." in b.header)
    assert table.rows[0][2] == "80,00 %"  # numbers follow the file's decimal mark
    from birdplane.report import render

    for fig in figures.values():
        (tmp_path / fig).write_bytes(b"\x89PNG")
    _, html = render(title, blocks, "fr", tmp_path)
    assert html.startswith('<!DOCTYPE html>\n<html lang="fr">') and "<title>Oiseaux ou avions" in html


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.replace('title = "Birds vs airplanes: NLLLoss, MSELoss and a smaller net"\n', ""), "missing title"),
    (lambda s: s + 'extra = "x"\n', "unknown extra"),
    (lambda s: s.replace("{verdict}.", "{verdikt}."), "summary.task1 must use exactly {mse}, {nll}, {verdict}"),
    (lambda s: s.replace("by {k} pixels to {ak}", "by {k:d} pixels to {ak}"), "summary.shift: {k:d} is not a plain"),
    (lambda s: s.replace('"lower than"', '["lower than"]'), "relative.lower must be text"),
    (lambda s: s.replace('title = "Birds', 'title = Birds'), "fix the TOML syntax"),
])
def test_a_catalog_that_does_not_fit_is_refused_in_one_line(tmp_path, edit, message):
    (tmp_path / "xx.toml").write_text(edit((LANG_DIR / "en.toml").read_text(encoding="utf-8")), encoding="utf-8")
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

    code = ("import sys, birdplane.report; birdplane.report.languages(); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'pandas', 'numpy', 'matplotlib', 'jinja2', 'yaml'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
