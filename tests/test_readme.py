"""The README stays a student's first three minutes: short, its results rendered from the committed
metrics (never typed by hand), every link pointing at a file that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from birdplane.report import readme

ROOT = Path(__file__).resolve().parents[1]


def test_the_readme_results_are_the_committed_metrics():
    """`python -m birdplane.report.readme --check`: the block equals what the report renders from
    metrics/, plots/ and logs/ as committed."""
    assert readme.main(["--root", str(ROOT), "--check"]) == 0, (
        "README.md's results are stale: run `python -m birdplane.report.readme` and commit"
    )


def test_a_stale_number_fails_the_check(tmp_path):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"\| nll \| (\d+\.\d\d) %", text)
    assert match, "the results table lists the nll variant"
    stale = text.replace(match.group(0), match.group(0).replace(match.group(1), "12.34"), 1)
    for name in ("params.yaml", "metrics", "plots", "logs"):
        (tmp_path / name).symlink_to(ROOT / name)
    (tmp_path / "README.md").write_text(stale, encoding="utf-8")
    assert readme.main(["--root", str(tmp_path), "--check"]) == 1
    assert readme.main(["--root", str(tmp_path)]) == 0
    assert (tmp_path / "README.md").read_text(encoding="utf-8") == text


def test_a_readme_without_the_markers_is_refused():
    with pytest.raises(ValueError, match="no block"):
        readme.updated("# a README\n", "block")


def test_the_readme_is_short_and_its_links_exist():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    local = [link for link in links if not re.match(r"[a-z]+://", link)]
    assert local and [link for link in local if not (ROOT / link).exists()] == []


def test_every_doc_link_points_at_a_file_that_exists():
    for doc in (ROOT / "docs").glob("*.md"):
        for link in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", doc.read_text(encoding="utf-8")):
            if not re.match(r"[a-z]+://", link):
                assert (doc.parent / link).exists(), f"{doc.name}: {link}"
