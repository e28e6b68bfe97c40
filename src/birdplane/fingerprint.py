"""The numerical fingerprint: does this machine compute the committed bits?

    python -m birdplane.fingerprint                      # print this machine's digests (JSON)
    python -m birdplane.fingerprint --check              # 1 thread, 2 threads, the machine's count: all
                                                         # equal to tests/fingerprint.json? (exit 1 if
                                                         # not, 3 for another build of torch or numpy)
    python -m birdplane.fingerprint --write              # record this machine's digests (after a change
                                                         # of the code or the lock that moves the bits)
    qemu-x86_64 -cpu Haswell-v4 .venv/bin/python -m birdplane.fingerprint --check --here
                                                         # in this process (an emulated CPU: qemu-user
                                                         # runs child processes on the host's CPU)

A few seconds of every computation the pipeline's numbers come from, on generated images of the real
size (3 x 32 x 32, uint8 from a seeded generator): the book's 3072-512-2 net with the fused SGD step
and its Gram blocks, MSE with weight decay and dropout, three narrow nets trained side by side, the
autograd reference loop, the chapter-8 convnet, and the evaluation and shift-test passes. Each gives
a SHA-256 of its model bytes and metrics. With pinned numerics (birdplane.numerics) the digests are
the same on every x86-64 CPU with AVX2 and at every thread count; `--check` runs each thread count in
a fresh process (the settings are read when the libraries load) and on a mismatch names the CPU, its
flags, the thread count and the library versions.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

COMMITTED = Path(__file__).resolve().parents[2] / "tests" / "fingerprint.json"
N_TRAIN, N_VAL = 1024, 256


def images(n: int, seed: int):
    """n uint8 images (n x 3 x 32 x 32) and labels 0/1, the same integers on every machine (PCG64),
    with a class signal a net can learn: label 1 is brighter in the red channel's upper half."""
    import numpy as np

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    x = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.int64)
    x[:, 0, :16] = np.clip(x[:, 0, :16] + 40 * labels[:, None, None] - 20, 0, 255)
    return x.astype(np.uint8), labels


def _digest(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else json.dumps(p, sort_keys=True).encode())
    return h.hexdigest()


def _data():
    """The generated train and validation sets as normalized features and labels (CPU tensors)."""
    import torch

    from birdplane.data import to_features

    mean, std = [0.49, 0.48, 0.45], [0.25, 0.24, 0.26]
    tx, ty = images(N_TRAIN, 1)
    vx, vy = images(N_VAL, 2)
    train = (to_features(tx, mean, std, "cpu"), torch.from_numpy(ty))
    val = (to_features(vx, mean, std, "cpu"), torch.from_numpy(vy))
    return train, val


def _fit(data, cfg, loss, seed=0, engine_name="fused", **kw):
    """Train one model for 2 epochs: (model, digest of its bytes, history and final metrics)."""
    import torch

    from birdplane.inference import final_metrics
    from birdplane.models import build_model, model_bytes
    from birdplane.train import engine
    from birdplane.train.sgd import SGD

    train, val = data
    torch.manual_seed(seed)
    model = build_model(cfg)
    sgd = SGD(loss=loss, epochs=2, batch_size=64, lr=0.01, **kw)
    history = engine.train(model, train, val, sgd, seed=seed, engine=engine_name)
    digest = _digest(
        model_bytes(model, cfg),
        [s.to_dict() | {"seconds": 0} for s in history],
        final_metrics(model, loss, train, val),
    )
    return model, digest


def _side_by_side(data) -> str:
    """The digest of three narrow nets trained side by side (train_many)."""
    import torch

    from birdplane.models import ModelConfig, build_model, model_bytes
    from birdplane.train.fast import train_many
    from birdplane.train.sgd import SGD

    train, val = data
    cfg = ModelConfig(hidden=(32,))
    models = []
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        models.append(build_model(cfg))
    histories = train_many(
        models, train, val, SGD(loss="nll", epochs=2, batch_size=64, lr=0.01), seeds=[0, 1, 2]
    )
    return _digest(
        *(model_bytes(m, cfg) for m in models),
        [[s.to_dict() | {"seconds": 0} for s in h] for h in histories],
    )


def compute() -> dict[str, str]:
    """Each workload's digest. Call in a fresh process: numerics are set before torch loads."""
    from birdplane import numerics

    numerics.install()
    from birdplane.inference import logit_gradients
    from birdplane.metrics import evaluate_model
    from birdplane.models import ModelConfig
    from birdplane.shift import shift_test

    data = _data()
    (train, val), out = data, {}
    book, out["mlp_nll_fused"] = _fit(data, ModelConfig(), "nll")
    _, out["mlp_mse_decay_dropout"] = _fit(
        data,
        ModelConfig(hidden=(64,), head="softmax", dropout=0.5),
        "mse",
        weight_decay=0.002,
    )
    _, out["mlp_autograd"] = _fit(data, ModelConfig(hidden=(64,)), "nll", engine_name="autograd")
    _, out["mlp_augmented"] = _fit(data, ModelConfig(hidden=(64,)), "nll", augment_shift=2)
    cnn = ModelConfig(arch="cnn", channels=(16, 8), hidden=(32,))
    _, out["cnn"] = _fit(data, cnn, "nll", seed=3)
    out["mlp_side_by_side"] = _side_by_side(data)
    evaluation = evaluate_model(book, "nll", ["a", "b"], train, val, 10)
    gradients = logit_gradients(book, "nll", *train)
    out["evaluate"] = _digest(list(evaluation), gradients)
    out["shift_test"] = _digest(
        list(shift_test(book, val[0].view(-1, 3, 32, 32), val[1], 2, ["fill", "wrap"], 1))
    )
    return out


def machine() -> dict[str, object]:
    """What a mismatch report needs: CPU model and flags, threads, library versions, numerics."""
    import numpy
    import torch
    from threadpoolctl import threadpool_info

    from birdplane import numerics, provenance

    model, flags = provenance.cpu()
    blas = [
        f"{i.get('internal_api')} {i.get('version')} {i.get('architecture')}"
        for i in threadpool_info()
        if i.get("user_api") == "blas"
    ]
    return {
        "cpu": model,
        "system": platform.system(),
        "flags": sorted(
            flags & {"avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni"}
        ),
        "cpuid": cpuid_features(),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "blas": blas,
        "aten_capability": torch.backends.cpu.get_cpu_capability(),
        "numerics": numerics.describe(),
    }


def cpuid_features() -> list[str]:
    """The vector extensions the libraries see, from the CPUID instruction (numpy's own probe). Under
    an emulator (qemu-user) this is the emulated CPU, while /proc/cpuinfo still shows the host's."""
    import numpy

    features = getattr(numpy._core._multiarray_umath, "__cpu_features__", {})
    wanted = ("AVX", "AVX2", "FMA3", "AVX512F", "AVX512BW", "AVX512VL", "AVX512VNNI")
    return [f for f in wanted if features.get(f)]


def run_here() -> dict:
    """compute() in this process, at its torch thread count: {digests, machine}. For an emulated CPU:
    qemu-user emulates this process only, the fresh processes of run_one would run on the host."""
    from birdplane import numerics

    numerics.pin()
    return {"digests": compute(), "machine": machine()}


def run_one(threads: int) -> dict:
    """compute() in a fresh process with `threads` torch threads: {digests, machine}."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    code = (
        "import json; from birdplane.numerics import pin; pin(); import torch; torch.set_num_threads(%d); "
        "from birdplane import fingerprint as f; print(json.dumps({'digests': f.compute(), 'machine': f.machine()}))"
        % threads
    )
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(
            f"fingerprint: the run with {threads} thread(s) failed:\n{r.stderr.strip()}"
        )
    return json.loads(r.stdout.strip().splitlines()[-1])


def build_differs(made_on: dict, here: dict) -> str | None:
    """Why digests made with other releases of the libraries or on another OS say nothing here, or
    None. Windows' and macOS' wheels are compiled by other compilers; a release's Linux wheels (from
    PyPI, or PyTorch's CUDA or CPU index: the part after '+') share its CPU kernels' source and
    flags, so they are compared, and a mismatch says which build it was."""
    from birdplane.provenance import release

    if (
        release(made_on.get("torch")) == release(here.get("torch"))
        and made_on.get("numpy") == here.get("numpy")
        and made_on.get("system") == here.get("system")
    ):
        return None
    return (
        f"the committed digests are of torch {made_on.get('torch')}, numpy {made_on.get('numpy')} on "
        f"{made_on.get('system')}; this is torch {here.get('torch')}, numpy {here.get('numpy')} on {here.get('system')}"
    )


def mismatches(expected: dict[str, str], got: dict[str, str]) -> list[str]:
    return [k for k in sorted(set(expected) | set(got)) if expected.get(k) != got.get(k)]


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    """The command line: --check, --write, --file, --threads."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="compare with the committed digests")
    ap.add_argument("--write", action="store_true", help="write this machine's digests to --file")
    ap.add_argument(
        "--file", type=Path, default=COMMITTED, help="the committed digests (default: %(default)s)"
    )
    ap.add_argument(
        "--threads",
        type=int,
        nargs="+",
        help="thread counts (default: 1, 2 and the machine's count)",
    )
    ap.add_argument(
        "--here",
        action="store_true",
        help="compute in this process at its thread count (OMP_NUM_THREADS), not in fresh "
        "processes: for an emulated CPU (qemu-user emulates one process, not its children)",
    )
    args = ap.parse_args(argv)
    if args.here and args.threads:
        ap.error("--here runs at this process's thread count: set OMP_NUM_THREADS, not --threads")
    return args


def _unpinned() -> bool:
    """True (after saying why on stderr) where numerics are not pinned, so no committed bits."""
    from birdplane import numerics

    mode = numerics.requested_mode()
    if mode == numerics.PINNED:
        return False
    print(
        f"fingerprint: numerics are {mode!r} here "
        f"({numerics.MODE_VARIABLE}={os.environ.get(numerics.MODE_VARIABLE)!r}, "
        f"machine {platform.machine()}): only pinned numerics on x86-64 give the committed bits",
        file=sys.stderr,
    )
    return True


def _write(file: Path, first: dict) -> None:
    """Record one run's digests and machine as the committed ones."""
    with file.open("w", encoding="utf-8") as f:
        json.dump(
            {"digests": first["digests"], "made_on": first["machine"]},
            f,
            indent=2,
            sort_keys=True,
        )
        f.write("\n")


def _report_mismatches(file: Path, expected: dict[str, str], runs: dict[int, dict]) -> bool:
    """Print on stderr each thread count whose digests differ; True if any did."""
    failed = False
    for n, r in runs.items():
        bad = mismatches(expected, r["digests"])
        if bad:
            failed = True
            m = r["machine"]
            print(
                f"fingerprint: {', '.join(bad)} differ from {file.name} with {n} thread(s) on {m['cpu']} "
                f"(flags {' '.join(m['flags'])}; CPUID {' '.join(m['cpuid'])}; "
                f"ATen {m['aten_capability']}; {'; '.join(m['blas'])}; "
                f"torch {m['torch']}, numpy {m['numpy']}; {m['cpu_count']} CPUs)",
                file=sys.stderr,
            )
    return failed


def _check(file: Path, runs: dict[int, dict], counts: list[int]) -> int:
    """Compare the runs with the committed digests: exit status 0, 1 (differ) or 3 (other build)."""
    with file.open(encoding="utf-8") as f:
        committed = json.load(f)
    expected, made_on = committed["digests"], committed.get("made_on", {})
    first = runs[counts[0]]
    other = build_differs(made_on, first["machine"])
    if other:
        print(f"fingerprint: not comparable: {other}", file=sys.stderr)
        return 3
    if _report_mismatches(file, expected, runs):
        print(
            "fingerprint: this machine does not compute the committed bits; docs/reproducing.md says what to do",
            file=sys.stderr,
        )
        return 1
    print(
        f"fingerprint: {len(expected)} workloads give the committed digests with {', '.join(map(str, counts))} "
        f"thread(s) on {first['machine']['cpu']} (CPUID: {' '.join(first['machine']['cpuid'])})"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    counts = sorted(set(args.threads or (1, 2, os.cpu_count() or 1)))
    if (args.check or args.write) and _unpinned():
        return 2
    if args.here:
        here = run_here()
        counts = [here["machine"]["torch_threads"]]
        runs = {counts[0]: here}
    else:
        runs = {n: run_one(n) for n in counts}
    if args.write:
        _write(args.file, runs[counts[0]])
    if not (args.check or args.write):
        print(json.dumps(runs, indent=2, sort_keys=True))
        return 0
    return _check(args.file, runs, counts)


if __name__ == "__main__":
    sys.exit(main())
