#!/usr/bin/env bash
# Time every stage of the pipeline on its own (forced), with peak memory, then print a table.
#   BIRDPLANE_DATA_URL=... BIRDPLANE_DATA_MD5=... bash benchmarks/pipeline_stages.sh
# Run from the project root with .venv built (make venv). Wall time includes DVC's own overhead
# and the stage's imports (torch, mlflow).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
stages=$(dvc stage list --name-only)
out=$(mktemp)
for s in $stages; do
  /usr/bin/time -f "$s %e %M" -a -o "$out" dvc repro --single-item --force "$s" >/dev/null
done
printf '| stage | wall time (s) | peak RSS (MB) |\n| --- | ---: | ---: |\n'
awk '{ printf "| `%s` | %.1f | %.0f |\n", $1, $2, $3 / 1024; total += $2 } END { printf "| total | %.1f | |\n", total }' "$out"
rm -f "$out"
