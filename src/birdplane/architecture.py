"""The nets' sizes as arithmetic, without torch: what the params' validation, the sweep and the
report compute before (or instead of) building a net with birdplane.models.build_model."""

from __future__ import annotations

from birdplane.cifar import IMAGE


def n_parameters(hidden: list[int], n_classes: int, channels: list[int] = ()) -> int:
    """The parameter count of the net birdplane.models.build_model makes, without building it:
    3x3 convolutions (each followed by a 2x2 max-pool), then Linear layers to n_classes."""
    count, width = 0, IMAGE[0] * IMAGE[1] * IMAGE[2]
    if channels:
        c, side = IMAGE[0], IMAGE[1]
        for out in channels:
            count += c * out * 9 + out
            c, side = out, side // 2
        width = c * side * side
    for h in (*hidden, n_classes):
        count += width * h + h
        width = h
    return count


def activation_floats(hidden: list[int], n_classes: int, channels: list[int] = ()) -> int:
    """Floats one image produces on its way through the net build_model makes: every convolution's
    feature maps before the pool, every hidden layer, the outputs."""
    count, side = 0, IMAGE[1]
    for out in channels:
        count += out * side * side
        side //= 2
    return count + sum(hidden) + n_classes
