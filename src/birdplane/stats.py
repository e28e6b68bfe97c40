"""Per-channel normalization statistics of uint8 images."""
from __future__ import annotations

import numpy as np


def channel_stats(images: np.ndarray, ddof: int = 1) -> tuple[list[float], list[float]]:
    """Mean and standard deviation per channel of uint8 N x C x H x W images, on the 0..1 scale.

    Counts each channel's 256 pixel values (exact integers, no float accumulation), so the result
    is independent of image order and summation order, and needs no float copy of the data.
    """
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError("expected uint8 images of shape N x C x H x W")
    levels = np.arange(256, dtype=np.float64) / 255.0
    means, stds = [], []
    for c in range(images.shape[1]):
        counts = np.bincount(images[:, c].reshape(-1), minlength=256).astype(np.float64)
        n = counts.sum()
        if n <= ddof:
            raise ValueError("too few pixels for a standard deviation")
        mean = float(counts @ levels / n)
        var = float(counts @ (levels - mean) ** 2 / (n - ddof))
        means.append(mean)
        stds.append(var ** 0.5)
    return means, stds
