#!/usr/bin/env bash
# The GPU measurements of docs/performance.md in one short run (about 2 minutes on an H100):
#   bash benchmarks/gpu.sh            # from the project root, with the venv's python on PATH or .venv
# Synthetic CIFAR-shaped data made on the spot unless data/prepared/dataset.npz exists.
set -euo pipefail
cd "$(dirname "$0")/.."
py=python
[ -x .venv/bin/python ] && py=.venv/bin/python
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
# the GPU path is the tested path: CUDA-graph epochs and batched models against eager and CPU
$py -m pytest -q -p no:cacheprovider tests/test_engine.py -k "cuda or batched or fused"
# book loop, autograd, fused and CUDA-graph epochs side by side (20 epochs, interleaved), then
# engine.train for 100 epochs (the <= 2 s target)
$py benchmarks/train_speed.py --device cuda --epochs 20 --methods book autograd fused graph
$py benchmarks/train_speed.py --device cuda --epochs 100 --methods graph
# 64 small models at once against one by one (<= 4 ms per epoch per model at K = 64)
$py benchmarks/train_speed.py --device cuda --many 64 --hidden 32 --epochs 10
