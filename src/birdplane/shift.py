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


class RandomShift:
    """Random-shift augmentation: training image i moved right by dx[i] and down by dy[i]
    (|dx|, |dy| <= k), the exposed border filled with zeros (the mean colour).

    The data set is padded once; a minibatch is then one gather from it (per image a start offset
    plus the fixed offsets of a 3x32x32 window), no per-batch padding or 4-d fancy indexing.
    """

    def __init__(self, x: torch.Tensor, k: int, shape: tuple[int, int, int] = (3, 32, 32)):
        c, h, w = shape
        self.k, self.wp = k, w + 2 * k
        self.padded = F.pad(x.reshape(-1, c, h, w), (k, k, k, k)).reshape(-1)
        self.stride = c * (h + 2 * k) * self.wp
        ch = torch.arange(c, device=x.device).view(c, 1, 1) * (h + 2 * k) * self.wp
        rows = torch.arange(h, device=x.device).view(1, h, 1) * self.wp
        self.window = (ch + rows + torch.arange(w, device=x.device).view(1, 1, w)).reshape(-1)

    def __call__(self, idx: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
        """Images idx (any shape) moved by shifts (idx.shape + (2,): dx, dy), flattened rows."""
        start = idx * self.stride + (self.k - shifts[..., 1]) * self.wp + (self.k - shifts[..., 0])
        return torch.take(self.padded, start.unsqueeze(-1) + self.window)  # 3x faster than padded[...]


def shift(x: torch.Tensor, dx: int, dy: int, mode: str = "fill") -> torch.Tensor:
    k = max(abs(dx), abs(dy))
    return shifted(pad(x, k, mode), k, dx, dy)


@torch.no_grad()
def shift_accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, k: int,
                   mode: str = "fill") -> torch.Tensor:
    """Accuracy for every shift: a (2k+1) x (2k+1) tensor indexed [dy + k, dx + k].

    One pass over the whole set per shift, in engine.predict's chunks; the (0, 0) pass is the
    plain validation pass, so it reproduces the evaluated accuracy exactly.
    """
    from birdplane.engine import predict

    padded = pad(images, k, mode)
    grid = torch.empty(2 * k + 1, 2 * k + 1, dtype=torch.float64)
    for dy in range(-k, k + 1):
        for dx in range(-k, k + 1):
            batch = shifted(padded, k, dx, dy).reshape(len(images), -1)
            grid[dy + k, dx + k] = int((predict(model, batch).argmax(1) == labels).sum()) / len(labels)
    return grid


def by_ring(grid: torch.Tensor) -> dict[str, float]:
    """Mean accuracy over the shifts with max(|dx|, |dy|) = r, for r = 0..k (keys are str(r))."""
    k = (grid.shape[0] - 1) // 2
    d = torch.arange(-k, k + 1).abs()
    ring = torch.maximum(d[:, None], d[None, :])
    return {str(r): float(grid[ring == r].mean()) for r in range(k + 1)}
