import pytest
import torch

from birdplane.models import ModelConfig, build_model
from birdplane.shift import by_ring, shift, shift_accuracy


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
    torch.testing.assert_close(shift(x, 3, -2, "wrap"), torch.roll(x, shifts=(-2, 3), dims=(2, 3)), rtol=0, atol=0)


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
