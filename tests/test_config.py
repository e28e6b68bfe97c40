import copy
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
    assert (nll.hidden, nll.loss, nll.epochs, nll.batch_size, nll.lr) == (
        (512,),
        "nll",
        100,
        64,
        0.01,
    )
    cnn = p.train.recipe("cnn")
    assert (cnn.arch, cnn.channels, cnn.hidden) == ("cnn", (16, 8), (32,))
    assert p.train.recipe("augmented").augment_shift == 4 and p.sweep.seeds == 3


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d["train"]["variants"]["cnn"].pop("channels"), "arch 'cnn' needs channels"),
        (
            lambda d: d["train"]["variants"]["nll"].update(channels=[4]),
            "channels apply to arch 'cnn' only",
        ),
        (lambda d: d["train"]["variants"]["nll"].update(dropout=1.0), "train.variants.nll.dropout"),
        (lambda d: d["sweep"].update(widths=[8, 2]), "smallest first"),
        (
            lambda d: d["sweep"]["regularizers"]["dropout"].update(dropuot=0.1),
            "did you mean 'dropout'",
        ),
        (
            lambda d: d["sweep"]["regularizers"]["dropout"].update(augment_shift=2),
            "augment_shift is not swept",
        ),
        (
            lambda d: d["report"].update(cnn="convnet"),
            "report.cnn is 'convnet', which is not in train.variants",
        ),
    ],
)
def test_regularizers_and_sweep_are_validated(tmp_path, edit, message):
    d = project_params()
    edit(d)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_params(write(tmp_path, d))


def test_variant_overrides_shared_recipe(tmp_path):
    d = project_params()
    d["train"]["variants"]["fast"] = {
        "hidden": [8],
        "activation": "tanh",
        "loss": "mse",
        "lr": 0.5,
        "epochs": 3,
    }
    p = load_params(write(tmp_path, d))
    r = p.train.recipe("fast")
    assert (r.lr, r.epochs, r.batch_size) == (0.5, 3, 64)


@pytest.mark.parametrize(
    "edit, expected",
    [
        (
            lambda d: d["train"].update(epochz=3),
            ["train.epochz", "did you mean 'epochs'", "allowed here"],
        ),
        (
            lambda d: d["train"]["variants"]["nll"].update(activaton="tanh"),
            ["train.variants.nll.activaton", "did you mean 'activation'"],
        ),
        (lambda d: d["train"].update(epochs="many"), ["train.epochs", "integer"]),
        (lambda d: d["train"].update(lr=-1), ["train.lr", "greater than 0"]),
        (lambda d: d["train"].update(lr=1e9), ["train.lr", "less than or equal to 1000000"]),
        (
            lambda d: d["data"].update(classes=["airplane", "dragon"]),
            ["data.classes", "dragon", "truck"],
        ),
        (lambda d: d["data"].update(md5="xyz"), ["data.md5"]),
        (lambda d: d["data"].update(url="ftp://x/y"), ["data.url", "http://"]),
        # params.yaml and dvc.lock are committed: credentials and signed queries go in the environment
        (
            lambda d: d["data"].update(url="https://bob:hunter22@m.example/c.tar.gz"),
            ["data.url", "BIRDPLANE_DATA_URL"],
        ),
        (
            lambda d: d["data"].update(url="https://m.example/c.tar.gz?X-Amz-Signature=ab12cd"),
            ["data.url", "credentials or a query string", "BIRDPLANE_DATA_URL"],
        ),
        (
            lambda d: d["train"]["variants"]["nll"].update(loss="hinge"),
            ["train.variants.nll.loss", "'nll' or 'mse'"],
        ),
        (lambda d: d.update(sed=1), ["sed", "did you mean 'seed'"]),
        (
            lambda d: d["report"].update(small="tiny"),
            ["report.small is 'tiny'", "not in train.variants"],
        ),
        (lambda d: d["shift"].update(summary_shift=9), ["shift.summary_shift (9) must not exceed"]),
    ],
)
def test_bad_params_name_key_and_allowed_values(tmp_path, edit, expected):
    d = project_params()
    edit(d)
    with pytest.raises(ConfigError) as e:
        load_params(write(tmp_path, d))
    for text in expected:
        assert text in str(e.value)
    assert "hunter22" not in str(e.value) and "ab12cd" not in str(e.value)


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


# ---- one source of defaults -------------------------------------------------------------

# What leaving a setting out means, where that is not a value: a variant is a fully connected net
# unless it says cnn, a regularizer left out is off, an override left out is the shared value.
ABSENCE = {
    ("VariantConfig", "arch"),
    ("VariantConfig", "channels"),
    *(
        (m, f)
        for m in ("VariantConfig", "Regularizers", "Recipe")
        for f in ("weight_decay", "dropout", "patience", "augment_shift")
    ),
}


def test_params_yaml_is_the_only_source_of_values():
    """The config models define types and bounds; every value lives in params.yaml."""
    from birdplane import config

    models = [
        config.Params,
        config.DataConfig,
        config.StatsConfig,
        config.TrainConfig,
        config.VariantConfig,
        config.Regularizers,
        config.SweepConfig,
        config.EvaluateConfig,
        config.ShiftConfig,
        config.ReportConfig,
        config.MlflowConfig,
        config.Recipe,
    ]
    for model in models:
        for name, field in model.model_fields.items():
            if not field.is_required():
                assert (model.__name__, name) in ABSENCE or field.default is None, (
                    f"{model.__name__}.{name}"
                )
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    del params["shift"]["max_shift"]
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "params.yaml").write_text(yaml.safe_dump(params))
        with pytest.raises(ConfigError, match="shift.max_shift: Field required"):
            load_params(Path(tmp) / "params.yaml", base=Path(tmp) / "params.yaml")


@pytest.mark.parametrize(
    "text", ["seed: 1\ntrain: {epochs: 3}\n", "{}\n", "report: {lang: de}\n", "train:\n  lr: 1\n"]
)
def test_a_partial_params_file_gets_the_project_values_for_the_rest(tmp_path, text):
    (tmp_path / "p.yaml").write_text(text)
    got = load_params(tmp_path / "p.yaml").model_dump()
    expected = load_params(ROOT / "params.yaml").model_dump()
    for section, values in yaml.safe_load(text).items():
        if isinstance(values, dict):
            expected[section].update(values)
        else:
            expected[section] = values
    assert got == expected


# ---- the file is read defensively -------------------------------------------------------


def _laughs(levels: int = 9) -> str:
    """The classic 'billion laughs': 9 aliases per level, 9**9 strings once expanded."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + f"\nseed: *l{levels - 1}\n"


HOSTILE = [
    ("billion laughs", _laughs().encode(), "anchors and aliases"),
    ("one alias", b"seed: &s 1\ntrain: {epochs: *s}\n", "line 1, column 7: anchors and aliases"),
    ("merge key", b"train:\n  <<: {epochs: 3}\n", "merge keys (<<)"),
    ("flow nesting 5000 deep", b"seed: " + b"[" * 5000 + b"]" * 5000, "nested more than 32 levels"),
    (
        "block nesting 300 deep",
        "".join(" " * i + f"k{i}:\n" for i in range(300)).encode(),  # 45 KB
        "nested more than 32 levels",
    ),
    (
        "duplicate section",
        (ROOT / "params.yaml").read_bytes() + b"seed: 3\n",
        "key 'seed' appears twice (first on line 5)",
    ),
    (
        "duplicate key in a flow mapping",
        b"train: {epochs: 3, lr: 0.1, epochs: 4}\n",
        "line 1, column 29: key 'epochs' appears twice (first on line 1)",
    ),
    (
        "non-UTF-8 byte",
        b"seed: 0\ndata: {url: caf\xe9}\n",
        "not UTF-8 text: byte 0xe9 at offset 23 (line 2)",
    ),
    ("UTF-16", "seed: 0\n".encode("utf-16"), "not UTF-8 text: byte 0xff at offset 0"),
    ("control character", b"seed: 0\x00\n", "line 1: control character #x0000"),
    ("explicit tag", b"seed: !!int 3\n", "tags such as"),
    ("python tag", b"seed: !!python/object/apply:os.system [echo hi]\n", "tags such as"),
    ("a 5,000-digit int", b"seed: " + b"7" * 5000 + b"\n", "cannot read this value"),
    ("an impossible date", b"seed: 2024-13-45\n", "cannot read this value: month must be in 1..12"),
    ("tab indent", b"train:\n\tepochs: 3\n", "indent with spaces, not tabs"),
    ("too large", b"# padding\n" * 7000, "is larger than 64 KiB"),
    ("empty", b"", "is empty"),
    ("only a comment", b"# nothing\n", "is empty"),
    (
        "a list",
        b"- seed\n- train\n",
        "must be a mapping of sections (seed, data, stats, train, ...); got ['seed',",
    ),
    ("a number", b"42\n", "must be a mapping of sections (seed, data, stats, train, ...); got 42"),
    ("two documents", b"seed: 1\n---\nseed: 2\n", "expected a single document"),
    ("unclosed", b"train: [unclosed", "line 1, column 17: while parsing a flow sequence"),
]


@pytest.mark.parametrize("name, content, message", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_files_end_in_one_short_line(tmp_path, name, content, message):
    import time

    (tmp_path / "params.yaml").write_bytes(content)
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as e:
        load_params(tmp_path / "params.yaml")
    assert time.perf_counter() - t0 < 2
    text = str(e.value)
    assert message in text
    assert "\n" not in text and len(text) < 300, text


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot be read"):
        load_params(tmp_path)


# ---- strict types -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda d: d.update(seed=True), "seed: Input should be a valid integer (got True)"),
        (
            lambda d: d["train"].update(epochs="3"),
            "train.epochs: Input should be a valid integer (got '3')",
        ),
        (
            lambda d: d["train"].update(epochs=3.0),
            "train.epochs: Input should be a valid integer (got 3.0)",
        ),
        (
            lambda d: d["train"].update(lr=True),
            "train.lr: Input should be a valid number (got True)",
        ),
        (lambda d: d["train"].update(lr="0.1"), "train.lr: Input should be a valid number"),
        (lambda d: d["train"].update(lr=float("nan")), "train.lr: Input should be a finite number"),
        (
            lambda d: d["data"].update(timeout_s=float("inf")),
            "data.timeout_s: Input should be a finite number",
        ),
        (lambda d: d["stats"].update(ddof=True), "stats.ddof: Input should be 0 or 1 (got True)"),
        (lambda d: d["stats"].update(ddof=1.0), "stats.ddof: Input should be 0 or 1 (got 1.0)"),
        (
            lambda d: d["train"]["variants"]["nll"].update(hidden=[True]),
            "train.variants.nll.hidden.0: Input should be a valid integer",
        ),
        (
            lambda d: d["train"]["variants"]["nll"].update(dropout=False),
            "train.variants.nll.dropout: Input should be a valid number",
        ),
        (
            lambda d: d["mlflow"].update(experiment=2024),
            "mlflow.experiment: Input should be a valid string (got 2024)",
        ),
        (
            lambda d: d["train"]["variants"].update({7: {}}),
            "Input should be a valid string (got 7)",
        ),
    ],
)
def test_types_are_strict(tmp_path, edit, expected):
    d = project_params()
    edit(d)
    with pytest.raises(ConfigError) as e:
        load_params(write(tmp_path, d))
    assert expected in str(e.value)


def test_an_int_is_a_valid_float(tmp_path):
    d = project_params()
    d["train"]["lr"], d["data"]["timeout_s"], d["report"]["fit_threshold"] = 1, 30, 1
    p = load_params(write(tmp_path, d))
    assert (p.train.lr, p.data.timeout_s, p.report.fit_threshold) == (1.0, 30.0, 1.0)
    assert isinstance(p.train.lr, float)


def test_echoed_values_are_cut_short(tmp_path):
    d = project_params()
    d["mlflow"]["experiment"] = "y" * 15_000  # three of them just under the 64 KiB cap
    d["train"]["variants"]["x" * 15_000] = {"hidden": [8], "activation": "tanh", "loss": "nll"}
    d["data"]["classes"] = ["airplane", "z" * 15_000]
    with pytest.raises(ConfigError) as e:
        load_params(write(tmp_path, d))
    lines = str(e.value).splitlines()
    assert lines[0].endswith("3 invalid setting(s)") and all(len(line) < 300 for line in lines), (
        lines
    )


def test_many_errors_are_counted_not_all_listed(tmp_path):
    (tmp_path / "p.yaml").write_text("".join(f"k{i}: {i}\n" for i in range(500)))
    with pytest.raises(ConfigError) as e:
        load_params(tmp_path / "p.yaml")
    lines = str(e.value).splitlines()
    assert len(lines) == 22 and lines[-1] == "  ... and 480 more"


# ---- sizes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "edit, expected",
    [
        (
            lambda d: d["train"]["variants"]["nll"].update(hidden=[1_000_000_000]),
            "train.variants.nll.hidden.0: Input should be less than or equal to 65536 (got 1000000000)",
        ),
        (
            lambda d: d["train"]["variants"]["nll"].update(hidden=[65_536, 65_536]),
            "train.variants.nll.hidden [65536, 65536] gives a model of 4,496,556,034 parameters (18.0 GB",
        ),
        (
            lambda d: d["train"]["variants"]["cnn"].update(channels=[4096, 4096]),
            "train.variants.cnn.channels [4096, 4096] with hidden [32] gives a model of 159,502,434 parameters",
        ),
        (
            lambda d: d["train"]["variants"]["cnn"].update(channels=[100_000]),
            "train.variants.cnn.channels.0",
        ),
        (
            lambda d: d["sweep"].update(widths=[2, 20_000]),
            "sweep.widths entry 20000 gives a model of 61,500,002",
        ),
        (
            lambda d: d["sweep"].update(deep=[8000, 8000]),
            "sweep.deep [8000, 8000] gives a model of",
        ),
        (lambda d: d["sweep"].update(base_width=20_000), "sweep.base_width 20000 gives a model of"),
    ],
)
def test_impossible_models_are_refused_while_reading(tmp_path, edit, expected):
    d = project_params()
    edit(d)
    with pytest.raises(ConfigError) as e:
        load_params(write(tmp_path, d))
    assert expected in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_the_largest_allowed_model_loads(tmp_path):
    from birdplane.architecture import n_parameters
    from birdplane.config import MAX_PARAMETERS

    d = project_params()
    d["train"]["variants"]["nll"]["hidden"] = [16_000]  # 49.2 M parameters
    assert n_parameters([16_000], 2) <= MAX_PARAMETERS
    load_params(write(tmp_path, d))


@pytest.mark.parametrize(
    "arch, hidden, channels, n_classes",
    [
        ("mlp", (512,), (), 2),
        ("mlp", (), (), 10),
        ("mlp", (1024, 512, 128), (), 3),
        ("cnn", (32,), (16, 8), 2),
        ("cnn", (), (5,), 4),
        ("cnn", (7, 3), (3, 4, 5, 6), 10),
    ],
)
def test_parameter_estimate_equals_the_built_model(arch, hidden, channels, n_classes):
    from birdplane.architecture import n_parameters
    from birdplane.models import ModelConfig, build_model
    from birdplane.models import n_parameters as counted

    model = build_model(
        ModelConfig(arch=arch, hidden=hidden, channels=channels, n_classes=n_classes)
    )
    assert n_parameters(list(hidden), n_classes, list(channels)) == counted(model)


def test_importing_config_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, birdplane.config; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_the_command_line_check_refuses_what_dvc_would_choke_on(tmp_path):
    """`make pipeline` runs `python -m birdplane.config` before `dvc repro`, whose own YAML reader
    would expand a billion laughs until DVC runs out of memory."""
    import subprocess
    import sys

    bad = tmp_path / "params.yaml"
    bad.write_bytes(_laughs().encode())
    r = subprocess.run(
        [sys.executable, "-m", "birdplane.config", str(bad)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "anchors and aliases" in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "birdplane.config", str(ROOT / "params.yaml")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0 and r.stdout.strip().endswith("params.yaml: valid")


@pytest.mark.parametrize(
    "edit, message",
    [
        # 65,536 channels are within the width bound, but each image's first feature maps take 268 MB
        (
            lambda d: d["train"]["variants"]["cnn"].update(
                channels=[65536], hidden=[], batch_size=64
            ),
            "train.variants.cnn: a batch of 256 images needs about",
        ),
        (lambda d: d["sweep"].update(seeds=100, widths=[8192]), "sweep.seeds 100 x"),
    ],
)
def test_memory_beyond_the_weights_is_bounded(tmp_path, edit, message):
    d = project_params()
    edit(d)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_params(write(tmp_path, d))


# ---- checksums and names that the pipeline's other tools take (issue 23) ------------------------

MD5 = "c58f30108f718f92721af3b95e74349a"


@pytest.mark.parametrize(
    "given, used",
    [
        (MD5, MD5),
        (MD5 + "\n", MD5),
        (f"  {MD5}\t\r\n", MD5),
        (MD5.upper(), MD5),
    ],
)
def test_md5_white_space_is_dropped_and_upper_case_lowered(tmp_path, monkeypatch, given, used):
    d = project_params()
    d["data"]["md5"] = given
    assert load_params(write(tmp_path, d)).data.md5 == used
    monkeypatch.setenv("BIRDPLANE_DATA_MD5", given)
    assert load_params(ROOT / "params.yaml").data.source()[1] == used


@pytest.mark.parametrize(
    "given, message",
    [
        (MD5[:-1], "exactly 32 hex digits"),
        (MD5 + "0", "exactly 32 hex digits"),
        ("g" * 32, "exactly 32 hex digits"),
        (MD5 + "\nx", "32 hex digits"),
        (f"{MD5}  cifar-10-python.tar.gz\n", "file name after them"),
        ("", "exactly 32 hex digits"),
        (MD5[:16] + " " + MD5[16:], "exactly 32 hex digits"),
    ],
)
def test_anything_but_32_hex_digits_is_refused_as_an_md5(tmp_path, monkeypatch, given, message):
    d = project_params()
    d["data"]["md5"] = given
    with pytest.raises(ConfigError, match=f"data.md5: .*{message}"):
        load_params(write(tmp_path, d))
    if given:  # an empty variable means "not set"
        monkeypatch.setenv("BIRDPLANE_DATA_MD5", given)
        with pytest.raises(ConfigError, match=f"BIRDPLANE_DATA_MD5=.*{message}"):
            load_params(ROOT / "params.yaml").data.source()


@pytest.mark.parametrize(
    "name",
    [
        "nll\n",
        "a b",
        "a@b",
        "a/b",
        "a$b",
        "a'b",
        'a"b',
        "a.b",
        "Nll",
        "-x",
        "_x",
        "x" * 33,
        "",
        "café",
        "a\tb",
        "a;b",
    ],
)
def test_variant_names_are_what_dvc_foreach_and_the_shell_take(tmp_path, name):
    d = project_params()
    d["train"]["variants"][name] = copy.deepcopy(d["train"]["variants"]["small"])
    with pytest.raises(
        ConfigError, match="a lower-case letter, then up to 31 of a-z, 0-9, '-', '_'"
    ):
        load_params(write(tmp_path, d))


@pytest.mark.parametrize(
    "name", ["dropout\n", "drop out", "drop-out", "a@b", "a/b", "a$b", "x" * 33, "Dropout"]
)
def test_regularizer_names_are_checked_the_same_way(tmp_path, name):
    d = project_params()
    d["sweep"]["regularizers"][name] = {"dropout": 0.5}
    with pytest.raises(
        ConfigError,
        match="regularizer name .*: a lower-case letter, then up to 31 of a-z, 0-9, '_'",
    ):
        load_params(write(tmp_path, d))


@pytest.mark.parametrize("name", ["a", "nll", "mse-lr0_1", "x" * 32, "v2"])
def test_plain_variant_names_pass(tmp_path, name):
    d = project_params()
    d["train"]["variants"][name] = copy.deepcopy(d["train"]["variants"]["small"])
    assert name in load_params(write(tmp_path, d)).train.variants


def test_a_url_with_a_line_break_is_refused(tmp_path, monkeypatch):
    d = project_params()
    d["data"]["url"] = "https://example.org/c.tar.gz\nX-Injected: 1"
    with pytest.raises(ConfigError, match="data.url: must not contain line breaks"):
        load_params(write(tmp_path, d))
    monkeypatch.setenv("BIRDPLANE_DATA_URL", "file:///tmp/c.tar.gz\x1b[2J")
    with pytest.raises(ConfigError, match="BIRDPLANE_DATA_URL=.* must not contain line breaks"):
        load_params(ROOT / "params.yaml").data.source()
