"""Training speed: the book's DataLoader loop against the project's engine, in one process.

    .venv/bin/python benchmarks/train_speed.py                      # CPU, 3072-512-2, 5 epochs
    .venv/bin/python benchmarks/train_speed.py --device cuda --epochs 20
    .venv/bin/python benchmarks/train_speed.py --data data/prepared/dataset.npz --hidden 32

Trains the same model (same init) on the same data for the same epochs with
  book     a DataLoader over a list of (image, label) samples, batch 64, shuffled, autograd + SGD
           (Deep Learning with PyTorch, ch. 7);
  autograd the engine's loop: data as one tensor, batches by slices of a seeded permutation,
           autograd + torch.optim.SGD;
  fused    the engine's default: the same loop with birdplane.fused's one-pass SGD update;
and prints seconds per epoch (training only, no evaluation passes), the ratio to the book,
achieved GFLOP/s (forward plus weight-gradient matrix products), the machine's measured float32
matmul peak, and the final training accuracy of each (they must agree within noise).
"""
from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from birdplane import engine
from birdplane.data import load_dataset
from birdplane.models import ModelConfig, build_model


def data(args, device):
    if args.data and Path(args.data).exists():
        train, _, _ = load_dataset(Path(args.data))
        images, labels = train.images[: args.n], train.labels[: args.n]
    else:  # synthetic CIFAR-shaped data with a learnable signal
        rng = np.random.default_rng(0)
        labels = rng.integers(0, 2, args.n)
        images = np.clip(rng.normal(120 + 20 * labels[:, None, None, None], 60, (args.n, 3, 32, 32)), 0, 255)
        images = images.astype(np.uint8)
    x = engine.to_features(images, [0.5] * 3, [0.25] * 3, device)
    return x, torch.from_numpy(labels).to(device)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def book_loop(model, x, y, epochs, batch, lr, device):
    """The book's loop: a list of samples, a DataLoader, per-batch collation."""
    samples = [(x[i].view(3, 32, 32).cpu(), int(y[i])) for i in range(len(y))]
    loader = torch.utils.data.DataLoader(samples, batch_size=batch, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    loss_fn = nn.NLLLoss() if isinstance(model[-1], nn.LogSoftmax) else None
    times = []
    for _ in range(epochs):
        sync(device)
        t0 = time.perf_counter()
        for imgs, labels in loader:
            imgs, labels = imgs.to(device), labels.to(device)
            out = model(imgs.view(imgs.shape[0], -1))
            loss = loss_fn(out, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        sync(device)
        times.append(time.perf_counter() - t0)
    return times


def engine_loop(model, x, y, epochs, batch, lr, device, fused):
    """The engine's training epochs alone (engine.train adds full evaluation passes, timed apart)."""
    step = engine.make_step(model, "nll", lr, fused)
    gen = torch.Generator().manual_seed(0)
    times = []
    for _ in range(epochs):
        sync(device)
        t0 = time.perf_counter()
        engine.train_epoch(step, x, y, batch, gen)
        sync(device)
        times.append(time.perf_counter() - t0)
    return times


def matmul_peak(device, n=2048, reps=5):
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e9


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--hidden", type=int, nargs="+", default=[512])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--data", default="data/prepared/dataset.npz", help="real images if the file exists")
    ap.add_argument("--flush-denormal", action="store_true", help="torch.set_flush_denormal(True) first")
    args = ap.parse_args()
    device = torch.device(args.device)
    if args.flush_denormal:
        torch.set_flush_denormal(True)
    x, y = data(args, device)
    cfg = ModelConfig(hidden=tuple(args.hidden))
    widths = (cfg.in_features, *cfg.hidden, cfg.n_classes)
    flops = 4 * sum(a * b for a, b in zip(widths, widths[1:])) * len(y)  # forward + weight gradients
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"device {device}; model {'-'.join(map(str, widths))}; {len(y)} images, batch {args.batch}, "
          f"{args.epochs} epochs; {flops / 1e9:.1f} GFLOP per epoch")
    print(f"float32 matmul peak (2048^3): {matmul_peak(device):.0f} GFLOP/s")

    results = {}
    for name in ("book", "autograd", "fused"):
        torch.manual_seed(0)
        model = build_model(cfg).to(device)
        if name == "book":
            times = book_loop(model, x, y, args.epochs, args.batch, args.lr, device)
        else:
            times = engine_loop(model, x, y, args.epochs, args.batch, args.lr, device, fused=name == "fused")
        _, acc = engine.loss_and_accuracy(model, nn.NLLLoss(), x, y)
        steady = float(np.median(times[1:] if len(times) > 1 else times))
        results[name] = (steady, acc)
        print(f"{name:9s} per-epoch s: {' '.join(f'{t:.3f}' for t in times)}  median {steady:.3f} s  "
              f"{flops / steady / 1e9:6.1f} GFLOP/s  ratio to book {steady / results['book'][0]:.2f}  "
              f"train accuracy {acc:.4f}")
    torch.manual_seed(0)
    model = build_model(cfg).to(device)
    sync(device)
    t0 = time.perf_counter()
    engine.loss_and_accuracy(model, nn.NLLLoss(), x, y)
    sync(device)
    print(f"one full no-grad evaluation pass over the {len(y)} images: {time.perf_counter() - t0:.3f} s")


if __name__ == "__main__":
    main()
