#!/usr/bin/env bash
# Time every stage of the pipeline (or the stages named as arguments) on its own, forced, in
# order, with peak memory and the time the stage's Python process spent importing modules (torch,
# mlflow, ...), then print a table.
#   BIRDPLANE_DATA_URL=... BIRDPLANE_DATA_MD5=... bash benchmarks/pipeline_stages.sh [STAGE ...]
# Run from the project root with .venv built (make venv; BIRDPLANE_VENV names another venv).
# "wall" includes DVC's own start and bookkeeping; "imports" is measured inside the stage's process
# with python -X importtime (the sum of the top-level imports' cumulative times), through a
# `python` shim put first on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${BIRDPLANE_VENV:-$PWD/.venv}"
export PATH="$venv/bin:$PATH"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/bin"
cat > "$work/bin/python" <<EOF
#!/usr/bin/env bash
exec "$venv/bin/python" -X importtime "\$@" 2>>"\$BIRDPLANE_IMPORT_LOG"
EOF
chmod +x "$work/bin/python"
stages="${*:-$(dvc stage list --name-only)}"
for s in $stages; do
  export BIRDPLANE_IMPORT_LOG="$work/imports-$s.log"
  : > "$BIRDPLANE_IMPORT_LOG"
  PATH="$work/bin:$PATH" /usr/bin/time -f "$s %e %M" -a -o "$work/times" dvc repro --single-item --force "$s" >/dev/null
  # top-level imports have exactly one space before the module name
  awk -F'|' -v s="$s" '/^import time:/ && $3 ~ /^ [^ ]/ { us += $2 } END { printf "%s %.2f\n", s, us / 1e6 }' \
    "$BIRDPLANE_IMPORT_LOG" >> "$work/imports"
  if grep -q -v '^import time:' "$BIRDPLANE_IMPORT_LOG"; then grep -v '^import time:' "$BIRDPLANE_IMPORT_LOG" >&2; fi
done
printf '| stage | wall time (s) | imports (s) | peak RSS (MB) |\n| --- | ---: | ---: | ---: |\n'
join <(sort "$work/times") <(sort "$work/imports") | awk -v order="$(echo $stages)" '
  { wall[$1] = $2; rss[$1] = $3; imp[$1] = $4 }
  END {
    n = split(order, names, " ")
    for (i = 1; i <= n; i++) { s = names[i]
      printf "| `%s` | %.1f | %.1f | %.0f |\n", s, wall[s], imp[s], rss[s] / 1024; total += wall[s]; imports += imp[s] }
    printf "| total | %.1f | %.1f (%.0f%%) | |\n", total, imports, 100 * imports / total
  }'
