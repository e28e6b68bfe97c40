"""The fully connected classifiers of the lecture, built from a small config."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid}
HEADS = {"log_softmax": nn.LogSoftmax, "softmax": nn.Softmax}
HEAD_FOR_LOSS = {"nll": "log_softmax", "mse": "softmax"}


@dataclass(frozen=True)
class ModelConfig:
    in_features: int = 3 * 32 * 32     # a flattened 32x32 RGB image: no notion of neighbouring pixels
    hidden: tuple[int, ...] = (512,)   # the book's single hidden layer
    n_classes: int = 2                 # birds vs airplanes
    activation: str = "tanh"
    head: str = "log_softmax"          # log-probabilities for NLLLoss; "softmax" for MSELoss

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        return cls(**{**d, "hidden": tuple(d["hidden"])})


def build_model(cfg: ModelConfig) -> nn.Sequential:
    """Flatten -> [Linear -> activation] * len(hidden) -> Linear -> head.

    Flatten comes first so the model takes images (N x 3 x 32 x 32) as well as flat rows (N x 3072).
    """
    layers: list[nn.Module] = [nn.Flatten()]
    width = cfg.in_features
    for h in cfg.hidden:
        layers += [nn.Linear(width, h), ACTIVATIONS[cfg.activation]()]
        width = h
    layers += [nn.Linear(width, cfg.n_classes), HEADS[cfg.head](dim=1)]
    return nn.Sequential(*layers)


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def describe(cfg: ModelConfig) -> str:
    """'3072-512-2, Tanh, LogSoftmax': the shape of the net as the lecture writes it."""
    widths = "-".join(str(w) for w in (cfg.in_features, *cfg.hidden, cfg.n_classes))
    act = ACTIVATIONS[cfg.activation].__name__
    return f"{widths}, {act}, {HEADS[cfg.head].__name__}"


def save_model(path: Path, model: nn.Module, cfg: ModelConfig) -> None:
    """A state_dict plus the config that rebuilds it: loadable with torch.load(weights_only=True)."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    # through a file object: given a path, torch.save names the zip's folder after the file, and a
    # temporary name would make the same weights give different bytes (and DVC hashes) every run
    with Path(path).open("wb") as f:
        torch.save({"config": cfg.to_dict(), "state_dict": state}, f)


def load_model(path: Path, device: str | torch.device = "cpu") -> tuple[nn.Sequential, ModelConfig]:
    blob = torch.load(path, map_location=device, weights_only=True)
    cfg = ModelConfig.from_dict(blob["config"])
    model = build_model(cfg).to(device)
    model.load_state_dict(blob["state_dict"])
    model.eval()
    return model, cfg
