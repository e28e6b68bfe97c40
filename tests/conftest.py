"""Shared fixtures: tiny official-format archives, a real HTTP server on 127.0.0.1, and a real
DVC project in a temporary git repo."""

from __future__ import annotations

import contextlib
import copy
import http.server
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

from birdplane import numerics

# as every stage does, before numpy and torch load: the tests compute with the pipeline's kernels
numerics.install()

import pytest  # noqa: E402
import yaml  # noqa: E402

from cifar_fixture import make_archive  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's bin: python, dvc, mlflow


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves files; `behaviour` can fail the first requests or cut a response short."""

    behaviour: dict = {}

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        b = self.server.behaviour
        b["requests"] = b.get("requests", 0) + 1
        if b.get("fail_first", 0) >= b["requests"]:
            self.send_error(503, "try again")
            return
        if b.get("truncate"):
            path = Path(self.translate_path(self.path))
            data = path.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.close_connection = True
            return
        super().do_GET()


@contextlib.contextmanager
def serve(www: Path):
    """A real HTTP server on 127.0.0.1 serving `www`; yields (base_url, www, behaviour)."""
    www.mkdir(parents=True, exist_ok=True)
    handler = lambda *a, **kw: _Handler(*a, directory=str(www), **kw)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.behaviour = {}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", www, server.behaviour
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def http_server(tmp_path):
    with serve(tmp_path / "www") as s:
        yield s


@pytest.fixture
def tiny_archive(http_server):
    """A tiny official-layout archive served over HTTP; yields (url, md5, path)."""
    base, www, _ = http_server
    path, md5 = make_archive(www / "cifar-10-python.tar.gz")
    return f"{base}/cifar-10-python.tar.gz", md5, path


def run(args, cwd, env=None, check=False, timeout=600) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def project_env(url: str, md5: str, **extra) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "BIRDPLANE_", "DVC_"))
    }
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        BIRDPLANE_DATA_URL=url,
        BIRDPLANE_DATA_MD5=md5,
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@t.invalid",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@t.invalid",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


TINY_TRAIN = {"epochs": 2, "batch_size": 16, "checkpoint_epoch": 2}
VARIANTS = ("nll", "mse", "small", "augmented", "cnn")
TINY_SWEEP = {
    "seeds": 2,
    "epochs": 2,
    "widths": [2, 8],
    "deep": [16, 8],
    "base_width": 8,
    "regularizers": {
        "weight_decay": {"weight_decay": 0.002},
        "dropout": {"dropout": 0.5},
        "early_stopping": {"patience": 1},
    },
    "losses": ["nll", "mse"],
    "learning_rates": [0.01, 0.1],
}


def copy_project(
    dest: Path, items=("dvc.yaml", "params.yaml", "pipeline", "src", ".gitignore")
) -> Path:
    """Copy these files and folders of the project (without caches) into `dest`."""
    dest.mkdir(parents=True)
    for item in items:
        src = ROOT / item
        if src.is_dir():
            shutil.copytree(
                src, dest / item, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
            )
        else:
            shutil.copy2(src, dest / item)
    return dest


def make_project(dest: Path, params_edit=None) -> Path:
    """Copy the pipeline into a fresh git repo with DVC initialised, params shrunk for speed."""
    copy_project(dest)
    with (dest / "params.yaml").open() as f:
        params = yaml.safe_load(f)
    params["train"].update(TINY_TRAIN)
    params["train"]["variants"]["nll"]["hidden"] = [64]
    # 3072-8-2 with MSE: the sweep's mse_lr0.01 (base_width 8), read from checkpoints/mse.pt
    params["train"]["variants"]["mse"]["hidden"] = [8]
    params["train"]["variants"]["small"]["hidden"] = [8]
    params["train"]["variants"]["augmented"]["hidden"] = [16]
    params["train"]["variants"]["cnn"].update(channels=[4, 4], hidden=[8], epochs=2)
    params["sweep"] = copy.deepcopy(TINY_SWEEP)  # a params_edit may change it in place
    if params_edit:
        params_edit(params)
    with (dest / "params.yaml").open("w") as f:
        yaml.safe_dump(params, f, sort_keys=False)
    env = project_env("", "")
    run(["git", "init", "-q"], dest, env, check=True)
    run([str(BIN / "dvc"), "init", "-q"], dest, env, check=True)
    run([str(BIN / "dvc"), "config", "core.analytics", "false"], dest, env, check=True)
    run(["git", "add", "-A"], dest, env, check=True)
    run(["git", "commit", "-qm", "init"], dest, env, check=True)
    return dest


def dvc(project: Path, env: dict, *args, check=False, timeout=900) -> subprocess.CompletedProcess:
    return run([str(BIN / "dvc"), *args], project, env, check=check, timeout=timeout)


def stage_args(script: str, variant: str | None = None) -> list[str]:
    """The arguments dvc.yaml's cmd gives `script` (the paths; with `variant`, a `foreach` stage's
    command for that variant, e.g. train.py's)."""
    with (ROOT / "dvc.yaml").open() as f:
        for spec in yaml.safe_load(f)["stages"].values():
            spec = spec.get("do", spec)
            words = spec.get("cmd", "").split()
            if words[:2] == ["python", f"pipeline/{script}"]:
                return [w.replace("${key}", variant or "") for w in words[2:]]
    return []


def stage(
    project: Path, env: dict, script: str, *args, variant: str | None = None
) -> subprocess.CompletedProcess:
    """Run one stage script directly, as dvc.yaml's cmd does; `args` add to (or override) its own."""
    return run(
        [str(BIN / "python"), f"pipeline/{script}", *stage_args(script, variant), *args],
        project,
        env,
    )


def files_under(path: Path) -> list[str]:
    return (
        sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())
        if path.exists()
        else []
    )


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory):
    """One full `dvc repro` of a tiny project, shared by the end-to-end tests; yields (project, env)."""
    from cifar_fixture import make_archive

    base = tmp_path_factory.mktemp("pipeline")
    with serve(base / "www") as (url, www, _):
        _, md5 = make_archive(www / "cifar-10-python.tar.gz", per_class_train=16, per_class_test=8)
        proj = make_project(base / "proj")
        env = project_env(f"{url}/cifar-10-python.tar.gz", md5)
        r = dvc(proj, env, "repro")
        assert r.returncode == 0, r.stdout + r.stderr
        yield proj, env


@contextlib.contextmanager
def headless_chromium():
    """A page of Debian's Chromium, headless, through Playwright, in a fresh user-data dir with
    background networking off. Skips where there is no Chromium, fails under CI (`.ci/run`
    installs it)."""
    import tempfile

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: .ci/run installs Debian's chromium")
        pytest.skip("no chromium here (apt-get install chromium); CI installs it")
    from playwright.sync_api import sync_playwright

    args = [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--no-first-run",
        "--disable-component-update",
        "--disable-sync",
    ]
    with sync_playwright() as p, tempfile.TemporaryDirectory() as user_data:
        ctx = p.chromium.launch_persistent_context(
            user_data, executable_path=browser, headless=True, args=args
        )
        try:
            yield ctx.new_page()
        finally:
            ctx.close()
