from pathlib import Path

import re

import pytest
import yaml

from birdplane.config import ConfigError, load_params

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path, data) -> Path:
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def project_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_project_params_are_valid():
    p = load_params(ROOT / "params.yaml")
    assert p.data.classes == ["airplane", "bird"]
    assert set(p.train.variants) == {"nll", "mse", "small", "augmented", "cnn"}
    nll = p.train.recipe("nll")
    assert (nll.hidden, nll.loss, nll.epochs, nll.batch_size, nll.lr) == ((512,), "nll", 100, 64, 0.01)
    cnn = p.train.recipe("cnn")
    assert (cnn.arch, cnn.channels, cnn.hidden) == ("cnn", (16, 8), (32,))
    assert p.train.recipe("augmented").augment_shift == 4 and p.sweep.seeds == 3


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["train"]["variants"]["cnn"].pop("channels"), "arch 'cnn' needs channels"),
    (lambda d: d["train"]["variants"]["nll"].update(channels=[4]), "channels apply to arch 'cnn' only"),
    (lambda d: d["train"]["variants"]["nll"].update(dropout=1.0), "train.variants.nll.dropout"),
    (lambda d: d["sweep"].update(widths=[8, 2]), "smallest first"),
    (lambda d: d["sweep"]["regularizers"]["dropout"].update(dropuot=0.1), "did you mean 'dropout'"),
    (lambda d: d["sweep"]["regularizers"]["dropout"].update(augment_shift=2), "augment_shift is not swept"),
    (lambda d: d["report"].update(cnn="convnet"), "report.cnn is 'convnet', which is not in train.variants"),
])
def test_regularizers_and_sweep_are_validated(tmp_path, edit, message):
    d = project_params()
    edit(d)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_params(write(tmp_path, d))


def test_variant_overrides_shared_recipe(tmp_path):
    d = project_params()
    d["train"]["variants"]["fast"] = {"hidden": [8], "loss": "mse", "lr": 0.5, "epochs": 3}
    p = load_params(write(tmp_path, d))
    r = p.train.recipe("fast")
    assert (r.lr, r.epochs, r.batch_size) == (0.5, 3, 64)


@pytest.mark.parametrize("edit, expected", [
    (lambda d: d["train"].update(epochz=3), ["train.epochz", "did you mean 'epochs'", "allowed here"]),
    (lambda d: d["train"]["variants"]["nll"].update(activaton="tanh"),
     ["train.variants.nll.activaton", "did you mean 'activation'"]),
    (lambda d: d["train"].update(epochs="many"), ["train.epochs", "integer"]),
    (lambda d: d["train"].update(lr=-1), ["train.lr", "greater than 0"]),
    (lambda d: d["train"].update(lr=1e9), ["train.lr", "less than or equal to 1000000"]),
    (lambda d: d["data"].update(classes=["airplane", "dragon"]), ["data.classes", "dragon", "truck"]),
    (lambda d: d["data"].update(md5="xyz"), ["data.md5"]),
    (lambda d: d["data"].update(url="ftp://x/y"), ["data.url", "http://"]),
    (lambda d: d["train"]["variants"]["nll"].update(loss="hinge"), ["train.variants.nll.loss", "'nll' or 'mse'"]),
    (lambda d: d.update(sed=1), ["sed", "did you mean 'seed'"]),
    (lambda d: d["report"].update(small="tiny"), ["report.small is 'tiny'", "not in train.variants"]),
    (lambda d: d["shift"].update(summary_shift=9), ["shift.summary_shift (9) must not exceed"]),
])
def test_bad_params_name_key_and_allowed_values(tmp_path, edit, expected):
    d = project_params()
    edit(d)
    with pytest.raises(ConfigError) as e:
        load_params(write(tmp_path, d))
    for text in expected:
        assert text in str(e.value)


def test_missing_and_unparsable_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("train: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(tmp_path / "bad.yaml")


def test_environment_overrides_source(monkeypatch):
    p = load_params(ROOT / "params.yaml")
    assert p.data.source() == (p.data.url, p.data.md5)
    monkeypatch.setenv("BIRDPLANE_DATA_URL", "file:///tmp/c.tar.gz")
    monkeypatch.setenv("BIRDPLANE_DATA_MD5", "A" * 32)
    assert p.data.source() == ("file:///tmp/c.tar.gz", "a" * 32)
    monkeypatch.setenv("BIRDPLANE_DATA_MD5", "nope")
    with pytest.raises(ConfigError, match="BIRDPLANE_DATA_MD5"):
        p.data.source()
