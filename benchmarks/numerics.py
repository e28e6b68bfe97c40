"""What pinned numerics cost: the pipeline's workloads with pinned and with fast numerics, in one run.

    .venv/bin/python benchmarks/numerics.py            # 2 rounds, about 4 minutes on 2 cores
    .venv/bin/python benchmarks/numerics.py --rounds 3
    .venv/bin/python benchmarks/numerics.py --only seeds_one_by_one seeds_side_by_side

Each workload runs in a fresh process (the settings are read when numpy and torch load), pinned and
fast taking turns, so a busy neighbour slows both alike; the table gives the median seconds and the
ratio pinned / fast. Data: 10,000 training and 2,000 validation images of the real size (generated).
Workloads: one epoch of the book's 3072-512-2 net (fused step, Gram blocks), one epoch of three
3072-32-2 nets side by side, one epoch of the chapter-8 convnet, the shift test of the book net
(17 x 17 shifts of the 2,000 validation images), and one epoch of three book nets (seeds 0, 1, 2),
one by one and side by side, as the training stage may train a variant's seeds (`train.variant`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

from birdplane import provenance

WORKLOADS = (
    "book_epoch",
    "narrow_side_by_side_epoch",
    "cnn_epoch",
    "shift_test",
    "seeds_one_by_one",
    "seeds_side_by_side",
)

CHILD = r"""
import json, sys, time
from birdplane import numerics
numerics.install()
import torch
from birdplane.data import to_features
from birdplane.fingerprint import images
from birdplane.models import ModelConfig, build_model
from birdplane.shift import shift_test
from birdplane.train import engine
from birdplane.train.fast import train_many
from birdplane.train.sgd import SGD

which = sys.argv[1]
m, s = [0.49, 0.48, 0.45], [0.25, 0.24, 0.26]
tx, ty = images(10000, 1)
vx, vy = images(2000, 2)
train = (to_features(tx, m, s, "cpu"), torch.from_numpy(ty))
val = (to_features(vx, m, s, "cpu"), torch.from_numpy(vy))
sgd = SGD(loss="nll", epochs=1, batch_size=64, lr=0.01)
torch.manual_seed(0)
t = time.perf_counter()
if which == "book_epoch":
    engine.train(build_model(ModelConfig()), train, val, sgd, seed=0)
elif which == "narrow_side_by_side_epoch":
    models = [build_model(ModelConfig(hidden=(32,))) for _ in range(3)]
    train_many(models, train, val, sgd, seeds=[0, 1, 2])
elif which == "cnn_epoch":
    cfg = ModelConfig(arch="cnn", channels=(16, 8), hidden=(32,))
    engine.train(build_model(cfg), train, val, sgd, seed=0)
elif which == "seeds_one_by_one":
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        engine.train(build_model(ModelConfig()), train, val, sgd, seed=seed)
elif which == "seeds_side_by_side":
    models = []
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        models.append(build_model(ModelConfig()))
    train_many(models, train, val, sgd, seeds=[0, 1, 2])
elif which == "shift_test":
    shift_test(build_model(ModelConfig()).eval(), val[0].view(-1, 3, 32, 32), val[1], 8, ["fill"], 4)
print(json.dumps({"seconds": time.perf_counter() - t, "mode": numerics.describe()["mode"]}))
"""


def run(which: str, mode: str) -> float:
    env = {**os.environ, "BIRDPLANE_NUMERICS": mode}
    r = subprocess.run(
        [sys.executable, "-c", CHILD, which], env=env, capture_output=True, text=True, check=True
    )
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["mode"] == mode, out
    return out["seconds"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--only", nargs="+", choices=WORKLOADS, help="these workloads (default: all)")
    args = ap.parse_args()
    workloads = args.only or WORKLOADS
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for which in workloads:
            for mode in ("pinned", "fast"):
                times.setdefault((which, mode), []).append(run(which, mode))
    print(f"{provenance.cpu()[0]}, {os.cpu_count()} CPUs, median of {args.rounds} rounds")
    print("| workload | pinned (s) | fast (s) | pinned / fast |\n| --- | ---: | ---: | ---: |")
    for which in workloads:
        p, f = (statistics.median(times[(which, m)]) for m in ("pinned", "fast"))
        print(f"| {which.replace('_', ' ')} | {p:.2f} | {f:.2f} | {p / f:.2f} |")


if __name__ == "__main__":
    main()
