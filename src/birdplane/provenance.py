"""What produced a result: versions, machine, git commit, time. Logs only (logs/, MLflow tags): never
in a file a later stage depends on."""

from __future__ import annotations

import datetime as dt
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

PACKAGES = ("torch", "numpy", "pandas", "dvc", "mlflow", "pydantic")


def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            pass
    return out


def machine(device: str | None = None) -> dict[str, str | int | None]:
    import torch

    info: dict[str, str | int | None] = {
        "platform": platform.platform(),
        "processor": platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
    }
    if device and device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def cpu() -> tuple[str, set[str]]:
    """The CPU's model name and instruction-set flags (from /proc/cpuinfo where there is one)."""
    model, flags = "", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and not model:
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return model or platform.processor() or platform.machine(), flags


def release(version: str | None) -> str:
    """A package's release without the build tag: PyPI's torch 2.14.1 and PyTorch's 2.14.1+cu130
    are one release (the same CPU kernels' source and flags)."""
    return str(version).split("+")[0]


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


def record(device: str, git_commit: str | None) -> dict:
    """What a stage's log says about where and when it ran."""
    from birdplane import numerics

    return {
        "finished": now(),
        "git_commit": git_commit,
        "versions": versions(),
        "machine": machine(device),
        "numerics": numerics.describe(),
    }


# What makes the results: the code and the pipeline's definition. Not the outputs, which a running
# `dvc repro` rewrites (dvc.lock, metrics/, plots/) while later stages still start.
SOURCES = (
    ":/src",
    ":/pipeline",
    ":/params.yaml",
    ":/dvc.yaml",
    ":/pyproject.toml",
    ":/requirements.lock",
)


def git_commit(root: Path | None = None) -> str | None:
    """The commit the code ran from, with "-dirty" when the code or the pipeline's definition differ
    from it (the run then came from uncommitted changes, which the commit alone would hide); None
    outside git."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *args], cwd=root or Path.cwd(), capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    sha = git("rev-parse", "HEAD")
    if not sha:
        return None
    return (
        f"{sha}-dirty"
        if git("status", "--porcelain", "--untracked-files=no", "--", *SOURCES)
        else sha
    )
