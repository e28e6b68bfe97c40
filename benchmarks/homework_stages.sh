#!/usr/bin/env bash
# The issue's "whole pipeline" figure: only the homework stages (download from the mirror, stats,
# nll, mse and small at 100 epochs, evaluate, shift-test, report over those three), each forced,
# timed by benchmarks/pipeline_stages.sh. Runs in a temporary git worktree of HEAD whose params.yaml
# keeps only the three homework variants (no translation variants, the committed sweep results), so
# the project's own outputs and MLflow store are untouched.
#   BIRDPLANE_DATA_URL=... BIRDPLANE_DATA_MD5=... bash benchmarks/homework_stages.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# the editable install imports birdplane from $root/src: HEAD's code must be what is checked out there
git diff --quiet HEAD -- src pipeline || { echo "commit src/ and pipeline/ first" >&2; exit 1; }
export BIRDPLANE_VENV="${BIRDPLANE_VENV:-$root/.venv}"
tree=$(mktemp -d)/homework
git worktree add --quiet --detach "$tree" HEAD
trap 'git -C "$root" worktree remove --force "$tree"' EXIT
"$BIRDPLANE_VENV/bin/python" - "$tree/params.yaml" <<'PY'
import sys, yaml
path = sys.argv[1]
with open(path) as f:
    params = yaml.safe_load(f)
params["train"]["variants"] = {k: params["train"]["variants"][k] for k in ("nll", "mse", "small")}
params["report"].update(augmented="", cnn="")
with open(path, "w") as f:
    yaml.safe_dump(params, f, sort_keys=False)
PY
cd "$tree"
bash benchmarks/pipeline_stages.sh download stats train@nll train@mse train@small evaluate shift-test report
