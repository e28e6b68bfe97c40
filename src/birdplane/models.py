"""The lecture's classifiers, built from a small config: the fully connected nets of chapter 7 and,
for comparison on shifted images, the small convolutional net of chapter 8."""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from birdplane.activations import ACTIVATIONS
from birdplane.cifar import IMAGE, IN_FEATURES
from birdplane.losses import HEADS, LOSSES


def head_for(loss: str) -> str:
    """The output head a loss trains on (birdplane.losses): log_softmax for nll, softmax for mse."""
    return LOSSES[loss].head


def _activation(name: str) -> type[nn.Module]:
    return getattr(nn, ACTIVATIONS[name].module)


def _head(name: str) -> type[nn.Module]:
    return getattr(nn, HEADS[name].module)


@dataclass(frozen=True)
class ModelConfig:
    in_features: int = IN_FEATURES  # a flattened 32x32 RGB image: no notion of neighbouring pixels
    hidden: tuple[int, ...] = (512,)  # the book's single hidden layer
    n_classes: int = 2  # birds vs airplanes
    activation: str = "tanh"
    head: str = "log_softmax"  # log-probabilities for NLLLoss; "softmax" for MSELoss
    arch: str = "mlp"  # "cnn": convolutions first, shared weights over positions
    channels: tuple[int, ...] = ()  # cnn only: 3x3 convolutions, each followed by a 2x2 max-pool
    dropout: float = 0.0  # dropped share of each hidden layer's outputs while training

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        return cls(**{**d, "hidden": tuple(d["hidden"]), "channels": tuple(d.get("channels", ()))})


def build_model(cfg: ModelConfig) -> nn.Sequential:
    """mlp: Flatten -> [Linear -> activation (-> Dropout)] * len(hidden) -> Linear -> head.
    cnn: Flatten -> Unflatten to 3x32x32 -> [Conv 3x3 -> activation -> MaxPool 2] * len(channels)
    -> Flatten -> the mlp part on the feature maps (the book's chapter-8 Net with channels (16, 8),
    hidden (32,)).

    Flatten comes first so that every model takes images (N x 3 x 32 x 32) as well as flat rows
    (N x 3072); only standard modules, so a pickled model loads without this package.
    """
    act = _activation(cfg.activation)
    layers: list[nn.Module] = [nn.Flatten()]
    width = cfg.in_features
    if cfg.arch == "cnn":
        layers.append(nn.Unflatten(1, IMAGE))
        c, side = IMAGE[0], IMAGE[1]
        for out in cfg.channels:
            layers += [nn.Conv2d(c, out, kernel_size=3, padding=1), act(), nn.MaxPool2d(2)]
            c, side = out, side // 2
        layers.append(nn.Flatten())
        width = c * side * side
    elif cfg.arch != "mlp":
        raise ValueError(f"unknown arch {cfg.arch!r}; use 'mlp' or 'cnn'")
    for h in cfg.hidden:
        layers += [nn.Linear(width, h), act()]
        if cfg.dropout > 0:
            layers.append(nn.Dropout(cfg.dropout))
        width = h
    layers += [nn.Linear(width, cfg.n_classes), _head(cfg.head)(dim=1)]
    model = nn.Sequential(*layers)
    if cfg.arch == "cnn":
        # convolution weights channels-last: oneDNN then runs the convolutions and max-pools
        # channels-last (the images stay N x 3 x 32 x 32): faster training and twice as fast
        # prediction on 2 cores, NCHW's max-pool being the slow part (docs/performance.md); the
        # same math in another rounding order
        model.to(memory_format=torch.channels_last)
    return model


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def describe(cfg: ModelConfig) -> str:
    """'3072-512-2, Tanh, LogSoftmax': the shape of the net as the lecture writes it;
    'conv 16-8, 512-32-2, Tanh, LogSoftmax' for a cnn."""
    act = ACTIVATIONS[cfg.activation].module
    extra = f", dropout {cfg.dropout:g}" if cfg.dropout else ""
    if cfg.arch == "cnn":
        flat = (
            cfg.channels[-1] * (IMAGE[1] >> len(cfg.channels)) ** 2
            if cfg.channels
            else cfg.in_features
        )
        widths = "-".join(str(w) for w in (flat, *cfg.hidden, cfg.n_classes))
        return f"conv {'-'.join(map(str, cfg.channels))}, {widths}, {act}, {HEADS[cfg.head].module}{extra}"
    widths = "-".join(str(w) for w in (cfg.in_features, *cfg.hidden, cfg.n_classes))
    return f"{widths}, {act}, {HEADS[cfg.head].module}{extra}"


def model_bytes(model: nn.Module, cfg: ModelConfig) -> bytes:
    """A state_dict plus the config that rebuilds it, as a file's bytes: loadable with
    torch.load(weights_only=True). Serialized in memory: given a path, torch.save names the zip's
    folder after the file (a temporary name would change the bytes, and DVC's hash, every run), and
    a full disk then fails in a plain write (OSError ENOSPC, reported with the path)."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    buffer = io.BytesIO()
    torch.save({"config": cfg.to_dict(), "state_dict": state}, buffer)
    return buffer.getvalue()


def save_model(path: Path, model: nn.Module, cfg: ModelConfig) -> None:
    with Path(path).open("wb") as f:
        f.write(model_bytes(model, cfg))


def load_model(path: Path, device: str | torch.device = "cpu") -> tuple[nn.Sequential, ModelConfig]:
    blob = torch.load(path, map_location=device, weights_only=True)
    cfg = ModelConfig.from_dict(blob["config"])
    model = build_model(cfg).to(device)
    model.load_state_dict(blob["state_dict"])
    model.eval()
    return model, cfg
