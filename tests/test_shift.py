import pytest
import torch

import birdplane.shift as shift_module
from birdplane.models import ModelConfig, build_model
from birdplane.shift import by_ring, cropped_outputs, image_linear, shift, shift_accuracy


def images(n=3):
    return torch.arange(n * 3 * 8 * 8, dtype=torch.float32).reshape(n, 3, 8, 8)


@pytest.mark.parametrize("dx, dy", [(2, 0), (0, -3), (1, 2), (-2, -1)])
def test_shift_and_back_restores_interior(dx, dy):
    x = images()
    back = shift(shift(x, dx, dy), -dx, -dy)
    h, w = x.shape[-2:]
    rows = slice(abs(dy), h - abs(dy))
    cols = slice(abs(dx), w - abs(dx))
    torch.testing.assert_close(back[..., rows, cols], x[..., rows, cols], rtol=0, atol=0)


def test_fill_moves_content_and_zeros_the_border():
    x = images(1)
    s = shift(x, 2, 1)  # right by 2, down by 1
    torch.testing.assert_close(s[..., 1:, 2:], x[..., :-1, :-2], rtol=0, atol=0)
    assert s[..., :1, :].abs().sum() == 0 and s[..., :, :2].abs().sum() == 0


def test_wrap_is_a_roll():
    x = images()
    torch.testing.assert_close(
        shift(x, 3, -2, "wrap"), torch.roll(x, shifts=(-2, 3), dims=(2, 3)), rtol=0, atol=0
    )


def test_shift_accuracy_grid_and_rings():
    torch.manual_seed(0)
    model = build_model(ModelConfig(in_features=3 * 8 * 8, hidden=(4,)))
    x = torch.randn(20, 3, 8, 8)
    y = torch.randint(0, 2, (20,))
    grid = shift_accuracy(model, x, y, 2)
    assert grid.shape == (5, 5)
    with torch.no_grad():
        plain = float((model(x).argmax(1) == y).double().mean())
    assert grid[2, 2] == plain
    rings = by_ring(grid)
    assert list(rings) == ["0", "1", "2"] and rings["0"] == plain
    assert rings["1"] == pytest.approx(float((grid[1:4, 1:4].sum() - grid[2, 2]) / 8))
    assert rings["2"] == pytest.approx(float((grid.sum() - grid[1:4, 1:4].sum()) / 16))


@pytest.mark.parametrize("dx, dy", [(3, 0), (0, -2), (1, 2), (-3, -1), (4, -4)])
def test_cropped_outputs_equal_the_model_on_moved_images(dx, dy):
    torch.manual_seed(0)
    model = build_model(ModelConfig(in_features=3 * 8 * 8, hidden=(6, 5), dropout=0.5))
    x = torch.randn(7, 3, 8, 8)
    cropped = cropped_outputs(model, x, dx, dy)  # also switches dropout off (eval mode)
    with torch.no_grad():
        moved = model(shift(x, dx, dy))
    torch.testing.assert_close(cropped, moved, rtol=1e-5, atol=1e-6)


def test_shift_accuracy_crops_only_mlps_on_zero_fill(monkeypatch):
    torch.manual_seed(0)
    x = torch.randn(20, 3, 8, 8)
    y = torch.randint(0, 2, (20,))
    mlp = build_model(ModelConfig(in_features=3 * 8 * 8, hidden=(4,)))
    cnn = build_model(ModelConfig(hidden=(4,), arch="cnn", channels=(2,)))  # 32 x 32 images only
    x32 = torch.randn(4, 3, 32, 32)
    assert image_linear(mlp, x.shape[1:]) is mlp[1] and image_linear(cnn, x32.shape[1:]) is None
    calls = []
    monkeypatch.setattr(
        shift_module, "cropped_outputs", lambda *a: calls.append(a[2:]) or cropped_outputs(*a)
    )
    grid = shift_accuracy(mlp, x, y, 1)
    assert sorted(calls) == sorted((dx, dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1) if dx or dy)
    for dy in (-1, 0, 1):  # the same accuracies as the model on the moved images
        for dx in (-1, 0, 1):
            with torch.no_grad():
                moved = float((mlp(shift(x, dx, dy)).argmax(1) == y).double().mean())
            assert grid[dy + 1, dx + 1] == moved
    calls.clear()
    shift_accuracy(mlp, x, y, 1, "wrap")
    shift_accuracy(cnn, x32, y[:4], 1)
    assert calls == []
