#!/usr/bin/env bash
# Time the pipeline as a user runs it, one `dvc repro --force` over every stage (or the stages named
# as arguments, each alone: --single-item), and break it down per stage: the stage process's wall
# time, the time it spent importing modules (torch, mlflow, ...) and its peak memory.
#   BIRDPLANE_DATA_URL=... BIRDPLANE_DATA_MD5=... bash benchmarks/pipeline_stages.sh [STAGE ...]
# Run from the project root with .venv built (make venv; BIRDPLANE_VENV names another venv).
# A `python` shim first on PATH runs each stage's process under /usr/bin/time and
# `python -X importtime` ("imports" is the sum of the top-level imports' cumulative times);
# "DVC" is what the one dvc process spent around the stages (its start, hashing, bookkeeping).
# A first line gives the float32 matmul peak before and after: the shared machine's speed that hour.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${BIRDPLANE_VENV:-$PWD/.venv}"
export PATH="$venv/bin:$PATH"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/bin" "$work/procs"
cat > "$work/bin/python" <<EOF
#!/usr/bin/env bash
log="$work/procs/\$(date +%s%N)-\$\$"
start=\$(date +%s.%N)
rc=0
/usr/bin/time -f %M -o "\$log.rss" "$venv/bin/python" -X importtime "\$@" 2>"\$log.err" || rc=\$?
echo "\$start \$(date +%s.%N) \$*" > "\$log.proc"
grep -v '^import time:' "\$log.err" >&2 || true
exit \$rc
EOF
chmod +x "$work/bin/python"
stages="${*:-$(dvc stage list --name-only)}"
# this shared machine's speed changes by the hour: a float32 matmul peak before and after the run
# says which hour the figures come from
peak() {
  "$venv/bin/python" benchmarks/train_speed.py --peak
}
peak_before=$(peak)
start=$(date +%s.%N)
# shellcheck disable=SC2086
PATH="$work/bin:$PATH" dvc repro --force --single-item $stages >/dev/null
total=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
peak_after=$(peak)
echo "float32 matmul peak (2048^3, best of 3): $peak_before GFLOP/s before, $peak_after after; $(date -u +%FT%TZ)"
printf '| stage | wall time (s) | imports (s) | peak RSS (MB) |\n| --- | ---: | ---: | ---: |\n'
for proc in "$work"/procs/*.proc; do
  log=${proc%.proc}
  read -r t0 t1 script args < "$proc"
  name=$(basename "$script" .py | tr _ -)
  variant=$(sed -n 's/.*--variant \([^ ]*\).*/\1/p' <<< "$args")
  [ -n "$variant" ] && name="$name@$variant"
  # top-level imports have exactly one space before the module name
  imports=$(awk -F'|' '/^import time:/ && $3 ~ /^ [^ ]/ { us += $2 } END { printf "%.2f", us / 1e6 }' "$log.err")
  printf '%s %s %s %s\n' "$name" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" "$imports" "$(tail -1 "$log.rss")"
done | awk -v total="$total" '
  { printf "| `%s` | %.1f | %.1f | %.0f |\n", $1, $2, $3, $4 / 1024; stages += $2; imports += $3 }
  END {
    printf "| DVC | %.1f | | |\n", total - stages
    printf "| total (`dvc repro`) | %.1f | %.1f (%.0f%%) | |\n", total, imports, 100 * imports / total
  }'
