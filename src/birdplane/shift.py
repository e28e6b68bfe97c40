"""Translation: how accuracy falls when the validation images move by a few pixels.

A fully connected net sees pixel positions, not shapes, so an airplane moved two pixels to the left
is, to it, a different input. `shift_accuracy` measures that on every shift (dx, dy) in -k..k.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from birdplane.inference import predict


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
    return padded[..., k - dy : k - dy + h, k - dx : k - dx + w]


def shift(x: torch.Tensor, dx: int, dy: int, mode: str = "fill") -> torch.Tensor:
    k = max(abs(dx), abs(dy))
    return shifted(pad(x, k, mode), k, dx, dy)


# rows per product in the cropped first layer: 512 ran 10 % faster than inference.EVAL_CHUNK's 256 here
CROP_CHUNK = 512


def image_linear(model: nn.Module, image_shape: torch.Size) -> nn.Linear | None:
    """The model's first layer when it is a Linear over the flattened image (build_model's mlp:
    Flatten, Linear, ...), else None (a convnet)."""
    if (
        isinstance(model, nn.Sequential)
        and len(model) > 2
        and isinstance(model[0], nn.Flatten)
        and isinstance(model[1], nn.Linear)
        and model[1].in_features == image_shape.numel()
    ):
        return model[1]
    return None


@torch.no_grad()
def cropped_outputs(model: nn.Sequential, images: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """An mlp's outputs for the images (N x C x H x W) moved by (dx, dy) with a zero-filled border,
    without building the moved images: the first layer only sums over the pixels that stay in
    view, W[:, window] @ x[:, window - (dy, dx)], the rest of the net runs as usual.

    The exposed border is zero, so it adds nothing to W @ x; skipping it saves a quarter of the
    shift test's products over -8..8 (the mean share in view is (472/544)^2 = 0.75), and only the
    window is copied. The same sums as the model on `shift(images, dx, dy)` up to float rounding
    (fewer terms, another order); measured: docs/performance.md, "Figures behind the code's choices"."""
    model.eval()
    first, rest = model[1], model[2:]
    c, h, w = images.shape[1:]
    r0, r1, c0, c1 = max(0, dy), min(h, h + dy), max(0, dx), min(w, w + dx)
    weight = first.weight.view(-1, c, h, w)[:, :, r0:r1, c0:c1].reshape(first.out_features, -1)
    source = images[:, :, r0 - dy : r1 - dy, c0 - dx : c1 - dx]
    outputs = []
    for i in range(0, len(images), CROP_CHUNK):
        rows = source[i : i + CROP_CHUNK]
        outputs.append(rest(torch.addmm(first.bias, rows.reshape(len(rows), -1), weight.t())))
    return torch.cat(outputs)


@torch.no_grad()
def shift_accuracy(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, k: int, mode: str = "fill"
) -> torch.Tensor:
    """Accuracy for every shift: a (2k+1) x (2k+1) tensor indexed [dy + k, dx + k].

    One pass over the whole set per shift; the (0, 0) pass is inference.predict's plain validation
    pass, so it reproduces the evaluated accuracy exactly. An mlp on zero-filled shifts skips the
    border (cropped_outputs); a convnet or the 'wrap' mode runs on the moved images.
    """
    padded = pad(images, k, mode)
    crop = mode == "fill" and image_linear(model, images.shape[1:]) is not None
    grid = torch.empty(2 * k + 1, 2 * k + 1, dtype=torch.float64)
    for dy in range(-k, k + 1):
        for dx in range(-k, k + 1):
            if crop and (dx or dy):
                out = cropped_outputs(model, images, dx, dy)
            else:
                out = predict(model, shifted(padded, k, dx, dy).reshape(len(images), -1))
            grid[dy + k, dx + k] = int((out.argmax(1) == labels).sum()) / len(labels)
    return grid


def by_ring(grid: torch.Tensor) -> dict[str, float]:
    """Mean accuracy over the shifts with max(|dx|, |dy|) = r, for r = 0..k (keys are str(r))."""
    k = (grid.shape[0] - 1) // 2
    d = torch.arange(-k, k + 1).abs()
    ring = torch.maximum(d[:, None], d[None, :])
    return {str(r): float(grid[ring == r].mean()) for r in range(k + 1)}


def shift_test(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    k: int,
    modes: list[str],
    summary_shift: int,
) -> tuple[dict, list[dict], list[dict]]:
    """Everything the shift-test stage reports for one model: per mode, accuracy for every (dx, dy)
    in -k..k and its mean per ring (the first mode's figures at the top level, the contract keys);
    plus the rows of its two plots (accuracy per ring, per cell)."""
    result: dict = {}
    rings, cells = [], []
    for mode in modes:
        grid = shift_accuracy(model, images, labels, k, mode)
        ring = by_ring(grid)
        summary = {
            "accuracy_at_0": ring["0"],
            "accuracy_by_shift": ring,
            f"accuracy_at_{summary_shift}": ring[str(summary_shift)],
            "mean_accuracy": float(grid.mean()),
            "max_shift": k,
        }
        if mode == modes[0]:
            result.update(summary, mode=mode)  # the contract keys, for the first (default) mode
        else:
            result[mode] = summary
        rings += [{"mode": mode, "shift": int(r), "accuracy": a} for r, a in ring.items()]
        cells += [
            {"mode": mode, "dx": dx, "dy": dy, "accuracy": float(grid[dy + k, dx + k])}
            for dy in range(-k, k + 1)
            for dx in range(-k, k + 1)
        ]
    return result, rings, cells
