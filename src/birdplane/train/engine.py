"""Which code trains a model (params.yaml's `train.engine`), and the setup a stage does first.

    autograd  birdplane.train.loop.train: the book's loop, autograd + torch.optim.SGD
    fused     birdplane.train.fast.train: the same SGD steps without autograd (the default)

Both take (model, train, val, sgd, seed=..., name=..., on_epoch=...) and return one
birdplane.train.sgd.EpochStats per epoch; tests/test_engine.py checks that they train the same
weights to float rounding.
"""

from __future__ import annotations

import os
from typing import Callable

import torch
from torch import nn

from birdplane.errors import BirdplaneError
from birdplane.train import fast, loop
from birdplane.train.sgd import SGD, EpochStats

Data = tuple[torch.Tensor, torch.Tensor]
Trainer = Callable[..., list[EpochStats]]
TRAINERS: dict[str, Trainer] = {"autograd": loop.train, "fused": fast.train}


def train(
    model: nn.Module,
    train: Data,
    val: Data,
    sgd: SGD,
    *,
    seed: int,
    engine: str = "fused",
    name: str = "model",
    on_epoch: Callable[[EpochStats], None] | None = None,
) -> list[EpochStats]:
    """Train `model` in place with the engine of that name; one EpochStats per epoch trained."""
    return TRAINERS[engine](model, train, val, sgd, seed=seed, name=name, on_epoch=on_epoch)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise BirdplaneError(
            "train.device is 'cuda' but no CUDA device is available; use 'auto' or 'cpu'"
        )
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Same seed -> bit-identical results: on any x86-64 machine and thread count with pinned
    numerics (birdplane.numerics, installed here if it is not yet), on the same machine without."""
    from birdplane import numerics

    numerics.install()
    # cuBLAS is deterministic only with a fixed workspace; must be set before CUDA starts
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.manual_seed(seed)
    # what torch.use_deterministic_algorithms(True, warn_only=True) does, less its import of
    # torch._inductor (seconds per stage process, for a setting of the compiler that nothing here uses)
    torch._C._set_deterministic_algorithms(True, warn_only=True)
    # Deterministic mode also fills every new tensor of torch.empty or a resize with NaN, so that
    # reading memory before writing it would show. Nothing here does (the results are the same
    # bytes without the fill), and it wrote each gathered minibatch twice: 12 % of the 32-unit
    # net's epoch on 2 cores (docs/performance.md).
    torch.utils.deterministic.fill_uninitialized_memory = False
