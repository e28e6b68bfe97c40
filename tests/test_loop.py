"""The book's loop is the spine (issue 24): birdplane.train.loop is short, reads like chapter 7 of
Deep Learning with PyTorch, and is what `train.engine: autograd` runs; the fast path keeps to
small interfaces (tests/test_engine.py checks that both compute the same)."""

import ast
import importlib
import inspect
import re
from pathlib import Path

import pytest
import torch

from birdplane.models import ModelConfig, build_model
from birdplane.train import engine, loop, variant
from birdplane.train.sgd import SGD

LOOP = Path(loop.__file__)

# the book's loop body, statement by statement (names of the outputs and images as the reader likes)
BOOK = [
    r"^\s+(\w+) = model\(\w+\)$",
    r"^\s+loss = loss_fn\(\1, \w+\)$",
    r"^\s+optimizer\.zero_grad\(\)$",
    r"^\s+loss\.backward\(\)$",
    r"^\s+optimizer\.step\(\)$",
]


def test_the_loop_is_one_short_module_with_the_books_five_statements():
    text = LOOP.read_text()
    assert len(text.splitlines()) <= 150
    assert "torch.optim.SGD(model.parameters(), lr=sgd.lr" in text
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if re.match(BOOK[0], line))
    outputs = re.match(BOOK[0], lines[first]).group(1)
    body = lines[first : first + len(BOOK)]
    patterns = [BOOK[0], BOOK[1].replace(r"\1", outputs), *BOOK[2:]]
    assert all(re.match(p, line) for p, line in zip(patterns, body)), body
    assert re.search(r"for epoch in range\(1, sgd\.epochs \+ 1\):", text)
    assert "birdplane.train.fast" not in "".join(
        ast.unparse(n)
        for n in ast.walk(ast.parse(text))
        if isinstance(n, (ast.Import, ast.ImportFrom))
    )


def test_train_engine_autograd_goes_through_the_loop(monkeypatch):
    """train.engine selects the trainer; `autograd` is loop.train, and it steps torch.optim.SGD once
    per minibatch, while `fused` trains the same mlp without it."""
    assert engine.TRAINERS["autograd"] is loop.train
    steps = []
    real_step = torch.optim.SGD.step
    monkeypatch.setattr(
        torch.optim.SGD, "step", lambda self, *a, **kw: steps.append(1) or real_step(self, *a, **kw)
    )
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 3072, generator=g), torch.randint(0, 2, (40,), generator=g)
    sgd = SGD(loss="nll", epochs=2, batch_size=16, lr=0.01)
    for name, expected in (
        ("autograd", 2 * 3),
        ("fused", 0),
    ):  # 40 training images: minibatches of 16, 16, 8
        steps.clear()
        engine.seed_everything(0)
        history = engine.train(
            build_model(ModelConfig(hidden=(4,))), (x, y), (x[:8], y[:8]), sgd, seed=0, engine=name
        )
        assert len(history) == 2 and len(steps) == expected, name


def test_the_variant_stage_trains_with_the_engine_params_yaml_names(monkeypatch):
    called = []
    for name in ("autograd", "fused"):
        monkeypatch.setitem(
            engine.TRAINERS, name, lambda *a, _which=name, **kw: called.append(_which) or []
        )
    monkeypatch.setattr(variant, "_result", lambda *a: variant.SeedRun(0, None, [], {}))
    from birdplane.config import Recipe

    r = Recipe(
        name="v",
        arch="mlp",
        hidden=(8,),
        channels=(),
        activation="tanh",
        loss="nll",
        epochs=1,
        batch_size=10,
        lr=0.05,
        seeds=1,
    )
    data = (torch.zeros(4, 3072), torch.zeros(4, dtype=torch.long))
    for name in ("autograd", "fused"):
        variant.train_variant(
            r, variant.model_config(r, 2), data, data, seeds=[0], options=variant.Options(name)
        )
    assert called == ["autograd", "fused"]


TRAINING = [
    "birdplane.train.sgd",
    "birdplane.train.loop",
    "birdplane.train.engine",
    "birdplane.train.variant",
    "birdplane.train.fast",
    "birdplane.train.fast.epochs",
    "birdplane.train.fast.fused",
    "birdplane.train.fast.batched",
    "birdplane.train.fast.graphs",
    "birdplane.train.augment",
    "birdplane.sweep",
]


@pytest.mark.parametrize("module", TRAINING)
def test_training_functions_take_at_most_8_parameters_and_60_lines(module):
    """Narrow interfaces: the SGD recipe travels as one argument (birdplane.train.sgd.SGD)."""
    source = Path(importlib.import_module(module).__file__).read_text()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = node.args
            names = [
                p.arg for p in a.posonlyargs + a.args + a.kwonlyargs if p.arg not in ("self", "cls")
            ]
            assert len(names) <= 8, f"{module}.{node.name} takes {len(names)} parameters"
            assert node.end_lineno - node.lineno < 60, (
                f"{module}.{node.name} is {node.end_lineno - node.lineno + 1} lines"
            )


def test_the_learning_rate_enters_the_training_code_as_the_recipes_lr():
    """train.lr reaches the optimizer (and the fused step) through SGD.lr only."""
    assert "lr" not in inspect.signature(loop.train).parameters
    assert "lr" not in inspect.signature(engine.train).parameters
    assert "lr" not in inspect.signature(variant.train_variant).parameters
