"""requirements.lock is in sync with pyproject.toml, resolves for every supported platform and
Python, and is complete: on each target pip installs exactly what that target resolves to.

uv resolves from PyPI's metadata for a platform other than this one (--python-platform); nothing
is downloaded or installed."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]

_spec = importlib.util.spec_from_file_location("lock_tool", ROOT / "tools" / "lock.py")
lock_tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lock_tool)

PYTHONS = ["3.11", "3.12", "3.13"]
# uv's target triple, the marker values pip sees there, and the environment uv needs for it
TARGETS = {
    "linux-x86_64": (
        "x86_64-unknown-linux-gnu",
        dict(
            sys_platform="linux",
            platform_system="Linux",
            os_name="posix",
            platform_machine="x86_64",
        ),
        {},
    ),
    "linux-aarch64": (
        "aarch64-unknown-linux-gnu",
        dict(
            sys_platform="linux",
            platform_system="Linux",
            os_name="posix",
            platform_machine="aarch64",
        ),
        {},
    ),
    # uv assumes an older macOS by default; the Macs we support run 14 (Sonoma) or newer
    "macos-arm64": (
        "aarch64-apple-darwin",
        dict(
            sys_platform="darwin",
            platform_system="Darwin",
            os_name="posix",
            platform_machine="arm64",
        ),
        {"MACOSX_DEPLOYMENT_TARGET": "14.0"},
    ),
    "windows-x86_64": (
        "x86_64-pc-windows-msvc",
        dict(
            sys_platform="win32", platform_system="Windows", os_name="nt", platform_machine="AMD64"
        ),
        {},
    ),
}


@pytest.fixture(scope="module")
def uv() -> str:
    found = lock_tool.uv_binary()
    if found is None:
        message = "uv is missing: it is a dev dependency pinned in requirements.lock (make venv installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def pins(text: str) -> dict[str, tuple[str, Marker | None]]:
    """name -> (version, marker) of each `name==version ; marker` line; comments are not pins."""
    found = {}
    for line in text.splitlines():
        line = line.split(" #")[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        req = Requirement(line)
        (spec,) = req.specifier  # one exact pin per package
        assert spec.operator == "==", line
        name = canonicalize_name(req.name)
        assert name not in found, f"{name} is pinned twice"
        found[name] = (spec.version, req.marker)
    return found


def lock_pins() -> dict[str, tuple[str, Marker | None]]:
    return pins((ROOT / "requirements.lock").read_text(encoding="utf-8"))


def run(args, env_extra=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        args,
        cwd=ROOT,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        env={**os.environ, **(env_extra or {})},
        timeout=300,
    )


def test_lock_is_in_sync_with_pyproject(uv, tmp_path):
    """Regenerating the lock with its own command changes no pin, adds none and drops none."""
    out = tmp_path / "requirements.lock"
    done = run([sys.executable, str(ROOT / "tools" / "lock.py"), str(out)])
    assert done.returncode == 0, done.stderr
    new, old = pins(out.read_text(encoding="utf-8")), lock_pins()
    stale = {
        n: (old.get(n), new.get(n)) for n in old.keys() | new.keys() if old.get(n) != new.get(n)
    }
    assert not stale, (
        f"requirements.lock is out of date with pyproject.toml (run make lock): {stale}"
    )


def test_lock_pins_the_project_dependencies_but_not_the_project():
    lock = lock_pins()
    assert "birdplane" not in lock
    # torch imports setuptools at run time; the dev tools that make test and make lock use are pinned too
    assert {"torch", "setuptools", "uv", "zizmor", "check-jsonschema", "pytest"} <= lock.keys()
    assert lock["triton"][1] is not None and all(
        lock[n][1] is not None for n in lock if n.startswith("nvidia-")
    )


@pytest.mark.parametrize("python", PYTHONS)
@pytest.mark.parametrize("target", TARGETS)
def test_lock_resolves_and_is_complete_for(uv, target, python):
    """The target's own resolution, constrained by the lock, succeeds (so a wheel or sdist exists
    there for each pin), and the lock's markers select exactly that set of pins for the target."""
    triple, markers, env_extra = TARGETS[target]
    args = [
        uv,
        *lock_tool.compile_args(
            "--no-header", "--python-platform", triple, "--python-version", python
        ),
    ]
    # Every pin is exact and a release's metadata never changes, so uv's cache answers as PyPI
    # would, in 0.1 s instead of 1.5 s; PyPI is asked when the cache lacks something (or it fails).
    done = run([*args, "--offline"], env_extra)
    if done.returncode:
        done = run(args, env_extra)
    assert done.returncode == 0, (
        f"requirements.lock does not resolve for {target}, Python {python}:\n{done.stderr}"
    )
    resolved = {name: version for name, (version, _) in pins(done.stdout).items()}

    environment = dict(
        markers,
        python_version=python,
        python_full_version=f"{python}.0",
        implementation_name="cpython",
        implementation_version=f"{python}.0",
        platform_python_implementation="CPython",
    )
    selected = {
        name: version
        for name, (version, marker) in lock_pins().items()
        if marker is None or marker.evaluate(environment)
    }

    unpinned = {n: v for n, v in resolved.items() if selected.get(n) != v}
    assert not unpinned, (
        f"{target}, Python {python} needs what the lock does not pin for it: {unpinned}"
    )
    surplus = sorted(selected.keys() - resolved.keys())
    assert not surplus, (
        f"{target}, Python {python} would install pins it does not need (markers missing): {surplus}"
    )
