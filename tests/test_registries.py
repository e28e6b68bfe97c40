"""Adding a loss or an activation is one registry entry (birdplane.losses, birdplane.activations):
a loss and an activation defined here, in the test, go through every path that trains or
evaluates a net: the params check, build_model, autograd, the fused step (step by step and in
Gram blocks), K models at once, the running per-epoch figures and the evaluation's loss."""

import pytest
import torch
import yaml

from birdplane import activations, losses
from birdplane.train import engine, loop
from birdplane.train.fast import Fused, train_many
from birdplane.train.fast.fused import fuse
from birdplane.train.sgd import SGD
from birdplane.config import load_params
from birdplane.inference import predict
from birdplane.models import ModelConfig, build_model, describe, head_for

EPS = 0.2  # label smoothing: the target puts 1 - EPS on the class and EPS/classes on every class


def smoothed_target(y, classes, dim, dtype):
    return losses.onehot(y, classes, dim, dtype) * (1 - EPS) + EPS / classes


def smooth_mean(log_probs, y):
    return -(log_probs * smoothed_target(y, log_probs.shape[1], -1, log_probs.dtype)).sum(1).mean()


def smooth_grad(z, y):
    outputs = torch.log_softmax(z, dim=-2)
    target = smoothed_target(y, z.shape[-2], -2, z.dtype)
    return (outputs.exp() - target) / z.shape[-1], outputs.transpose(-2, -1)


def smooth_total(outputs, y):
    return -(outputs * smoothed_target(y, outputs.shape[-1], -1, outputs.dtype)).sum((-2, -1))


SMOOTH = losses.Loss(
    "smooth", "log_softmax", smooth_mean, smooth_grad, smooth_total, "label-smoothed NLL"
)
ELU = activations.Activation(
    "elu",
    "ELU",
    lambda z: torch.nn.functional.elu_(z),
    lambda grad, h: torch.ops.aten.elu_backward(grad, 1.0, 1, 1, True, h),
)


@pytest.fixture
def registered():
    losses.register(SMOOTH)
    activations.register(ELU)
    try:
        yield
    finally:
        del losses.LOSSES["smooth"], activations.ACTIVATIONS["elu"]


def data(n=96):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3072, generator=g)
    y = (x[:, :10].sum(1) > 0).long()
    return x[:72], y[:72], x[72:], y[72:]


def test_the_registered_loss_and_activation_pass_the_params_check(registered, tmp_path):
    from conftest import ROOT

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"]["variants"]["new"] = {"hidden": [8], "activation": "elu", "loss": "smooth"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    recipe = load_params(tmp_path / "params.yaml").train.recipe("new")
    assert (recipe.loss, recipe.activation) == ("smooth", "elu")
    cfg = ModelConfig(hidden=(8,), activation="elu", head=head_for("smooth"))
    assert describe(cfg) == "3072-8-2, ELU, LogSoftmax"


def test_unregistered_names_are_refused(tmp_path):
    from birdplane.config import ConfigError
    from conftest import ROOT

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"]["variants"]["nll"]["loss"] = "smooth"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(
        ConfigError, match=r"train.variants.nll.loss: Input should be 'nll' or 'mse'"
    ):
        load_params(tmp_path / "params.yaml")


@pytest.mark.parametrize("block", [1, 4])
def test_fused_equals_autograd_with_a_new_loss_and_activation(registered, block):
    cfg = ModelConfig(hidden=(12, 8), activation="elu", head=head_for("smooth"))
    runs = []
    tx, ty, vx, vy = data()
    sgd = SGD(loss="smooth", epochs=2, batch_size=10, lr=0.05)
    for trainer in (loop.train, Fused(block=block).train):
        engine.seed_everything(3)
        model = build_model(cfg)
        history = trainer(model, (tx, ty), (vx, vy), sgd, seed=3)
        runs.append((model, history))
    (ref, h_ref), (fast, h_fast) = runs
    assert fuse(fast, "smooth") is not None  # really the fused path, not autograd again
    for (k, a), b in zip(ref.state_dict().items(), fast.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=k)
    # running train loss (the loss's batch total) = the autograd path's
    assert h_fast[-1].train_loss == pytest.approx(h_ref[-1].train_loss, rel=1e-4)
    # the evaluation's loss is the registered mean
    with torch.no_grad():
        out = predict(fast, data()[2])
    assert h_fast[-1].val_loss == pytest.approx(float(SMOOTH.mean(out, data()[3])), rel=1e-6)
    assert h_fast[-1].val_loss != pytest.approx(float(losses.nll(out, data()[3])), rel=1e-3)


def test_k_models_at_once_equal_one_by_one_with_a_new_loss_and_activation(registered):
    seeds, widths = [5, 6], [(6,), (4,)]

    def models():
        out = []
        for seed, hidden in zip(seeds, widths):
            torch.manual_seed(seed)
            out.append(
                build_model(ModelConfig(hidden=hidden, activation="elu", head="log_softmax"))
            )
        return out

    singles = models()
    tx, ty, vx, vy = data()
    sgd = SGD(loss="smooth", epochs=2, batch_size=10, lr=0.05)
    histories = [
        Fused(block=1).train(m, (tx, ty), (vx, vy), sgd, seed=s) for m, s in zip(singles, seeds)
    ]
    together = models()
    batched = train_many(together, (tx, ty), (vx, vy), sgd, seeds=seeds)
    for ref, fast, h_ref, h_fast in zip(singles, together, histories, batched):
        for (k, a), b in zip(ref.state_dict().items(), fast.state_dict().values()):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=k)
        assert [s.val_accuracy for s in h_fast] == [s.val_accuracy for s in h_ref]
