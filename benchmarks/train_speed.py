"""Training speed: the book's DataLoader loop against the project's engine, in one process.

    .venv/bin/python benchmarks/train_speed.py                      # CPU, 3072-512-2, 6 epochs
    .venv/bin/python benchmarks/train_speed.py --device cuda --epochs 20
    .venv/bin/python benchmarks/train_speed.py --many 16 --hidden 32   # K models at once vs one by one
    bash benchmarks/gpu.sh                                           # the GPU figures, one short run

Trains the same model (same init) on the same data for the same epochs with
  book     a DataLoader over a list of (image, label) samples, batch 64, shuffled, autograd + SGD
           (Deep Learning with PyTorch, ch. 7);
  autograd birdplane.train.loop, the book's loop as the project runs it: data as one tensor,
           batches by slices of a seeded permutation, autograd + torch.optim.SGD (the reference);
  stepwise the same loop with birdplane.train.fast.fused's one-pass SGD update, one minibatch at a time;
  fused    the engine's default: the fused update, with FusedMLP.steps (the first layer's
           products for 4 minibatches at once, Gram-corrected; same SGD) for wide first layers;
  graph    (CUDA only) the engine's GPU default: the fused epoch captured once as a CUDA graph;
and prints seconds per epoch (training only, no evaluation passes), the ratio to the book,
achieved GFLOP/s (forward plus weight-gradient matrix products), the machine's measured float32
matmul peak, and the final training accuracy of each (they must agree within noise); then the
first layer's two big products alone per epoch (64 and 256 rows at a time), the floor that no
step on this net can beat on this machine, as a share of the book's epoch.

The methods take turns epoch by epoch (book, autograd, stepwise, fused, book, ...), so a busy neighbour on a
shared machine slows all of them alike; the ratio uses the medians over epochs 2..n.

--many K trains K models of --hidden widths (seeds 0..K-1) with birdplane.train.fast.batched at once and,
for comparison, the same K models one after the other with the fused engine.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

from birdplane.data import load_dataset, to_features
from birdplane.inference import loss_and_accuracy
from birdplane.losses import LOSSES
from birdplane.models import ModelConfig, build_model
from birdplane.train import engine, fast, loop
from birdplane.train.fast.epochs import EpochRunner, Stepper, epoch_runner, fused_stepper
from birdplane.train.sgd import SGD


def data(args, device):
    if args.data and Path(args.data).exists():
        train, _, _ = load_dataset(Path(args.data))
        images, labels = train.images[: args.n], train.labels[: args.n]
        source = args.data
    else:  # synthetic CIFAR-shaped data with a learnable signal
        rng = np.random.default_rng(0)
        labels = rng.integers(0, 2, args.n)
        images = np.clip(
            rng.normal(120 + 20 * labels[:, None, None, None], 60, (args.n, 3, 32, 32)), 0, 255
        )
        images = images.astype(np.uint8)
        source = "synthetic"
    x = to_features(images, [0.5] * 3, [0.25] * 3, device)
    return x, torch.from_numpy(labels).to(device), source


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def book_epochs(model, x, y, batch, lr, device) -> Iterator[None]:
    """The book's loop: a list of samples, a DataLoader, per-batch collation; one epoch per next()."""
    samples = [(x[i].view(3, 32, 32).cpu(), int(y[i])) for i in range(len(y))]
    loader = torch.utils.data.DataLoader(
        samples, batch_size=batch, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    loss_fn = nn.NLLLoss()
    while True:
        for imgs, labels in loader:
            imgs, labels = imgs.to(device), labels.to(device)
            out = model(imgs.view(imgs.shape[0], -1))
            loss = loss_fn(out, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        yield


def fast_runner(model, x, y, batch, lr, graph, block=None) -> tuple[Stepper, EpochRunner]:
    """The fast path's step and epoch for this model, wired as birdplane.train.fast wires them."""
    sgd = SGD(loss="nll", epochs=1, batch_size=batch, lr=lr)
    step = fused_stepper(model, sgd, block)
    return step, epoch_runner(step, list(model.parameters()), (x, y), sgd, (len(x),), graph)


def engine_epochs(model, x, y, batch, lr, fused, graph, block=None) -> Iterator[None]:
    """Training epochs alone (the engines add the validation pass, timed apart): the fast path's,
    or with fused=False the book's loop (birdplane.train.loop.train_epoch); both in the same order."""
    gen = torch.Generator().manual_seed(0)
    if fused:
        _, run = fast_runner(model, x, y, batch, lr, graph, block)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=lr)

        def run(perm: torch.Tensor) -> None:
            loop.train_epoch(
                model,
                LOSSES["nll"].mean,
                optimizer,
                loop.minibatches(x, y, batch, perm),
                loop.Running("nll"),
            )

    while True:
        run(torch.randperm(len(x), generator=gen).to(x.device))
        yield


def seconds(run: Callable[[], object], device) -> float:
    """Wall time of run(), the device's queued work included."""
    sync(device)
    t0 = time.perf_counter()
    run()
    sync(device)
    return time.perf_counter() - t0


def timed_turns(methods: dict[str, Iterator[None]], epochs: int, device) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(epochs):
        for name, epochs_of in methods.items():
            times[name].append(seconds(lambda: next(epochs_of), device))
    return times


def steady(times: list[float]) -> float:
    return float(np.median(times[1:] if len(times) > 1 else times))


def matmul_peak(device, n=2048, reps=5):
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b

    def products() -> None:
        for _ in range(reps):
            a @ b

    best = min(seconds(products, device) for _ in range(3))
    return 2 * n**3 * reps / best / 1e9


def products_floor(cfg, n, rows, device, reps=3) -> float:
    """Seconds per epoch of the first layer's two big products alone: for every `rows` rows of the
    n images the forward W @ X^T and the update W += D X, as the engine runs them (no activation,
    head, gather or Gram correction): what no step on this layer can beat on this machine."""
    w = torch.randn(cfg.hidden[0], cfg.in_features, device=device) * 0.01
    xb = torch.randn(rows, cfg.in_features, device=device)
    d = torch.randn(cfg.hidden[0], rows, device=device) * 1e-4
    blocks = n // rows

    def epoch() -> None:
        for _ in range(blocks):
            torch.mm(w, xb.t())
            w.addmm_(d, xb, alpha=-0.01)

    best = min(seconds(epoch, device) for _ in range(reps))
    return best * n / (blocks * rows)


def compare_engines(args, device, x, y, cfg, flops):
    models: dict[str, nn.Module] = {}
    methods: dict[str, Iterator[None]] = {}
    names = args.methods or ["book", "autograd", "stepwise", "fused"] + (
        ["graph"] if device.type == "cuda" else []
    )
    for name in names:
        torch.manual_seed(0)
        models[name] = build_model(cfg).to(device)
        if name == "book":
            methods[name] = book_epochs(models[name], x, y, args.batch, args.lr, device)
        else:
            methods[name] = engine_epochs(
                models[name],
                x,
                y,
                args.batch,
                args.lr,
                fused=name != "autograd",
                graph=name == "graph",
                block=1 if name == "stepwise" else args.block,
            )
    times = timed_turns(methods, args.epochs, device)
    book = steady(times["book"]) if "book" in times else None
    for name in names:
        _, acc = loss_and_accuracy(models[name], nn.NLLLoss(), x, y)
        t = steady(times[name])
        ratio = f"  ratio to book {t / book:.2f}" if book is not None else ""
        print(
            f"{name:9s} per-epoch s: {' '.join(f'{s:.3f}' for s in times[name])}  median {t:.4f} s  "
            f"{flops / t / 1e9:6.1f} GFLOP/s{ratio}  train accuracy {acc:.4f}"
        )
    if cfg.hidden:  # the floor the engine works against, same run (best of 3 epochs' worth)
        for rows in (args.batch, 4 * args.batch):
            t = products_floor(cfg, len(y), rows, device)
            share = f", {t / book:.2f} of the book's epoch" if book is not None else ""
            print(
                f"first layer's two products alone, {rows} rows at a time: {t:.4f} s per epoch{share}"
            )
    if device.type == "cuda":
        graph_startup(args, device, x, y, cfg)
    torch.manual_seed(0)
    model = build_model(cfg).to(device)
    t = seconds(lambda: loss_and_accuracy(model, nn.NLLLoss(), x, y), device)
    print(f"one full no-grad evaluation pass over the {len(y)} images: {t:.3f} s")
    # what a training stage runs: the fast path with its defaults for the device, validation pass included
    torch.manual_seed(0)
    model = build_model(cfg).to(device)
    val_x, val_y = x[:2000], y[:2000]
    sgd = SGD(loss="nll", epochs=args.epochs, batch_size=args.batch, lr=args.lr)
    total = seconds(
        lambda: fast.Fused(block=args.block).train(model, (x, y), (val_x, val_y), sgd, seed=0),
        device,
    )
    print(
        f"engine.train, {args.epochs} epochs with a {len(val_y)}-image validation pass each: {total:.2f} s "
        f"({total / args.epochs * 1e3:.1f} ms per epoch)"
    )


def graph_startup(args, device, x, y, cfg):
    """What the first epoch of the graph path costs: building its CUDA graph (a warm-up call on a
    few minibatches, the capture, the instantiation), then its first and second replay."""
    torch.manual_seed(0)
    model = build_model(cfg).to(device)
    made = []  # (step, run): building the graph is what is timed
    built = seconds(
        lambda: made.append(fast_runner(model, x, y, args.batch, args.lr, True, args.block)), device
    )
    ((step, run),) = made
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0)).to(device)
    first, second = (seconds(lambda: run(perm), device) for _ in range(2))
    print(
        f"one epoch's CUDA graph ({step.batches_per_call} minibatches per step call): built in {built:.3f} s "
        f"(warm-up, capture, instantiation); replays {first * 1e3:.1f} ms, then {second * 1e3:.1f} ms"
    )


def compare_many(args, device, x, y, cfg):
    """K models at once (birdplane.train.fast.batched) against the same K one after the other (fused engine)."""
    k = args.many
    val_x, val_y = (
        x[:200],
        y[:200],
    )  # the per-epoch validation pass, small here: this times training

    def models() -> list[nn.Module]:
        out = []
        for seed in range(k):
            torch.manual_seed(seed)
            out.append(build_model(cfg).to(device))
        return out

    epochs = args.epochs
    sgd = SGD(loss="nll", epochs=epochs, batch_size=args.batch, lr=args.lr)
    one_by_one = seconds(
        lambda: [
            fast.train(m, (x, y), (val_x, val_y), sgd, seed=s) for s, m in enumerate(models())
        ],
        device,
    )
    batched_models = models()
    together = seconds(
        lambda: fast.train_many(batched_models, (x, y), (val_x, val_y), sgd, seeds=list(range(k))),
        device,
    )
    for name, t in (("one by one", one_by_one), ("batched", together)):
        print(
            f"{name:10s} {k} models x {epochs} epochs: {t:.2f} s, {t / epochs / k * 1e3:.2f} ms per epoch per model"
        )
    print(f"batched / one by one: {together / one_by_one:.2f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--hidden", type=int, nargs="+", default=[512])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument(
        "--methods",
        nargs="+",
        choices=["book", "autograd", "stepwise", "fused", "graph"],
        help="default: all that apply to the device",
    )
    ap.add_argument(
        "--block",
        type=int,
        metavar="B",
        help="minibatches per call of the fused step (fused, graph and engine.train; default: the "
        "engine's, FusedMLP.gram_block: 4 for first layers of 512 units or more)",
    )
    ap.add_argument(
        "--many", type=int, default=0, metavar="K", help="K models at once vs one by one"
    )
    ap.add_argument(
        "--data", default="data/prepared/dataset.npz", help="real images if the file exists"
    )
    ap.add_argument(
        "--peak",
        action="store_true",
        help="print only the float32 matmul peak in GFLOP/s (benchmarks/pipeline_stages.sh)",
    )
    args = ap.parse_args()
    device = torch.device(args.device)
    if args.peak:
        print(f"{matmul_peak(device):.0f}")
        return
    engine.seed_everything(0)
    x, y, source = data(args, device)
    cfg = ModelConfig(hidden=tuple(args.hidden))
    widths = (cfg.in_features, *cfg.hidden, cfg.n_classes)
    flops = (
        4 * sum(a * b for a, b in zip(widths, widths[1:])) * len(y)
    )  # forward + weight gradients
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine()
    )
    print(
        f"{name}, torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}; "
        f"model {'-'.join(map(str, widths))}; {len(y)} images ({source}), batch {args.batch}, "
        f"{args.epochs} epochs; {flops / 1e9:.1f} GFLOP per epoch"
        + (f"; fused step {args.block} minibatches per call" if args.block else "")
    )
    print(f"float32 matmul peak (2048^3, best of 3): {matmul_peak(device):.0f} GFLOP/s")
    if args.many:
        compare_many(args, device, x, y, cfg)
    else:
        compare_engines(args, device, x, y, cfg, flops)


if __name__ == "__main__":
    main()
