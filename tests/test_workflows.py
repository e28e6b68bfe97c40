"""The GitHub workflows pass zizmor's offline audit and GitHub's workflow schema, pin every action to
a release commit, keep the token off the disk, and test on the three systems students use."""

import os
import re
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
# owner/repo[/path]@<commit> # vX.Y.Z: the commit is what runs (a tag can be moved), the comment
# says which release it is
PINNED = re.compile(r"[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40} # v\d+\.\d+\.\d+")
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(.*?)\s*$", re.M)


def tool(name: str) -> str:
    """A dev dependency's command, beside this interpreter (bin/ or Scripts/, venv or not)."""
    found = shutil.which(name, path=sysconfig.get_path("scripts"))
    if found is None:
        message = f"{name} is missing: it is a dev dependency pinned in requirements.lock (make venv installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def check(args, *files) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*args, *map(str, files)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=120,
    )  # zizmor's log has emoji: not the Windows code page


def load(path: Path) -> dict:
    wf = yaml.safe_load(path.read_text(encoding="utf-8"))
    wf["on"] = wf.pop(True, wf.get("on"))  # YAML 1.1 reads the key `on` as true
    return wf


def steps(wf: dict):
    for job in wf["jobs"].values():
        yield from job.get("steps", [])


def broken_copy(tmp_path: Path) -> Path:
    """tests.yml with its checkout unpinned, keeping its credentials, and a misspelt job key."""
    text = (ROOT / ".github/workflows/tests.yml").read_text(encoding="utf-8")
    text, n = re.subn(
        r"actions/checkout@\S+ # \S+\n\s+with:\n\s+persist-credentials: false[^\n]*",
        "actions/checkout@v7",
        text,
    )
    assert n == 1
    bad = tmp_path / "broken.yml"
    bad.write_text(text.replace("timeout-minutes:", "timeout:"), encoding="utf-8")
    return bad


def test_there_are_workflows():
    assert {p.name for p in WORKFLOWS} >= {"reproduce.yml", "tests.yml"}


def test_zizmor_offline_audit_finds_nothing(tmp_path):
    zizmor = [tool("zizmor"), "--offline", "--no-progress", "--color=never"]
    r = check(zizmor, *WORKFLOWS)
    assert r.returncode == 0, r.stdout + r.stderr
    # and the audit is live: an unpinned checkout that keeps its credentials is caught
    r = check(zizmor, broken_copy(tmp_path))
    assert r.returncode != 0 and "unpinned-uses" in r.stdout and "artipacked" in r.stdout, (
        r.stdout + r.stderr
    )


def test_workflows_match_githubs_schema(tmp_path):
    schema = [tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows"]
    r = check(schema, *WORKFLOWS)
    assert r.returncode == 0, r.stdout + r.stderr
    r = check(schema, broken_copy(tmp_path))
    assert r.returncode == 1 and "'timeout' was unexpected" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.name for p in WORKFLOWS])
def test_every_action_is_pinned_to_a_release_commit(path):
    text = path.read_text(encoding="utf-8")
    refs = USES_LINE.findall(text)
    assert len(refs) == sum(
        "uses" in s for s in steps(load(path))
    )  # no `uses` the line scan missed
    assert refs and all(PINNED.fullmatch(r) for r in refs), refs


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.name for p in WORKFLOWS])
def test_least_privilege(path):
    wf = load(path)
    assert wf.get("permissions") in ({}, {"contents": "read"}), (
        "top-level permissions: {} or contents: read"
    )
    for name, job in wf["jobs"].items():
        assert "write" not in str(job.get("permissions", {})), name
        assert job.get("timeout-minutes"), f"{name} has no timeout-minutes"
    checkouts = [s for s in steps(wf) if s.get("uses", "").startswith("actions/checkout@")]
    assert checkouts and all(
        s.get("with", {}).get("persist-credentials") is False for s in checkouts
    )


def test_the_fast_tests_run_on_linux_macos_and_windows():
    wf = load(ROOT / ".github/workflows/tests.yml")
    assert {"push", "pull_request"} <= set(wf["on"])
    (job,) = wf["jobs"].values()
    matrix = job["strategy"]["matrix"]
    assert (
        set(matrix["os"]) == {"ubuntu-latest", "macos-latest", "windows-latest"}
        and "3.11" in matrix["python"]
    )
    runs = "\n".join(s.get("run", "") for s in job["steps"])
    for needle in (
        "requirements=requirements.lock",
        '-r "$requirements"',
        "--no-deps -e .",
        'pytest -m "not e2e"',
    ):
        assert needle in runs


def test_the_reproduction_workflow_keeps_its_parts():
    text = (ROOT / ".github/workflows/reproduce.yml").read_text(encoding="utf-8")
    for needle in (
        "workflow_dispatch",
        "pull_request",
        "cache: pip",
        "actions/cache@",
        "pip install -r requirements.lock",
        "birdplane.fingerprint --check",
        "birdplane.reproduce --rerun --mode exact",
        "birdplane.pr_summary --base",
        "fetch-depth: 0",
        "actions/upload-artifact@",
        "vars.BIRDPLANE_DATA_URL",
        "vars.BIRDPLANE_DATA_MD5",
        "apt-get install --yes qemu-user",  # a second CPU model: an emulated Intel Haswell
        "bash tools/emulated_fingerprint.sh",
    ):
        assert needle in text
    assert (
        "download.pytorch.org/whl/cpu" not in text
    )  # the committed bits are the lock's build of torch


@pytest.mark.parametrize("path", [ROOT / ".github/workflows/tests.yml"], ids=["tests.yml"])
def test_cpu_install_takes_torch_from_the_lock_and_drops_every_cuda_package(path):
    """The fast tests' Linux jobs grep requirements.lock: torch and torchvision (markers and all) come from the
    CPU index, the rest of the lock without the CUDA build's packages. Applied here to the real lock."""
    text = path.read_text(encoding="utf-8")
    take = re.findall(r"grep -E '([^']+)' requirements\.lock", text)
    drop = re.findall(r"grep -vE '([^']+)' requirements\.lock", text)
    assert len(take) == len(drop) == 1
    lock = (ROOT / "requirements.lock").read_text(encoding="utf-8").splitlines()
    names = {
        line: re.split(r"[=<>!~ ;\[]", line, maxsplit=1)[0].lower()
        for line in lock
        if line and not line[0].isspace() and not line.startswith("#")
    }
    assert not any(line.rstrip().endswith("\\") for line in lock), (
        "continuation lines would survive the grep"
    )
    assert {names[line] for line in lock if re.search(take[0], line)} == {"torch", "torchvision"}
    kept = {names[line] for line in lock if line in names and not re.search(drop[0], line)}
    cuda = {
        n
        for n in names.values()
        if n in ("torch", "torchvision", "triton") or n.startswith(("nvidia-", "cuda-"))
    }
    assert kept == set(names.values()) - cuda and "torch" in cuda
