#!/usr/bin/env bash
# The fingerprint on an emulated CPU: does a CPU that the libraries see as another vendor's, with other
# vector extensions, compute the committed bits? qemu-user's CPU models (Intel Haswell: AVX2 and FMA,
# no AVX-512; AMD EPYC-Rome: Zen 2) answer the CPUID instruction that MKL, OpenBLAS, ATen and numpy
# ask, and emulate each instruction in software, IEEE-exactly; /proc/cpuinfo stays the host's.
#
#   bash tools/emulated_fingerprint.sh                   # Haswell-v4, 1 and 2 threads, and the control
#   CPUS="Haswell-v4 EPYC-Rome" THREADS="1 2 3" bash tools/emulated_fingerprint.sh
#   QEMU=/path/to/qemu-x86_64 bash tools/emulated_fingerprint.sh      # another build of qemu-user
#
# Needs qemu-user (Debian and Ubuntu: apt-get install qemu-user) and the venv. Slow: about 5 minutes
# per run on 2 cores (the fingerprint natively takes seconds). Each run is `python -m
# birdplane.fingerprint --check --here`, in one emulated process (qemu-user would run the fresh
# processes of a plain --check on the host). The control then computes the digests unpinned
# (BIRDPLANE_NUMERICS=fast) emulated and on the host: they differ where the emulated CPU makes the
# libraries pick other kernels, so a pinned pass is not the host's CPU answering. Exit 1 if a pinned
# run misses the committed digests or the control shows no difference.
# Results: docs/reproducing.md ("What is exact where").
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
# qemu-user does not search PATH: the interpreter by its path
PY=$(command -v "$PY") || {
  echo "emulated_fingerprint: no Python at ${PYTHON:-.venv/bin/python} (make venv, or set PYTHON)" >&2
  exit 2
}
CPUS=${CPUS:-Haswell-v4}
THREADS=${THREADS:-1 2}
QEMU=${QEMU:-qemu-x86_64}
command -v "$QEMU" >/dev/null || {
  echo "emulated_fingerprint: needs $QEMU (Debian/Ubuntu: apt-get install qemu-user)" >&2
  exit 2
}
quiet() { grep -v "TCG doesn't support requested feature" >&2; }  # qemu's note per CPU feature it lacks
status=0
for cpu in $CPUS; do
  for t in $THREADS; do
    echo "== $cpu, $t thread(s), pinned"
    OMP_NUM_THREADS=$t "$QEMU" -cpu "$cpu" "$PY" -m birdplane.fingerprint --check --here 2> >(quiet) || status=1
  done
  echo "== control: $cpu against the host, 1 thread, unpinned (BIRDPLANE_NUMERICS=fast)"
  emulated=$(BIRDPLANE_NUMERICS=fast OMP_NUM_THREADS=1 "$QEMU" -cpu "$cpu" "$PY" -m birdplane.fingerprint --here 2> >(quiet))
  host=$(BIRDPLANE_NUMERICS=fast OMP_NUM_THREADS=1 "$PY" -m birdplane.fingerprint --here)
  "$PY" - "$emulated" "$host" <<'PYEOF' || status=1
import json, sys
(emulated,), (host,) = (json.loads(a).values() for a in sys.argv[1:])
differ = [k for k in emulated["digests"] if emulated["digests"][k] != host["digests"].get(k)]
for name, run in (("emulated", emulated), ("host", host)):
    m = run["machine"]
    print(f"{name}: CPUID {' '.join(m['cpuid'])}; ATen {m['aten_capability']}; {'; '.join(m['blas'])}")
print(f"unpinned, {len(differ)} of {len(emulated['digests'])} workloads differ: {', '.join(differ) or 'none'}")
sys.exit(0 if differ else 1)
PYEOF
done
exit $status
