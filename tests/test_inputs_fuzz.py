"""Fuzz: damaged inter-stage files given to the process that reads them.

Every case damages one file another stage wrote (truncated, emptied, a byte flipped or made
invalid UTF-8, garbage, the wrong JSON type, a key removed, NaN, infinity, huge numbers, wrong
shapes, a hostile pickle) and runs, in a fresh process:

- the report's metrics, plots and logs: the real `pipeline/report.py`, in a copy of the project's
  committed metrics/, plots/ and logs/ with its params.yaml;
- a model file (models/<v>.pt): the loader of evaluate and shift-test (birdplane.modelfile) under
  the stages' own `run_stage`, as `error in stage evaluate: ...`;
- metrics/stats.json: the loader of the training stages (birdplane.inputs.load_tensors) under
  `run_stage`, with a real tiny prepared dataset beside it.

The loaders run in processes forked from one server that imported torch once (FORK_SERVER):
importing torch takes 3 s of the 2 shared cores, which 45 fresh processes could not afford within
the time limit; each fork is still its own process, measured on its own (wait4).

Each must end within RUN_TIMEOUT_S and MAX_RSS either in exit 1 with one line `error in stage
<stage>: <the file>: ...` (no traceback), or, for a random flip that may leave a valid file, in a
normal end; in every case nothing in the case's folder changed and no file was added.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import stage_args

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
RUN_TIMEOUT_S = 10
MAX_RSS = 1536 << 20  # peak resident memory of one process: torch alone takes about 0.6 GB
SEED = 2323

# Reads one JSON request a line ({"cwd", "code", "args", "stderr"}), runs `code` as __main__ in a
# forked child there, and answers {"status", "seconds", "rss"} (status null: killed at the limit).
FORK_SERVER = """
import json, os, sys, time
from birdplane import numerics
numerics.pin()  # as run_stage does, before torch loads
import torch, birdplane.modelfile, birdplane.inputs, birdplane.process  # once, for every case
LIMIT = float(sys.argv[1])
for line in sys.stdin:
    req, start = json.loads(line), time.monotonic()
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            os.chdir(req["cwd"])
            os.dup2(os.open(req["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
            sys.argv = ["stage", *req["args"]]
            exec(compile(req["code"], "<stage>", "exec"), {"__name__": "__main__"})
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    status = None
    while True:
        done, raw, usage = os.wait4(pid, os.WNOHANG)
        if done:
            status = os.waitstatus_to_exitcode(raw)
            break
        if time.monotonic() - start > LIMIT:
            os.kill(pid, 9)
            _, _, usage = os.wait4(pid, 0)
            break
        time.sleep(0.02)
    print(json.dumps({"status": status, "seconds": time.monotonic() - start, "rss": usage.ru_maxrss * 1024}),
          flush=True)
"""

MODEL_DRIVER = """
import sys
from birdplane.process import run_stage
def main():
    from birdplane.modelfile import load_model
    load_model(sys.argv[1], n_classes=2)
run_stage("evaluate", main)
"""
STATS_DRIVER = """
import sys
from pathlib import Path
from birdplane.process import run_stage
def main():
    from birdplane.inputs import load_tensors
    load_tensors(Path("dataset.npz"), Path(sys.argv[1]), "cpu")
run_stage("train", main)
"""


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # "report", "model" or "stats": which process reads the file
    target: str  # the damaged file, relative to the case's folder
    content: bytes | None  # None: a sparse file larger than any model
    expect: str = "error"  # "error", or "any" (a random flip may leave a valid file)
    names: str = ""  # words the line must hold besides the file's name


# ---- the damage


def json_edit(text: bytes, edit) -> bytes:
    record = json.loads(text)
    edit(record)
    return json.dumps(record, indent=2).encode()  # NaN and Infinity as json.dumps writes them


def generic(kind: str, target: str, original: bytes, rng: random.Random) -> list[Case]:
    """What can happen to any file: cut short, emptied, garbage, an invalid byte, a random flip."""
    at = rng.randrange(1, len(original))
    flipped = bytearray(original)
    flipped[at] ^= 1 << rng.randrange(8)
    return [
        Case(
            f"{target} truncated",
            kind,
            target,
            original[: len(original) // 2],
            expect="any" if target.endswith(".csv") else "error",
        ),  # a CSV cut after a whole number is still a table
        Case(f"{target} empty", kind, target, b""),
        Case(f"{target} garbage", kind, target, b"garbage"),
        Case(f"{target} 0xff byte", kind, target, original[:at] + b"\xff" + original[at:]),
        Case(f"{target} random flip at {at}", kind, target, bytes(flipped), expect="any"),
    ]


def report_cases(rng: random.Random) -> list[Case]:
    def text(target):
        return (ROOT / target).read_bytes()

    cases = []
    for target in (
        "metrics/train/nll.json",
        "metrics/eval/mse.json",
        "metrics/shift/cnn.json",
        "metrics/sweep.json",
        "metrics/stats.json",
        "logs/download.json",
        "logs/train/small.json",
        "plots/train/nll.csv",
        "plots/train/seeds/mse.csv",
        "plots/shift/grid/cnn.csv",
        "plots/sweep/curves.csv",
    ):
        cases += generic("report", target, text(target), rng)
    for target in ("metrics/train/nll.json", "logs/download.json", "metrics/sweep.json"):
        cases.append(Case(f"{target} [1, 2]", "report", target, b"[1, 2]", names="not a mapping"))
    train, evaluated = "metrics/train/nll.json", "metrics/eval/mse.json"
    cases += [
        Case(
            "NaN accuracy",
            "report",
            train,
            json_edit(text(train), lambda r: r.update(val_accuracy=float("nan"))),
            names="NaN",
        ),
        Case(
            "infinite gap",
            "report",
            evaluated,
            json_edit(text(evaluated), lambda r: r.update(overfit_gap=float("inf"))),
            names="Infinity",
        ),
        Case(
            "1e999",
            "report",
            evaluated,
            text(evaluated).replace(b'"val_loss": ', b'"val_loss": 1e999, "x": '),
            names="1e999",
        ),
        Case(
            "huge accuracy",
            "report",
            train,
            json_edit(text(train), lambda r: r.update(val_accuracy=1e300)),
            names="val_accuracy",
        ),
        Case(
            "a 5000-digit count",
            "report",
            evaluated,
            text(evaluated).replace(
                b'"n_parameters": ', b'"n_parameters": ' + b"9" * 5000 + b', "x": '
            ),
            names="unreadable JSON",
        ),
        Case(
            "accuracy as a string",
            "report",
            train,
            json_edit(text(train), lambda r: r.update(val_accuracy="0.8")),
            names="val_accuracy",
        ),
        Case(
            "no recipe",
            "report",
            train,
            json_edit(text(train), lambda r: r.pop("recipe")),
            names="recipe",
        ),
        Case(
            "confusion matrix of strings",
            "report",
            evaluated,
            json_edit(
                text(evaluated),
                lambda r: r["confusion_matrix"].update(rows_actual_cols_predicted=[["a"]]),
            ),
            names="rows_actual_cols_predicted",
        ),
        Case(
            "a shift ring missing",
            "report",
            "metrics/shift/cnn.json",
            json_edit(text("metrics/shift/cnn.json"), lambda r: r["accuracy_by_shift"].pop("8")),
            names="lacks shift 8",
        ),
        Case(
            "sweep configs a list",
            "report",
            "metrics/sweep.json",
            json_edit(text("metrics/sweep.json"), lambda r: r.update(configs=[])),
            names="configs",
        ),
        Case(
            "std 0 for the report",
            "report",
            "metrics/stats.json",
            json_edit(text("metrics/stats.json"), lambda r: r.update(std=[0.2, 0, 0.2])),
            names="std of channel 1",
        ),
        Case(
            "download url a number",
            "report",
            "logs/download.json",
            b'{"url": 7, "md5": "x"}',
            names="url",
        ),
        Case(
            "NaN in a curve",
            "report",
            "plots/train/nll.csv",
            text("plots/train/nll.csv")
            .replace(b"\n1,", b"\n1,nan,", 1)
            .replace(b"\n1,nan,0.", b"\n1,nan,", 1),
            names="NaN",
        ),
        Case(
            "header only",
            "report",
            "plots/train/nll.csv",
            text("plots/train/nll.csv").split(b"\n")[0] + b"\n",
            names="header without rows",
        ),
        Case(
            "a column renamed",
            "report",
            "plots/shift/grid/cnn.csv",
            text("plots/shift/grid/cnn.csv").replace(b"accuracy", b"acc", 1),
            names="no column accuracy",
        ),
        Case(
            "text in a number column",
            "report",
            "plots/sweep/curves.csv",
            text("plots/sweep/curves.csv").replace(b"\nw2,0,1,", b"\nw2,zero,1,", 1),
            names="column seed holds 'zero'",
        ),
    ]
    return cases


def model_files() -> dict[str, tuple[bytes, object, dict]]:
    """A small mlp and cnn as the training stage writes them: (bytes, config, state_dict)."""
    from birdplane.models import ModelConfig, build_model, model_bytes

    found = {}
    mlp, cnn = ModelConfig(hidden=(8,)), ModelConfig(arch="cnn", channels=(4, 4), hidden=(8,))
    for name, cfg in (("mlp", mlp), ("cnn", cnn)):
        model = build_model(cfg)
        found[name] = (
            model_bytes(model, cfg),
            cfg,
            {k: v.clone() for k, v in model.state_dict().items()},
        )
    return found


def saved(obj) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


class Hostile:
    def __reduce__(self):
        return os.system, ("touch pwned",)


def model_cases(rng: random.Random) -> list[Case]:
    import torch

    files, target, cases = model_files(), "models/nll.pt", []
    for arch, (blob, cfg, state) in files.items():
        for i, cut in enumerate((0.25, 0.5, 0.99)):
            cases.append(
                Case(
                    f"{arch} truncated to {cut:.0%}", "model", target, blob[: int(len(blob) * cut)]
                )
            )
        for i in range(3):
            flipped = bytearray(blob)
            flipped[rng.randrange(len(blob))] ^= 0xFF
            cases.append(
                Case(f"{arch} random flip {i}", "model", target, bytes(flipped), expect="any")
            )

        def variant(config=None, state_edit=None, name="", words=""):
            c = {**cfg.to_dict(), **(config or {})}
            s = dict(state)
            if state_edit:
                state_edit(s)
            cases.append(
                Case(
                    f"{arch} {name}",
                    "model",
                    target,
                    saved({"config": c, "state_dict": s}),
                    names=words,
                )
            )

        first = next(iter(state))
        variant({"hidden": (200_000,)}, name="hidden 200000", words="outside 1..65,536")
        variant(
            {"hidden": (60_000,)},
            name="hidden 60000",  # the cnn's 15 M are within the bound: shapes
            words="more than params.yaml allows" if arch == "mlp" else "needs [60000, 256]",
        )
        variant({"evil": 1}, name="an unknown key", words="unknown config key")
        variant({"hidden": "8"}, name="hidden a string", words="config hidden")
        variant({"n_classes": 3}, name="three classes", words="predicts 3 classes")
        variant(
            state_edit=lambda s: s.update({first: s[first][:1]}),
            name="a wrong shape",
            words="has shape",
        )
        variant(
            state_edit=lambda s: s.update({first: s[first].double()}),
            name="float64",
            words="float64",
        )
        variant(
            state_edit=lambda s: s.update({first: torch.full_like(s[first], float("nan"))}),
            name="NaN weights",
            words="NaN",
        )
        variant(state_edit=lambda s: s.pop(first), name="a layer missing", words="lacks")
    blob, cfg, state = files["mlp"]
    cases += [
        Case("not a zip", "model", target, b"garbage", names="not a zip file"),
        Case("empty", "model", target, b"", names="not a zip file"),
        Case(
            "a hostile pickle",
            "model",
            target,
            saved({"config": cfg.to_dict(), "state_dict": state, "x": Hostile()}),
            names="nothing in the file was run",
        ),
        Case("a list", "model", target, saved([1, 2]), names="not a config and a state_dict"),
        Case(
            "a state_dict of lists",
            "model",
            target,
            saved({"config": cfg.to_dict(), "state_dict": [1]}),
            names="not a mapping",
        ),
        Case(
            "larger than any model",
            "model",
            target,
            None,
            names="more than a file of models within",
        ),
    ]
    return cases


def stats_cases(rng: random.Random) -> list[Case]:
    original, target = (ROOT / "metrics/stats.json").read_bytes(), "metrics/stats.json"
    cases = generic("stats", target, original, rng)
    edits = {
        "std 0": (lambda r: r.update(std=[0.25, 0.0, 0.26]), "std of channel 1 (green) is 0.0"),
        "std negative": (lambda r: r.update(std=[-0.25, 0.25, 0.26]), "std of channel 0"),
        "std huge": (lambda r: r.update(std=[1e300, 0.25, 0.26]), "std of channel 0"),
        "std NaN": (lambda r: r.update(std=[float("nan"), 0.25, 0.26]), "NaN"),
        "mean infinite": (lambda r: r.update(mean=[float("inf"), 0.4, 0.4]), "Infinity"),
        "two channels": (lambda r: r.update(mean=[0.4, 0.4]), "mean has 2 values"),
        "no std": (lambda r: r.pop("std"), "std is missing"),
        "std a string": (lambda r: r.update(std="0.25"), "not a list"),
        "a list": (lambda r: r.clear(), "mean is missing"),
    }
    for name, (edit, words) in edits.items():
        cases.append(Case(name, "stats", target, json_edit(original, edit), names=words))
    cases.append(Case("[1, 2]", "stats", target, b"[1, 2]", names="not a mapping"))
    return cases


def all_cases() -> list[Case]:
    rng = random.Random(SEED)
    return report_cases(rng) + model_cases(rng) + stats_cases(rng)


# ---- running them


def prepare(case: Case, folder: Path) -> list[str]:
    """The case's folder with the damaged file in place; returns what to run there: the report
    stage's command, or the driver's code and arguments for the fork server."""
    if case.kind == "report":
        for item in ("metrics", "plots", "logs"):
            shutil.copytree(ROOT / item, folder / item)
        shutil.copy2(ROOT / "params.yaml", folder / "params.yaml")
        run = [sys.executable, str(ROOT / "pipeline" / "report.py"), *stage_args("report.py")]
    elif case.kind == "model":
        run = [MODEL_DRIVER, case.target]
    else:
        from birdplane.data import Split, save_dataset
        import numpy as np

        images = np.random.default_rng(0).integers(0, 256, (8, 3, 32, 32), dtype=np.uint8)
        split = Split(images, np.arange(8, dtype=np.int64) % 2)
        save_dataset(folder / "dataset.npz", split, split, ["airplane", "bird"])
        run = [STATS_DRIVER, case.target]
    path = folder / case.target
    path.parent.mkdir(parents=True, exist_ok=True)
    if case.content is None:
        from birdplane.modelfile import MAX_FILE_BYTES

        with path.open("wb") as f:
            f.truncate(MAX_FILE_BYTES + 1)  # sparse: no disk used
    else:
        path.write_bytes(case.content)
    return run


class ForkServer:
    """FORK_SERVER in a process of its own; `run` one driver in a child forked from it."""

    def __init__(self):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", FORK_SERVER, str(RUN_TIMEOUT_S)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(
        self, code: str, args: list[str], cwd: Path, stderr: Path
    ) -> tuple[int | None, float, int]:
        request = {"cwd": str(cwd), "code": code, "args": args, "stderr": str(stderr)}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        answer = json.loads(self.proc.stdout.readline())
        return answer["status"], answer["seconds"], answer["rss"]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def run_measured(command: list[str], cwd: Path) -> tuple[int | None, str, float, int]:
    """(exit status or None on timeout, stderr, seconds, peak RSS in bytes) of one process; wait4
    gives this child's own peak memory."""
    with open(cwd.parent / f"{cwd.name}.err", "w+b") as err:
        start = time.monotonic()
        proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err)
        status = None
        while True:
            pid, code, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                status = os.waitstatus_to_exitcode(code)
                break
            if time.monotonic() - start > RUN_TIMEOUT_S:
                proc.kill()
                _, _, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        proc.returncode = (
            status if status is not None else -9
        )  # reaped here: Popen must not wait again
        seconds = time.monotonic() - start
        err.seek(0)
        return status, err.read().decode("utf-8", "replace"), seconds, usage.ru_maxrss * 1024


STAGE = {"report": "report", "model": "evaluate", "stats": "train"}


def check(case: Case, base: Path, index: int, server: ForkServer | None = None) -> str | None:
    folder = base / f"case{index}"
    folder.mkdir()
    run = prepare(case, folder)
    before = snapshot(folder)
    if server is None:
        status, stderr, seconds, rss = run_measured(run, folder)
    else:
        err = base / f"case{index}.err"
        status, seconds, rss = server.run(run[0], run[1:], folder, err)
        stderr = err.read_text(encoding="utf-8", errors="replace")
    after = snapshot(folder)
    lines = stderr.strip().splitlines()
    problems = []
    if status is None:
        problems.append(f"still running after {RUN_TIMEOUT_S} s")
    if rss > MAX_RSS:
        problems.append(f"peak memory {rss / 2**30:.2f} GiB")
    if "Traceback" in stderr:
        problems.append("a traceback")
    if "weights_only" in stderr:  # torch's advice after a refused pickle: the unsafe fix
        problems.append("advice about weights_only")
    if after != before:
        changed = sorted(set(after.items()) ^ set(before.items()))
        problems.append(f"files changed: {changed[:3]}")
    if status == 1 or case.expect == "error":
        prefix = f"error in stage {STAGE[case.kind]}: "
        if status != 1 or len(lines) != 1 or not lines[0].startswith(prefix):
            problems.append(f"exit {status} with {len(lines)} lines")
        elif case.expect == "error" and (
            f"{case.target}" not in lines[0] or case.names not in lines[0]
        ):
            problems.append(f"the line does not name {case.target!r} and {case.names!r}")
    elif status != 0:
        problems.append(f"exit {status}")
    if (folder / "pwned").exists():
        problems.append("the hostile pickle ran")
    if problems:
        return f"{case.name} ({case.kind}, {case.target}): {'; '.join(problems)}\n    {stderr.strip()[-600:]}"
    return None


def test_at_least_50_inter_stage_files_of_every_kind():
    cases = all_cases()
    assert len(cases) >= 50 and {c.kind for c in cases} == {"report", "model", "stats"}
    assert len({(c.kind, c.name) for c in cases}) == len(cases)


def test_every_damaged_input_ends_in_one_line_quickly_and_writes_nothing(tmp_path):
    cases = list(enumerate(all_cases()))
    server = ForkServer()
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:  # the report's processes beside the forks
            reports = pool.map(
                lambda ic: check(ic[1], tmp_path, ic[0]),
                [ic for ic in cases if ic[1].kind == "report"],
            )
            forked = [check(c, tmp_path, i, server) for i, c in cases if c.kind != "report"]
            failures = [f for f in [*reports, *forked] if f]
    finally:
        server.close()
    assert not failures, f"{len(failures)} of {len(cases)} cases:\n" + "\n".join(failures)
