"""Fuzz: malformed params files given to a real stage process.

Every file is a deterministic mutation of the project's params.yaml (hand-written hostile YAML,
then seeded random edits: wrong types, bools for ints, huge and negative numbers, unknown keys,
typos, deleted structure) and goes to a real `pipeline/download.py` process, as `dvc repro` would
run it, with a tiny local archive as the data source. The download stage validates the whole file
before it does anything, so each run must end within RUN_TIMEOUT_S and MEMORY_LIMIT either

- in a valid run (exit 0, its outputs written), or
- in exit 1 with `error in stage download: ...` first, naming the offending key or what is wrong
  with the file, no line over MAX_LINE characters, at most MAX_LINES lines, one line only when the
  file cannot be read as plain YAML, no traceback, and no new file or folder anywhere in the
  project.
"""

from __future__ import annotations

import copy
import os
import random
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from cifar_fixture import make_archive

# ~90 stage processes, two at a time: about 35 s on two cores
pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
RUN_TIMEOUT_S = 10
MEMORY_LIMIT = (
    2 << 30
)  # address space of one stage process (Linux): a billion laughs would need far more
MAX_LINE, MAX_LINES = 300, 30
PREFIX = "error in stage download: "
PASSWORD = "pw-s3cr3t"  # in one case's data.url: no message may repeat it
PROJECT_TEXT = (ROOT / "params.yaml").read_text(encoding="utf-8")
PROJECT = yaml.safe_load(PROJECT_TEXT)


def stage_command(params: Path, project: Path) -> list[str]:
    """The stage every file is given to: the one place to change when its arguments change."""
    return [
        sys.executable,
        str(ROOT / "pipeline" / "download.py"),
        "--params",
        str(params),
        "--out",
        str(project / "data" / "raw" / "cifar-10-python.tar.gz"),
        "--log",
        str(project / "logs" / "download.json"),
    ]


@dataclass(frozen=True)
class Case:
    name: str
    content: bytes
    expect: str = "error"  # "error", "valid" or "any" (a random cut may leave a valid file)
    names: str | None = None  # what the error line must contain: the key, or what is wrong
    one_line: bool = False  # the file is not plain YAML: exactly one line
    partial: bool = (
        False  # given with --params beside the project's params.yaml, which fills in the rest
    )


def dump(d: dict) -> bytes:
    return yaml.safe_dump(d, sort_keys=False, allow_unicode=True).encode()


def edited(edit) -> bytes:
    d = copy.deepcopy(PROJECT)
    edit(d)
    return dump(d)


def laughs(levels: int = 10) -> bytes:
    """The 'billion laughs': 9 aliases per level, 9**10 strings once expanded, in 1 KB."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return ("\n".join(lines) + f"\nmlflow: {{experiment: *l{levels - 1}}}\n").encode()


def unreadable_cases() -> list[Case]:
    """Files that are not plain YAML, or not a mapping: one line naming what is wrong."""
    text = PROJECT_TEXT.encode()
    rng = random.Random(1601)
    cases = [
        Case("billion laughs", laughs(), names="anchors and aliases"),
        Case(
            "alias in the project file",
            text.replace(b"lr: 0.01 ", b"lr: &lr 0.01 ") + b"evaluate: *lr\n",
            names="anchors and aliases",
        ),
        Case("merge key", b"train:\n  <<: {epochs: 3}\n", names="merge keys"),
        Case(
            "flow nesting 5000 deep",
            b"seed: " + b"[" * 5000 + b"]" * 5000,
            names="nested more than 32",
        ),
        Case(
            "block nesting 300 deep",
            "".join(" " * i + f"k{i}:\n" for i in range(300)).encode(),
            names="nested more than 32",
        ),
        Case("duplicate section", text + b"seed: 3\n", names="'seed' appears twice"),
        Case(
            "duplicate key in a variant",
            text.replace(b"nll:   {hidden: [512],", b"nll:   {hidden: [512], hidden: [8],"),
            names="'hidden' appears twice",
        ),
        Case(
            "duplicate variant",
            text.replace(b"    small:", b"    nll: {hidden: [8]}\n    small:"),
            names="'nll' appears twice",
        ),
        Case(
            "latin-1 comment",
            text.replace(b"# Every knob", "# Jeder Schalter für".encode("latin-1")),
            names="not UTF-8",
        ),
        Case("UTF-16", PROJECT_TEXT.encode("utf-16"), names="not UTF-8"),
        Case(
            "control character", text.replace(b"seed: 0", b"seed: 0\x07"), names="control character"
        ),
        Case(
            "NUL byte", text.replace(b"epochs: 100", b"epochs: 1\x0000"), names="control character"
        ),
        Case("tab indentation", text.replace(b"\n  epochs: 100", b"\n\tepochs: 100"), names="tabs"),
        Case("python tag", b"seed: !!python/object/apply:os.system [touch pwned]\n", names="tags"),
        Case("binary tag", b"mlflow: {experiment: !!binary aGVsbG8=}\n", names="tags"),
        Case("two documents", text + b"---\n" + text, names="single document"),
        Case(
            "a 5,000-digit number", b"seed: " + b"9" * 5000 + b"\n", names="cannot read this value"
        ),
        Case("an impossible date", b"seed: 2024-02-30\n", names="cannot read this value"),
        Case(
            "unclosed flow mapping",
            text.split(b"activation: tanh, loss: mse, seeds: 3}")[0],
            names="not valid YAML",
        ),
        Case("empty file", b"", names="is empty"),
        Case("only comments", b"# seed: 0\n# train: {}\n", names="is empty"),
        Case(
            "a list at top level", b"- seed: 0\n- train: {epochs: 3}\n", names="must be a mapping"
        ),
        Case("a number at top level", b"3.14\n", names="must be a mapping"),
        Case("a string at top level", b"params\n", names="must be a mapping"),
        Case("larger than 64 KiB", text + b"#" * 70_000 + b"\n", names="larger than 64 KiB"),
    ]
    for i in range(4):  # one invalid byte at a seeded offset
        at = rng.randrange(len(text))
        cases.append(
            Case(
                f"invalid byte {i}",
                text[:at] + bytes([rng.choice([0x80, 0xC0, 0xFE, 0xFF])]) + text[at:],
                names="not UTF-8",
            )
        )
    for i in range(4):  # seeded binary garbage
        cases.append(Case(f"binary garbage {i}", rng.randbytes(rng.randrange(1, 4000))))
    return [Case(c.name, c.content, c.expect, c.names, one_line=True) for c in cases]


def value_cases() -> list[Case]:
    """Readable YAML with wrong values: an error naming the key."""
    v = lambda name: lambda f: lambda d: f(d["train"]["variants"][name])  # noqa: E731
    return [
        Case("seed: true", edited(lambda d: d.update(seed=True)), names="seed"),
        Case(
            "epochs: yes",
            PROJECT_TEXT.replace("epochs: 100", "epochs: yes").encode(),
            names="train.epochs",
        ),
        Case(
            "epochs as a string",
            edited(lambda d: d["train"].update(epochs="100")),
            names="train.epochs",
        ),
        Case(
            "epochs as a float",
            edited(lambda d: d["train"].update(epochs=100.0)),
            names="train.epochs",
        ),
        Case("lr: .nan", PROJECT_TEXT.replace("lr: 0.01", "lr: .nan").encode(), names="train.lr"),
        Case(
            "timeout_s: .inf",
            PROJECT_TEXT.replace("timeout_s: 60", "timeout_s: .inf").encode(),
            names="data.timeout_s",
        ),
        Case("ddof: true", edited(lambda d: d["stats"].update(ddof=True)), names="stats.ddof"),
        Case(
            "hidden: [1000000000]",
            edited(v("nll")(lambda x: x.update(hidden=[1_000_000_000]))),
            names="train.variants.nll.hidden",
        ),
        Case(
            "a 4.5 G parameter net",
            edited(v("mse")(lambda x: x.update(hidden=[65_536, 65_536]))),
            names="train.variants.mse.hidden",
        ),
        Case(
            "a 160 M parameter convnet",
            edited(v("cnn")(lambda x: x.update(channels=[4096, 4096]))),
            names="train.variants.cnn.channels",
        ),
        Case(
            "a sweep width of 30000",
            edited(lambda d: d["sweep"].update(widths=[2, 30_000])),
            names="sweep.widths",
        ),
        Case(
            "a 50 KB experiment name",
            edited(lambda d: d["mlflow"].update(experiment="x" * 50_000)),
            names="mlflow.experiment",
        ),
        Case(
            "a 20 KB key",
            edited(lambda d: d["train"].update({"k" * 20_000: 1})),
            names="unknown key",
        ),
        Case(
            "a key with a newline",
            edited(lambda d: d["train"].update({"epochs\nlr": 1})),
            names="unknown key",
        ),
        Case(
            "an int as a variant name",
            edited(lambda d: d["train"]["variants"].update({7: {}})),
            names="train.variants",
        ),
        Case(
            "a variant name with a newline",
            edited(
                lambda d: d["train"]["variants"].update(
                    {"nll\n": copy.deepcopy(d["train"]["variants"]["small"])}
                )
            ),
            names="variant name 'nll\\n': a lower-case letter",
        ),
        Case(
            "a variant name with '@' and '$'",
            edited(
                lambda d: d["train"]["variants"].update(
                    {"a@b$c": copy.deepcopy(d["train"]["variants"]["small"])}
                )
            ),
            names="variant name",
        ),
        Case(
            "a regularizer name with a space",
            edited(lambda d: d["sweep"]["regularizers"].update({"drop out": {"dropout": 0.5}})),
            names="regularizer name",
        ),
        Case(
            "an md5 with md5sum's file name",
            edited(lambda d: d["data"].update(md5=d["data"]["md5"] + "  cifar-10-python.tar.gz\n")),
            names="data.md5",
        ),
        Case(
            "an md5 with a trailing newline",
            edited(lambda d: d["data"].update(md5=d["data"]["md5"] + "\n")),
            expect="valid",
        ),
        Case(
            "a password in an ftp data.url",
            edited(
                lambda d: d["data"].update(url=f"ftp://alice:{PASSWORD}@mirror.example/c.tar.gz")
            ),
            names="data.url: must start with http://",
        ),
        Case(
            "no variants", edited(lambda d: d["train"].update(variants={})), names="train.variants"
        ),
        Case(
            "cnn without channels",
            edited(v("cnn")(lambda x: x.pop("channels"))),
            names="train.variants.cnn",
        ),
        Case(
            "the baseline deleted",
            edited(lambda d: d["train"]["variants"].pop("nll")),
            names="report.baseline",
        ),
        Case(
            "a section set to null",
            PROJECT_TEXT.replace("\nstats:\n  ddof: 1", "\nstats:\n").encode(),
            names="stats",
        ),
        Case(
            "one class", edited(lambda d: d["data"].update(classes=["bird"])), names="data.classes"
        ),
        Case(
            "a mistyped section", PROJECT_TEXT.replace("\nsweep:", "\nswep:").encode(), names="swep"
        ),
    ]


def _paths(node, prefix=()) -> list[tuple]:
    """Every key path of the parsed params, leaves and subtrees."""
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else ()
    )
    out = []
    for k, child in items:
        out.append((*prefix, k))
        out += _paths(child, (*prefix, k))
    return out


def _get(d, path):
    for k in path:
        d = d[k]
    return d


def _typo(word: str, rng: random.Random) -> str:
    i = rng.randrange(len(word))
    return (
        rng.choice([word[:i] + word[i + 1 :], word[:i] + word[i] * 2 + word[i + 1 :], word + "s"])
        or "x"
    )


def random_cases(seed: int = 16) -> list[Case]:
    """Seeded random edits of the project's params, each one invalid wherever it lands."""
    rng = random.Random(seed)
    paths = _paths(PROJECT)
    numbers = [p for p in paths if type(_get(PROJECT, p)) in (int, float)]
    # keys of a model (not the free names of variants and regularizers): a typo there is unknown
    model_keys = [
        p
        for p in paths
        if isinstance(p[-1], str) and p[-2:-1] not in (("variants",), ("regularizers",))
    ]
    mappings = [()] + [
        p
        for p in paths
        if isinstance(_get(PROJECT, p), dict) and p[-1:] not in (("variants",), ("regularizers",))
    ]
    # wrong at every place in params.yaml: no key takes a bool, an unknown key, a nested list or a non-finite number
    always_wrong = [
        True,
        False,
        {"bogus": {"deeper": 1}},
        [[1]],
        float("nan"),
        float("-inf"),
        10**40,
        -(10**40),
    ]
    cases = []

    def add(kind: str, path: tuple, edit) -> None:
        d = copy.deepcopy(PROJECT)
        edit(d)
        dotted = ".".join(map(str, path))
        cases.append(Case(f"{kind} {len(cases)}: {dotted}"[:80], dump(d), names=dotted))

    for _ in range(14):
        path, value = rng.choice(paths), rng.choice(always_wrong)
        add("wrong value", path, lambda d, p=path, x=value: _get(d, p[:-1]).__setitem__(p[-1], x))
    for _ in range(5):
        path, value = rng.choice(numbers), rng.choice([-1, -7, -1e-9, 10**12, 1e300, "12"])
        add("bad number", path, lambda d, p=path, x=value: _get(d, p[:-1]).__setitem__(p[-1], x))
    for _ in range(5):
        path = rng.choice(model_keys)
        wrong = (*path[:-1], _typo(path[-1], rng))
        add(
            "typo",
            wrong,
            lambda d, p=path, w=wrong[-1]: _get(d, p[:-1]).__setitem__(
                w, _get(d, p[:-1]).pop(p[-1])
            ),
        )
    for _ in range(4):
        path = (*rng.choice(mappings), rng.choice(["extra", "epoch", "lr_", "Seed", "verbose"]))
        add("unknown key", path, lambda d, p=path: _get(d, p[:-1]).__setitem__(p[-1], 1))
    for i in range(3):  # cut at a seeded offset: often still valid YAML, sometimes valid params
        at = rng.randrange(len(PROJECT_TEXT))
        cases.append(Case(f"cut at {at}", PROJECT_TEXT[:at].encode(), expect="any"))
    return cases


def valid_cases() -> list[Case]:
    """Controls: these must run, so the checks above cannot pass by refusing everything."""
    return [
        Case("the project's params", PROJECT_TEXT.encode(), expect="valid"),
        Case("with a UTF-8 BOM", b"\xef\xbb\xbf" + PROJECT_TEXT.encode(), expect="valid"),
        Case("only some sections", b"seed: 1\ntrain: {epochs: 3}\n", expect="valid", partial=True),
        Case(
            "a params.yaml without a section",
            PROJECT_TEXT.split("\nmlflow:")[0].encode(),
            names="mlflow: Field required",
        ),
        Case(
            "an int for a float",
            PROJECT_TEXT.replace("timeout_s: 60", "timeout_s: 30").encode(),
            expect="valid",
        ),
    ]


CASES = unreadable_cases() + value_cases() + random_cases() + valid_cases()


@dataclass
class Outcome:
    returncode: int | None  # None: killed after RUN_TIMEOUT_S
    stderr: str
    seconds: float
    new_paths: list[str]


_LIMITED = (
    "import os, sys, resource\n"
    "resource.setrlimit(resource.RLIMIT_AS, ({0}, {0}))\n"
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def limited(cmd: list[str]) -> list[str]:
    """`cmd` under a cap on its address space (Linux; elsewhere as it is). The cap is set by a
    small Python process that then execs the command: preexec_fn is unsafe in a thread pool."""
    if sys.platform != "linux":
        return cmd
    return [sys.executable, "-c", _LIMITED.format(MEMORY_LIMIT), *cmd]


def tree(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


def run_case(case: Case, project: Path, env: dict[str, str]) -> Outcome:
    project.mkdir(parents=True)
    params = project / ("my.yaml" if case.partial else "params.yaml")
    params.write_bytes(case.content)
    if case.partial:
        (project / "params.yaml").write_text(PROJECT_TEXT, encoding="utf-8")
    before = tree(project)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            limited(stage_command(params, project)),
            cwd=project,
            env=env,
            capture_output=True,
            timeout=RUN_TIMEOUT_S,
        )
        code, stderr = proc.returncode, proc.stderr.decode("utf-8", "replace")
    except subprocess.TimeoutExpired as e:
        code, stderr = None, (e.stderr or b"").decode("utf-8", "replace")
    return Outcome(code, stderr, time.perf_counter() - t0, sorted(tree(project) - before))


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, Outcome]:
    """Every case run once, two at a time (the machine may have only two cores)."""
    base = tmp_path_factory.mktemp("fuzz")
    archive, md5 = make_archive(
        base / "www" / "cifar-10-python.tar.gz", per_class_train=1, per_class_test=1
    )
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "BIRDPLANE_", "DVC_"))
    }
    env.update(BIRDPLANE_DATA_URL=archive.as_uri(), BIRDPLANE_DATA_MD5=md5, PYTHONUNBUFFERED="1")
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {
            c.name: pool.submit(run_case, c, base / f"case{i:03d}", env)
            for i, c in enumerate(CASES)
        }
        return {name: f.result() for name, f in futures.items()}


def test_at_least_50_malformed_files():
    assert len({c.name for c in CASES}) == len(CASES)
    assert sum(c.expect == "error" for c in CASES) >= 50


def test_no_message_repeats_a_password_from_the_file(outcomes):
    assert [name for name, out in outcomes.items() if PASSWORD in out.stderr] == []


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_malformed_params_end_in_a_clear_error_or_a_valid_run(outcomes, case):
    out = outcomes[case.name]
    assert out.returncode is not None, f"still running after {RUN_TIMEOUT_S} s"
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    assert out.returncode in {0, 1}, out.stderr[-3000:]
    if out.returncode == 0:
        assert case.expect in ("valid", "any"), f"accepted a malformed file: {case.content[:200]!r}"
        assert out.new_paths and not [p for p in out.new_paths if "tmp" in Path(p).name], (
            out.new_paths
        )
        return
    assert case.expect in ("error", "any"), out.stderr
    lines = out.stderr.splitlines()
    assert lines and lines[0].startswith(PREFIX), out.stderr[:1000]
    assert len(lines) <= MAX_LINES and all(len(line) < MAX_LINE for line in lines), out.stderr[
        :3000
    ]
    if case.one_line:
        assert len(lines) == 1, out.stderr[:3000]
    if case.names:
        assert case.names in out.stderr, out.stderr[:1000]
    assert out.new_paths == [], f"wrote {out.new_paths[:10]}"
