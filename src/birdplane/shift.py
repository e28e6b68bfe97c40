"""Translation: how accuracy falls when the validation images move by a few pixels.

A fully connected net sees pixel positions, not shapes, so an airplane moved two pixels to the left
is, to it, a different input. `shift_accuracy` measures that on every shift (dx, dy) in -k..k.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def pad(x: torch.Tensor, k: int, mode: str) -> torch.Tensor:
    """Pad N x C x H x W images by k on every side: zeros ('fill', the mean colour after
    normalization) or the opposite edge ('wrap')."""
    if mode == "fill":
        return F.pad(x, (k, k, k, k))
    if mode == "wrap":
        return F.pad(x, (k, k, k, k), mode="circular")
    raise ValueError(f"unknown shift mode {mode!r}; use 'fill' or 'wrap'")


def shifted(padded: torch.Tensor, k: int, dx: int, dy: int) -> torch.Tensor:
    """The images moved right by dx and down by dy, cut from images padded by k (|dx|, |dy| <= k)."""
    h, w = padded.shape[-2] - 2 * k, padded.shape[-1] - 2 * k
    return padded[..., k - dy:k - dy + h, k - dx:k - dx + w]


def shift_each(images: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor, k: int) -> torch.Tensor:
    """Image i (N x C x H x W) moved right by dx[i] and down by dy[i] (|dx|, |dy| <= k), the
    exposed border filled with zeros (the mean colour): random-shift augmentation, one gather."""
    n, c, h, w = images.shape
    padded = F.pad(images, (k, k, k, k))
    rows = (k - dy).unsqueeze(1) + torch.arange(h, device=images.device)  # N x H
    cols = (k - dx).unsqueeze(1) + torch.arange(w, device=images.device)  # N x W
    return padded[torch.arange(n, device=images.device)[:, None, None, None],
                  torch.arange(c, device=images.device)[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]


def shift(x: torch.Tensor, dx: int, dy: int, mode: str = "fill") -> torch.Tensor:
    k = max(abs(dx), abs(dy))
    return shifted(pad(x, k, mode), k, dx, dy)


@torch.no_grad()
def shift_accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, k: int,
                   mode: str = "fill") -> torch.Tensor:
    """Accuracy for every shift: a (2k+1) x (2k+1) tensor indexed [dy + k, dx + k].

    One batched forward pass over the whole set per shift; the (0, 0) pass is the plain
    validation pass, so it reproduces the evaluated accuracy exactly.
    """
    model.eval()
    padded = pad(images, k, mode)
    grid = torch.empty(2 * k + 1, 2 * k + 1, dtype=torch.float64)
    for dy in range(-k, k + 1):
        for dx in range(-k, k + 1):
            batch = shifted(padded, k, dx, dy).reshape(len(images), -1)
            grid[dy + k, dx + k] = int((model(batch).argmax(1) == labels).sum()) / len(labels)
    return grid


def by_ring(grid: torch.Tensor) -> dict[str, float]:
    """Mean accuracy over the shifts with max(|dx|, |dy|) = r, for r = 0..k (keys are str(r))."""
    k = (grid.shape[0] - 1) // 2
    d = torch.arange(-k, k + 1).abs()
    ring = torch.maximum(d[:, None], d[None, :])
    return {str(r): float(grid[ring == r].mean()) for r in range(k + 1)}
