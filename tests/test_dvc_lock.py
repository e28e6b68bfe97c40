"""The committed dvc.lock is consistent: it records the stages of dvc.yaml and nothing else, and
every dependency that another stage produces has the hash that stage recorded for it. A stale
entry (a stage that no longer exists) or a lock committed halfway through a re-run fails here."""

import hashlib
import json
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def load(name: str) -> dict:
    with (ROOT / name).open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def defined_stages() -> set[str]:
    """dvc.yaml's stage names, `foreach` stages expanded over the params they iterate."""
    params, names = load("params.yaml"), set()
    for name, stage in load("dvc.yaml")["stages"].items():
        if "foreach" not in stage:
            names.add(name)
            continue
        keys = stage["foreach"].strip("${} ").split(".")
        items = params
        for k in keys:
            items = items[k]
        names |= {f"{name}@{key}" for key in items}
    return names


def md5_file(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def git_files(folder: str) -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "--", folder], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return out.stdout.split()


def folder_hash(folder: str, produced: dict[str, str]) -> tuple[str, int]:
    """DVC's hash of a folder (dvc_data's tree digest): the md5 of the sorted JSON list of
    {md5, relpath}, here from the files other stages recorded under it plus the files git tracks
    there (the .gitignore DVC writes), as a clean clone has them."""
    entries = {p[len(folder) + 1 :]: m for p, m in produced.items() if p.startswith(folder + "/")}
    for f in git_files(folder):
        entries.setdefault(f[len(folder) + 1 :], md5_file(ROOT / f))
    listing = [{"md5": m, "relpath": r} for r, m in sorted(entries.items())]
    return hashlib.md5(json.dumps(listing, sort_keys=True).encode()).hexdigest() + ".dir", len(
        listing
    )


def test_the_lock_records_exactly_the_stages_of_dvc_yaml():
    locked = set(load("dvc.lock")["stages"])
    assert locked - defined_stages() == set(), "stale entries: stages that dvc.yaml no longer has"
    assert defined_stages() - locked == set(), "stages never run: `dvc repro` and commit dvc.lock"


def test_every_dependency_has_the_hash_its_producing_stage_recorded():
    lock = load("dvc.lock")["stages"]
    produced = {o["path"]: o["md5"] for s in lock.values() for o in s.get("outs", [])}
    checked, wrong = 0, []
    for name, stage in lock.items():
        for dep in stage.get("deps", []):
            path = dep["path"]
            if path in produced:
                expected = produced[path]
            elif any(p.startswith(path + "/") for p in produced):
                expected, n = folder_hash(path, produced)
                if dep.get("nfiles") != n:
                    wrong.append(
                        f"{name}: {path} has {dep.get('nfiles')} files in the lock, {n} produced"
                    )
            else:
                continue  # code or data no stage produces
            checked += 1
            if dep["md5"] != expected:
                wrong.append(
                    f"{name}: {path} recorded {dep['md5']}, its producer recorded {expected}"
                )
    assert checked >= 20 and not wrong, "\n".join(wrong)
