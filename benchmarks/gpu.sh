#!/usr/bin/env bash
# The GPU measurements of docs/performance.md in one short run (a few minutes on an H100):
#   bash benchmarks/gpu.sh                      # from the project root on the GPU machine
#   DEVICE=cpu QUICK=1 bash benchmarks/gpu.sh   # the same steps as a dry run on CPU, tiny sizes
# The lent GPU machine's image has torch, numpy, pytest and PyYAML but not this project's venv (no
# pydantic, MLflow or DVC): the engine, its tests and the benchmark need only those, with src/ on
# PYTHONPATH (tests/test_benchmarks.py checks this with the other packages hidden). Real images
# when data/prepared/dataset.npz is there (carry it along: 37 MB), else synthetic ones.
# Every step runs even when one before it failed (one try costs minutes of a short lease); the
# exit status says whether all passed. With OUT set (the device tool's output folder) the log is
# also written to $OUT/gpu.log.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -n "${OUT:-}" ]; then
  exec > >(tee "$OUT/gpu.log") 2>&1
fi
device=${DEVICE:-cuda}
py=python3
[ -x .venv/bin/python ] && py=.venv/bin/python
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if [ "${QUICK:-0}" = 1 ]; then  # images, and the width of the compared net (the K nets are 32 wide)
  images=(--n 512); width=(--hidden 16); compare_epochs=2; long_epochs=2; many=4; many_epochs=2
else
  images=(); width=(); compare_epochs=20; long_epochs=100; many=64; many_epochs=10
fi
methods=(book autograd fused)
long=fused
if [ "$device" = cuda ]; then
  methods+=(graph)
  long=graph
fi
failed=()
step() {
  echo "== $*"
  "$@" || failed+=("$*")
}

date -u +%FT%TZ
# which code ran: the device tool's copy of the tree can carry an older .git than its files (seen
# 2026-11-27: HEAD of the session's start), so say how many paths differ from HEAD, and print a
# digest of the sources to match against a commit here (the same two commands on a checkout of it)
echo "git HEAD $(git rev-parse --short HEAD 2>/dev/null || echo none), $(git status --porcelain 2>/dev/null | wc -l) paths differ from it"
echo "sources $(cat src/birdplane/*.py benchmarks/train_speed.py | sha256sum | cut -c1-12)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
step "$py" -c "import sys, numpy, torch; print(sys.version.split()[0], 'torch', torch.__version__, 'numpy', numpy.__version__, 'cuda', torch.cuda.is_available())"
# the GPU path is the tested path: CUDA-graph epochs and batched models against eager and CPU
step "$py" -m pytest -q -p no:cacheprovider tests/test_engine.py -k "cuda or batched or fused"
# book loop, autograd, fused and CUDA-graph epochs side by side (interleaved), then the engine's
# default for 100 epochs (the <= 2 s target), then K small models at once (<= 4 ms per epoch per
# model at K = 64)
step "$py" benchmarks/train_speed.py --device "$device" --epochs "$compare_epochs" --methods "${methods[@]}" "${images[@]}" "${width[@]}"
step "$py" benchmarks/train_speed.py --device "$device" --epochs "$long_epochs" --methods "$long" "${images[@]}" "${width[@]}"
step "$py" benchmarks/train_speed.py --device "$device" --many "$many" --hidden 32 --epochs "$many_epochs" "${images[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  printf '!! failed: %s\n' "${failed[@]}"
  exit 1
fi
echo "== all steps passed"
