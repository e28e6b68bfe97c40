import numpy as np
import pytest
import torch

from birdplane.train import engine, fast, loop
from birdplane.train.fast.epochs import epoch_runner, fused_stepper
from birdplane.train.sgd import SGD, TrainingDiverged
from birdplane.data import to_features
from birdplane.inference import loss_and_accuracy
from birdplane.losses import mse, nll, probabilities
from birdplane.metrics import calibration, confusion_matrix, per_class_scores
from birdplane.models import (
    ModelConfig,
    build_model,
    describe,
    load_model,
    n_parameters,
    save_model,
)


def tiny_data(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3072, generator=g)
    y = (x[:, :10].sum(1) > 0).long()  # learnable
    return x[: n * 3 // 4], y[: n * 3 // 4], x[n * 3 // 4 :], y[n * 3 // 4 :]


def trained(
    model,
    data,
    *,
    seed,
    engine="fused",
    block=None,
    graph=None,
    name="model",
    on_epoch=None,
    **recipe,
):
    """Train through the engines' interface: the book's loop (autograd) or the fast path, whose
    knobs `block` and `graph` stay at the stages' defaults unless given."""
    tx, ty, vx, vy = data
    trainer = loop.train if engine == "autograd" else fast.Fused(graph, block).train
    return trainer(
        model, (tx, ty), (vx, vy), SGD(**recipe), seed=seed, name=name, on_epoch=on_epoch
    )


def trained_many(models, data, *, seeds, block=None, graph=None, names=None, **recipe):
    tx, ty, vx, vy = data
    return fast.Fused(graph, block).train_many(
        models, (tx, ty), (vx, vy), SGD(**recipe), seeds=seeds, names=names
    )


def fit(loss="nll", hidden=(16,), lr=0.05, epochs=3, seed=0):
    engine.seed_everything(seed)
    model = build_model(
        ModelConfig(hidden=hidden, head="log_softmax" if loss == "nll" else "softmax")
    )
    history = trained(model, tiny_data(), loss=loss, epochs=epochs, batch_size=8, lr=lr, seed=seed)
    return model, history


def test_book_model_shape_and_parameter_count():
    cfg = ModelConfig()
    model = build_model(cfg)
    assert n_parameters(model) == 1_574_402  # the book's 3072-512-2
    assert describe(cfg) == "3072-512-2, Tanh, LogSoftmax"
    out = model(torch.zeros(5, 3, 32, 32))
    assert out.shape == (5, 2)
    torch.testing.assert_close(out.exp().sum(1), torch.ones(5))
    assert (
        n_parameters(build_model(ModelConfig(hidden=(1024, 512, 128)))) == 3_737_474
    )  # the book's deep net


def test_training_is_deterministic_and_learns():
    (m1, h1), (m2, h2) = fit(epochs=4), fit(epochs=4)
    assert [s.to_dict() | {"seconds": 0} for s in h1] == [s.to_dict() | {"seconds": 0} for s in h2]
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)
    assert h1[-1].train_accuracy > 0.9
    _, h3 = fit(epochs=4, seed=1)
    assert h3[-1].train_loss != h1[-1].train_loss


@pytest.mark.parametrize("block", [1, 4])
def test_nothing_reads_memory_before_writing_it(block):
    """seed_everything keeps deterministic algorithms but drops their NaN fill of new tensors (it
    cost 12 % of the small net's epoch, docs/performance.md). That is safe only where no step reads
    memory it has not written: with the fill on, such a read would be NaN. The same bytes both ways,
    through the fused step (one minibatch, or Gram blocks with a short last one), weight decay,
    dropout and random shifts, and through the batched engine."""
    reg = dict(weight_decay=0.01, augment_shift=2)
    results = []
    for fill in (True, False):
        engine.seed_everything(0)
        assert (
            torch.are_deterministic_algorithms_enabled()
            and not torch.utils.deterministic.fill_uninitialized_memory
        )
        torch.utils.deterministic.fill_uninitialized_memory = fill
        try:
            model = build_model(ModelConfig(hidden=(16,), dropout=0.2))
            history = trained(
                model,
                tiny_data(n=120),
                loss="nll",
                epochs=2,
                batch_size=10,
                lr=0.05,
                seed=0,
                block=block,
                **reg,
            )
            models = [build_model(ModelConfig(hidden=(h,))) for h in (6, 3)]
            trained_many(
                models,
                tiny_data(n=120),
                loss="nll",
                epochs=2,
                batch_size=10,
                lr=0.05,
                seeds=[1, 2],
                block=block,
                weight_decay=0.01,
            )
        finally:
            torch.utils.deterministic.fill_uninitialized_memory = False
        results.append(
            (
                [model.state_dict(), *(m.state_dict() for m in models)],
                [s.to_dict() | {"seconds": 0} for s in history],
            )
        )
    (states_on, history_on), (states_off, history_off) = results
    assert history_on == history_off
    for on, off in zip(states_on, states_off):
        for name in on:
            assert torch.equal(on[name], off[name]), name


def test_mse_variant_trains():
    _, h = fit(loss="mse", lr=0.5, epochs=4)
    assert h[-1].train_loss < h[0].train_loss and h[-1].train_accuracy > 0.8


@pytest.mark.parametrize("engine_name", ["fused", "autograd"])
def test_nan_loss_stops_with_variant_and_epoch(engine_name):
    engine.seed_everything(0)
    model = build_model(ModelConfig(hidden=(16,), activation="relu"))
    with pytest.raises(
        TrainingDiverged, match=r"variant 'huge'.*epoch 1 of 5.*lower its learning rate"
    ):
        trained(
            model,
            tiny_data(),
            loss="nll",
            epochs=5,
            batch_size=8,
            lr=1e12,
            seed=0,
            name="huge",
            engine=engine_name,
        )


def test_on_epoch_sees_every_epoch():
    seen = []
    engine.seed_everything(0)
    model = build_model(ModelConfig(hidden=(4,)))
    trained(
        model,
        tiny_data(),
        loss="nll",
        epochs=3,
        batch_size=32,
        lr=0.01,
        seed=0,
        on_epoch=seen.append,
    )
    assert [s.epoch for s in seen] == [1, 2, 3]


def test_saved_model_loads_weights_only(tmp_path):
    model, _ = fit(epochs=1)
    cfg = ModelConfig(hidden=(16,))
    save_model(tmp_path / "m.pt", model, cfg)
    blob = torch.load(tmp_path / "m.pt", weights_only=True)
    assert blob["config"]["hidden"] == (16,) and "0.weight" not in blob["state_dict"]
    loaded, cfg2 = load_model(tmp_path / "m.pt")
    assert cfg2 == cfg
    x = torch.randn(4, 3072)
    torch.testing.assert_close(loaded(x), model.eval()(x), rtol=0, atol=0)


def test_features_are_normalized():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(50, 3, 32, 32), dtype=np.uint8)
    x = images.astype(np.float64) / 255
    mean, std = x.mean(axis=(0, 2, 3)).tolist(), x.std(axis=(0, 2, 3)).tolist()
    f = to_features(images, mean, std, torch.device("cpu")).reshape(50, 3, -1)
    torch.testing.assert_close(f.mean(dim=(0, 2)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(f.std(dim=(0, 2), unbiased=False), torch.ones(3), atol=1e-4, rtol=0)


def test_losses_match_torch_modules():
    logits = torch.randn(6, 2)
    y = torch.tensor([0, 1, 1, 0, 1, 0])
    torch.testing.assert_close(
        nll(logits.log_softmax(1), y), torch.nn.NLLLoss()(logits.log_softmax(1), y)
    )
    p = logits.softmax(1)
    onehot = torch.nn.functional.one_hot(y, 2).float()
    torch.testing.assert_close(mse(p, y), torch.nn.MSELoss()(p, onehot))
    torch.testing.assert_close(probabilities(logits.log_softmax(1), "log_softmax"), p)


def test_confusion_and_scores():
    y = torch.tensor([0, 0, 0, 1, 1, 2])
    p = torch.tensor([0, 1, 0, 1, 1, 0])
    cm = confusion_matrix(y, p, 3)
    assert cm.tolist() == [[2, 1, 0], [0, 2, 0], [1, 0, 0]]
    s = per_class_scores(cm, ["a", "b", "c"])
    assert s["a"] == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3})
    assert s["b"]["precision"] == pytest.approx(2 / 3) and s["b"]["recall"] == 1.0
    assert s["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}


def test_calibration_error():
    probs = torch.tensor([[0.95, 0.05], [0.75, 0.25], [0.35, 0.65], [0.45, 0.55], [0.93, 0.07]])
    y = torch.tensor([0, 1, 1, 0, 1])
    ece, bins = calibration(probs, y, 10)
    # bins: (0.9,1] holds 0.95 (right) and 0.93 (wrong); 0.75 wrong; 0.65 right; 0.55 wrong
    expected = (2 * abs(0.5 - 0.94) + abs(0 - 0.75) + abs(1 - 0.65) + abs(0 - 0.55)) / 5
    assert ece == pytest.approx(expected, abs=1e-6)
    assert [b["count"] for b in bins] == [0, 0, 0, 0, 0, 1, 1, 1, 0, 2] and bins[9][
        "accuracy"
    ] == 0.5
    perfect, _ = calibration(torch.tensor([[1.0, 0.0]] * 3), torch.zeros(3, dtype=torch.long), 10)
    assert perfect == 0.0


def test_saved_bytes_do_not_depend_on_the_file_name(tmp_path):
    model, _ = fit(epochs=1)
    cfg = ModelConfig(hidden=(16,))
    save_model(tmp_path / ".a.pt.123.tmp", model, cfg)
    save_model(tmp_path / "b.pt", model, cfg)
    assert (tmp_path / ".a.pt.123.tmp").read_bytes() == (tmp_path / "b.pt").read_bytes()


@pytest.mark.parametrize("block", [1, 4])
@pytest.mark.parametrize(
    "loss, hidden, activation",
    [
        ("nll", (16,), "tanh"),
        ("mse", (16,), "tanh"),
        ("nll", (12, 8), "relu"),
        ("mse", (10,), "sigmoid"),
    ],
)
def test_fused_step_matches_autograd(loss, hidden, activation, block):
    """The fast path is the same SGD as autograd + torch.optim.SGD, to float tolerance: step by step,
    and in blocks of 4 minibatches with the Gram correction (batch 10 over 72 rows: blocks of 40
    and 32 rows, the last with a short minibatch of 2)."""
    head = "log_softmax" if loss == "nll" else "softmax"
    cfg = ModelConfig(hidden=hidden, activation=activation, head=head)
    data = tiny_data()
    models = []
    for fused in (False, True):
        engine.seed_everything(3)
        model = build_model(cfg)
        history = trained(
            model,
            data,
            loss=loss,
            epochs=2,
            batch_size=10,
            lr=0.05,
            seed=3,
            engine="fused" if fused else "autograd",
            block=block,
        )
        models.append((model, history))
    (ref, h_ref), (fast, h_fast) = models
    for (k, a), b in zip(ref.state_dict().items(), fast.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=k)
    assert h_fast[-1].train_loss == pytest.approx(h_ref[-1].train_loss, rel=1e-4)


def test_fused_refuses_a_loss_that_does_not_fit_the_head():
    from birdplane.train.fast.fused import FusedMLP

    with pytest.raises(ValueError, match="does not fit"):
        FusedMLP(build_model(ModelConfig(head="log_softmax")), "mse")


def test_running_train_metrics_are_the_epochs_minibatches():
    """'running' train metrics come from the minibatches as they were trained: with a learning rate
    too small to move the weights they equal a full pass, and both engines report the same."""
    data = tiny_data()
    runs = {}
    for fused, metrics in ((True, "running"), (True, "full"), (False, "running")):
        engine.seed_everything(0)
        model = build_model(ModelConfig(hidden=(16,)))
        runs[fused, metrics] = trained(
            model,
            data,
            loss="nll",
            epochs=2,
            batch_size=8,
            lr=1e-9,
            seed=0,
            engine="fused" if fused else "autograd",
            train_metrics=metrics,
        )
    for a, b in zip(runs[True, "running"], runs[True, "full"]):
        assert (
            a.train_loss == pytest.approx(b.train_loss, rel=1e-5)
            and a.train_accuracy == b.train_accuracy
        )
        assert a.val_loss == b.val_loss
    for a, b in zip(runs[True, "running"], runs[False, "running"]):
        assert (
            a.train_loss == pytest.approx(b.train_loss, rel=1e-5)
            and a.train_accuracy == b.train_accuracy
        )
    with pytest.raises(ValueError, match="running"):
        SGD(loss="nll", epochs=1, batch_size=8, lr=0.1, train_metrics="sometimes")


@pytest.mark.parametrize("block, weight_decay", [(1, 0.0), (4, 0.0), (4, 0.5)])
@pytest.mark.parametrize(
    "loss, activation, widths",
    [("nll", "tanh", [(4,), (9,), (9,)]), ("mse", "relu", [(6, 3), (6, 5), (2, 5)])],
)
def test_batched_training_equals_one_model_at_a_time(loss, activation, widths, block, weight_decay):
    """K models at once (own init, own batch order, mixed widths) = the same K trained one by one
    (step by step), also in Gram blocks of 4 minibatches (batch 10: a short last minibatch) and
    with weight decay."""
    head = "log_softmax" if loss == "nll" else "softmax"
    data = tiny_data()
    seeds = [5, 6, 7]

    def models():
        out = []
        for seed, hidden in zip(seeds, widths):
            torch.manual_seed(seed)
            out.append(build_model(ModelConfig(hidden=hidden, activation=activation, head=head)))
        return out

    reg = dict(weight_decay=weight_decay)
    one_by_one = models()
    singles = [
        trained(m, data, loss=loss, epochs=3, batch_size=10, lr=0.05, seed=s, block=1, **reg)
        for m, s in zip(one_by_one, seeds)
    ]
    together = models()
    batched = trained_many(
        together, data, loss=loss, epochs=3, batch_size=10, lr=0.05, seeds=seeds, block=block, **reg
    )
    for ref, many, h_ref, h_fast in zip(one_by_one, together, singles, batched):
        for (k, a), b in zip(ref.state_dict().items(), many.state_dict().values()):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=k)
        for a, b in zip(h_ref, h_fast):
            assert b.train_accuracy == a.train_accuracy and b.val_accuracy == a.val_accuracy
            assert b.val_loss == pytest.approx(a.val_loss, rel=1e-4)


def test_batched_training_names_the_model_that_diverged():
    models = [build_model(ModelConfig(hidden=(4,))) for _ in range(2)]
    with torch.no_grad():
        models[1][1].weight[0, 0] = float("nan")  # only the second model's loss becomes NaN
    with pytest.raises(TrainingDiverged, match="variant 'w4s1': loss became nan at epoch 1"):
        trained_many(
            models,
            tiny_data(),
            loss="nll",
            epochs=2,
            batch_size=8,
            lr=0.1,
            seeds=[0, 1],
            names=["w4s0", "w4s1"],
        )


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
@pytest.mark.parametrize("loss, block", [("nll", None), ("mse", None), ("nll", 4)])
def test_cuda_graph_epochs_match_eager_and_cpu(loss, block):
    """The default GPU path (each epoch one replayed CUDA graph) = the eager fused loop = CPU, also
    with Gram blocks of 4 minibatches per call (150 training rows: two blocks and a last call of 22)."""
    head = "log_softmax" if loss == "nll" else "softmax"
    cfg = ModelConfig(hidden=(32,), head=head)
    data = tiny_data(n=200)
    results = {}
    for device, graph in (("cpu", False), ("cuda", False), ("cuda", True)):
        engine.seed_everything(1)
        model = build_model(cfg).to(device)
        history = trained(
            model,
            [t.to(device) for t in data],
            loss=loss,
            epochs=3,
            batch_size=16,
            lr=0.05,
            seed=1,
            graph=graph,
            block=block,
        )
        results[device, graph] = (model.cpu().state_dict(), history)
    ref_w, ref_h = results["cpu", False]
    for key in (("cuda", False), ("cuda", True)):
        w, h = results[key]
        for name, a in ref_w.items():
            torch.testing.assert_close(w[name], a, rtol=1e-4, atol=1e-5, msg=f"{key} {name}")
        assert [s.val_accuracy for s in h] == [s.val_accuracy for s in ref_h]


@cuda
def test_batched_cuda_graph_matches_cpu():
    data = tiny_data(n=200)
    out = {}
    for device in ("cpu", "cuda"):
        models = []
        for seed, hidden in zip((1, 2), ((8,), (3,))):
            torch.manual_seed(seed)
            models.append(build_model(ModelConfig(hidden=hidden)).to(device))
        trained_many(
            models,
            [t.to(device) for t in data],
            loss="nll",
            epochs=2,
            batch_size=16,
            lr=0.05,
            seeds=[1, 2],
        )
        out[device] = [m.cpu().state_dict() for m in models]
    for a, b in zip(out["cpu"], out["cuda"]):
        for name in a:
            torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-5)


META = torch.device("meta")


@pytest.mark.parametrize(
    "loss, dropout, shift, block",
    [("nll", 0.0, 0, None), ("mse", 0.5, 2, None), ("nll", 0.5, 2, 4)],
)
def test_the_epoch_a_gpu_captures_runs_on_the_meta_device(loss, dropout, shift, block):
    """On CUDA, fast.epochs.epoch_runner captures a whole epoch as one CUDA graph. Capture fails if the
    epoch reads a value back to the host (.item(), float(), bool() of a tensor) or mixes in a tensor
    made on the CPU; both fail on the meta device too, which has shapes but no data. So the CPU
    suite checks that the captured body (fused step with weight decay, dropout and random shifts,
    the running batch statistics; Gram blocks, the default for wide first layers) stays
    capturable; the CUDA tests check its numbers on a GPU."""
    head = "log_softmax" if loss == "nll" else "softmax"
    model = build_model(ModelConfig(hidden=(8, 4), head=head, dropout=dropout)).to(META)
    n = 100  # 6 minibatches of 16 and a short one of 4
    x, y = torch.empty(n, 3072, device=META), torch.empty(n, dtype=torch.long, device=META)
    sgd = SGD(loss=loss, epochs=1, batch_size=16, lr=0.05, weight_decay=0.01, augment_shift=shift)
    step = fused_stepper(model, sgd, block)
    assert step is not None and step.batches_per_call == (
        block or 1
    )  # narrow: one minibatch per step
    run = epoch_runner(step, list(model.parameters()), (x, y), sgd, (n,), graph=False)
    inputs = [torch.empty(n, dtype=torch.long, device=META)]
    if shift:
        inputs.append(torch.empty(n, 2, dtype=torch.long, device=META))
    loss_sum, correct = run(*inputs)
    assert loss_sum.device == META and loss_sum.shape == () and correct.shape == ()


def test_the_batched_epoch_a_gpu_captures_runs_on_the_meta_device():
    from birdplane.train.fast.batched import BatchedMLP

    batched = BatchedMLP(
        [build_model(ModelConfig(hidden=(h,))) for h in (8, 3)], "nll", weight_decay=0.01
    )
    batched.weights = [
        t.to(META) for t in batched.weights
    ]  # built on the CPU, trained on "the GPU"
    batched.biases = [t.to(META) for t in batched.biases]
    batched.masks = [None if t is None else t.to(META) for t in batched.masks]
    assert batched.gram_block() == 1
    n = 100
    sgd = SGD(loss="nll", epochs=1, batch_size=16, lr=0.05)
    stepper = batched.stepper(sgd, 1)
    data = (torch.empty(n, 3072, device=META), torch.empty(n, dtype=torch.long, device=META))
    run = epoch_runner(stepper, batched.parameters(), data, sgd, (2, n), graph=False)
    loss_sum, correct = run(torch.empty(2, n, dtype=torch.long, device=META))
    assert loss_sum.shape == (2,) and correct.shape == (2,)


@pytest.mark.parametrize("block", [1, 4])
@pytest.mark.parametrize(
    "loss, hidden, activation", [("nll", (16,), "tanh"), ("mse", (12, 8), "relu")]
)
def test_fused_weight_decay_and_dropout_match_autograd(loss, hidden, activation, block):
    """Weight decay folded into the update (and into the Gram correction's powers of 1 - lr * wd)
    and dropout masks drawn as nn.Dropout draws them: the fused step is still the autograd step
    (same random numbers, same weights)."""
    head = "log_softmax" if loss == "nll" else "softmax"
    cfg = ModelConfig(hidden=hidden, activation=activation, head=head, dropout=0.3)
    reg = dict(weight_decay=0.5)  # large, so a wrong power of the decay shows
    out = []
    for fused in (False, True):
        engine.seed_everything(4)
        model = build_model(cfg)
        trained(
            model,
            tiny_data(),
            loss=loss,
            epochs=2,
            batch_size=10,
            lr=0.05,
            seed=4,
            engine="fused" if fused else "autograd",
            **reg,
            block=block,
        )
        out.append(model.state_dict())
    for k, a in out[0].items():
        torch.testing.assert_close(out[1][k], a, rtol=1e-4, atol=1e-5, msg=k)
    engine.seed_everything(4)
    plain = build_model(ModelConfig(hidden=hidden, activation=activation, head=head))
    trained(plain, tiny_data(), loss=loss, epochs=2, batch_size=8, lr=0.05, seed=4)
    assert not torch.allclose(
        plain.state_dict()["1.weight"], out[1]["1.weight"]
    )  # both did something


def test_early_stopping_keeps_the_best_epoch():
    data = tiny_data(n=200)
    engine.seed_everything(0)
    model = build_model(ModelConfig(hidden=(32,)))
    history = trained(model, data, loss="nll", epochs=40, batch_size=8, lr=0.3, seed=0, patience=3)
    best = max(history, key=lambda s: (s.val_accuracy, -s.epoch))
    assert len(history) < 40 and len(history) - best.epoch == 3  # stopped 3 epochs after the best
    _, val_acc = loss_and_accuracy(model, nll, data[2], data[3])
    assert val_acc == best.val_accuracy  # the model is the best epoch's


def test_batched_weight_decay_and_early_stopping_equal_one_by_one():
    data = tiny_data(n=200)
    reg = dict(weight_decay=0.01, patience=2)
    seeds = [1, 2]
    singles, together = [], []
    for seed in seeds:
        torch.manual_seed(seed)
        singles.append(build_model(ModelConfig(hidden=(8,))))
        torch.manual_seed(seed)
        together.append(build_model(ModelConfig(hidden=(8,))))
    h_single = [
        trained(m, data, loss="nll", epochs=15, batch_size=8, lr=0.3, seed=s, **reg)
        for m, s in zip(singles, seeds)
    ]
    h_batched = trained_many(
        together, data, loss="nll", epochs=15, batch_size=8, lr=0.3, seeds=seeds, **reg
    )
    for a, b, ha, hb in zip(singles, together, h_single, h_batched):
        assert [s.val_accuracy for s in ha] == [s.val_accuracy for s in hb]
        for k, w in a.state_dict().items():
            torch.testing.assert_close(b.state_dict()[k], w, rtol=1e-4, atol=1e-5, msg=k)


def test_cnn_trains_through_autograd_and_augmentation_moves_images():
    from birdplane.train.augment import RandomShift
    from birdplane.shift import shift

    images = torch.randn(5, 3, 32, 32)
    dxdy = torch.tensor([[0, 0], [1, -1], [-2, 2], [3, 0], [0, -3]])
    idx = torch.tensor([4, 1, 2, 3, 0])
    moved = RandomShift(images.reshape(5, -1), 3)(idx, dxdy)
    for i, j in enumerate(idx.tolist()):
        expected = shift(images[j : j + 1], int(dxdy[i, 0]), int(dxdy[i, 1])).reshape(-1)
        torch.testing.assert_close(moved[i], expected, rtol=0, atol=0)
    per_model = RandomShift(images.reshape(5, -1), 3)(
        idx.view(1, 5).expand(2, 5), dxdy.expand(2, 5, 2)
    )
    assert per_model.shape == (2, 5, 3072) and torch.equal(per_model[1], moved)
    cfg = ModelConfig(arch="cnn", channels=(4, 4), hidden=(8,))
    engine.seed_everything(0)
    model = build_model(cfg)
    assert (
        n_parameters(build_model(ModelConfig(arch="cnn", channels=(16, 8), hidden=(32,)))) == 18_090
    )  # the book's Net
    history = trained(
        model, tiny_data(), loss="nll", epochs=3, batch_size=8, lr=0.05, seed=0, augment_shift=2
    )
    assert len(history) == 3 and np.isfinite(history[-1].train_loss)
    engine.seed_everything(0)
    again = build_model(cfg)
    trained(
        again, tiny_data(), loss="nll", epochs=3, batch_size=8, lr=0.05, seed=0, augment_shift=2
    )
    for (
        k,
        w,
    ) in model.state_dict().items():  # augmentation draws from the seeded generator: reproducible
        assert torch.equal(again.state_dict()[k], w)


def test_small_rule_picks_the_fewest_parameters_within_one_std():
    from birdplane.summary import smallest_within_one_std, spread

    def c(params, mean, std):
        return {"n_parameters": params, "val_accuracy": {"mean": mean, "std": std}}

    configs = {
        "w2": c(6_000, 0.70, 0.02),
        "w8": c(25_000, 0.807, 0.01),
        "w32": c(98_000, 0.81, 0.004),
        "w512": c(1_574_000, 0.80, 0.02),
    }
    pick = smallest_within_one_std(configs)  # best: w32, 0.81 - 0.004 = 0.806; w512 (0.80) is below
    assert pick["best"] == "w32" and pick["threshold"] == pytest.approx(0.806)
    assert pick["within_one_std"] == ["w8", "w32"] and pick["pick"] == "w8"
    s = spread([0.8, 0.82, 0.84])
    assert (
        s["mean"] == pytest.approx(0.82)
        and s["std"] == pytest.approx(0.02)
        and spread([0.5])["std"] == 0.0
    )


def test_gram_blocks_only_for_wide_first_layers():
    """The engine's default: blocks of 4 minibatches for the book's 512-unit layer (faster on CPU
    and inside an H100's epoch graph), one minibatch per step for narrower layers (slower on CPU)."""
    from birdplane.train.fast.batched import BatchedMLP
    from birdplane.train.fast.fused import GRAM_BLOCK, FusedMLP

    wide, narrow = build_model(ModelConfig(hidden=(512,))), build_model(ModelConfig(hidden=(32,)))
    assert FusedMLP(wide, "nll").gram_block() == GRAM_BLOCK == 4
    assert FusedMLP(narrow, "nll").gram_block() == 1
    assert BatchedMLP([narrow, wide], "nll").gram_block() == 4  # the widest model decides
    sgd = SGD(loss="nll", epochs=1, batch_size=64, lr=0.01)
    assert (
        fused_stepper(wide, sgd).batches_per_call == 4
        and fused_stepper(narrow, sgd).batches_per_call == 1
    )
    assert (
        fused_stepper(build_model(ModelConfig(arch="cnn", channels=(4,), hidden=(8,))), sgd) is None
    )  # autograd


def test_cnn_weights_are_channels_last_and_saved_contiguous(tmp_path):
    cfg = ModelConfig(arch="cnn", channels=(4, 4), hidden=(8,))
    torch.manual_seed(0)
    model = build_model(cfg)
    convs = [m for m in model if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    assert not all(c.weight.is_contiguous() for c in convs)  # the 4 x 3 x 3 x 3 kernel is not both
    x = torch.randn(6, 3, 32, 32)
    nchw = build_model(cfg)
    nchw.load_state_dict(model.state_dict())
    nchw.to(memory_format=torch.contiguous_format)
    with torch.no_grad():
        torch.testing.assert_close(model(x), nchw(x))  # same function, other memory layout
    save_model(tmp_path / "m.pt", model, cfg)
    blob = torch.load(tmp_path / "m.pt", weights_only=True)
    assert all(t.is_contiguous() for t in blob["state_dict"].values())
    loaded, _ = load_model(tmp_path / "m.pt")
    assert all(
        m.weight.is_contiguous(memory_format=torch.channels_last)
        for m in loaded
        if isinstance(m, torch.nn.Conv2d)
    )


def test_both_engines_stop_early_augment_and_measure_alike():
    """Early stopping (the best epoch's weights back), random shifts and the full training pass
    behave the same on the book's loop and the fast path: same epochs, same figures to rounding."""
    data = tiny_data(n=200)
    recipe = dict(
        loss="nll",
        epochs=30,
        batch_size=8,
        lr=0.3,
        patience=2,
        augment_shift=2,
        train_metrics="full",
    )
    out = {}
    for name in ("autograd", "fused"):
        engine.seed_everything(2)
        model = build_model(ModelConfig(hidden=(16,)))
        out[name] = model, trained(model, data, seed=2, engine=name, **recipe)
    (ref, h_ref), (fast_model, h_fast) = out["autograd"], out["fused"]
    assert len(h_ref) < 30 and [s.epoch for s in h_fast] == [s.epoch for s in h_ref]
    for a, b in zip(h_ref, h_fast):
        assert b.val_accuracy == a.val_accuracy and b.train_accuracy == a.train_accuracy
        assert b.train_loss == pytest.approx(a.train_loss, rel=1e-4)
    for (k, a), b in zip(ref.state_dict().items(), fast_model.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=k)
