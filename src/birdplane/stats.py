"""Per-channel normalization statistics of uint8 images."""

from __future__ import annotations

import numpy as np

from birdplane.errors import BirdplaneError

CHANNEL_NAMES = ("R", "G", "B")


class StatsError(BirdplaneError, ValueError):
    """The images cannot be normalized (too few, or a constant channel); the message says why."""


def channel_stats(images: np.ndarray, ddof: int = 1) -> tuple[list[float], list[float]]:
    """Mean and standard deviation per channel of uint8 N x C x H x W images, on the 0..1 scale.

    Counts each channel's 256 pixel values (exact integers, no float accumulation), so the result
    is independent of image order and summation order, and needs no float copy of the data.
    A channel whose pixels all have one value is refused: its std is 0, normalizing divides by
    it, and training would then fail with an error that seems to blame the learning rate.
    """
    if images.dtype != np.uint8 or images.ndim != 4:
        raise StatsError("expected uint8 images of shape N x C x H x W")
    levels = np.arange(256, dtype=np.float64) / 255.0
    means, stds = [], []
    for c in range(images.shape[1]):
        counts = np.bincount(images[:, c].reshape(-1), minlength=256).astype(np.float64)
        n = counts.sum()
        if n <= ddof:
            raise StatsError(
                f"{len(images)} training images are too few for a standard deviation "
                f"(stats.ddof {ddof}): check data.classes and the archive"
            )
        if np.count_nonzero(counts) == 1:  # exact: float arithmetic could leave a tiny nonzero std
            name = CHANNEL_NAMES[c] if images.shape[1] == len(CHANNEL_NAMES) else str(c)
            raise StatsError(
                f"channel {name} has std 0: every pixel of the {len(images)} training images "
                f"has the value {int(np.flatnonzero(counts)[0])}, so the images are constant "
                "and cannot be normalized; the archive does not hold real photographs"
            )
        mean = float(counts @ levels / n)
        var = float(counts @ (levels - mean) ** 2 / (n - ddof))
        means.append(mean)
        stds.append(var**0.5)
    return means, stds
