"""Random-shift augmentation: every training image moved by its own random (dx, dy) each epoch, so a
fully connected net sees each object at more positions (the `augmented` variant)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


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
        return torch.take(
            self.padded, start.unsqueeze(-1) + self.window
        )  # 3x faster than padded[...]
