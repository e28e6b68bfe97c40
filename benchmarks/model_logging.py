"""What logging the trained model to MLflow costs a training stage: the pyfunc format without
pickle (birdplane.tracking.log_torch_model, what the stages do) against MLflow's pickled pytorch
flavour (what they did before) and its torch.export default, on the book's 3072-512-2 net.

    .venv/bin/python benchmarks/model_logging.py [--repeat 3] [--hidden 512]

Each method logs the same model into a fresh SQLite store in a temporary folder, `--repeat` times,
in one process after a warm-up of each (so imports are not counted: a stage pays them once); the
median is printed. Loading is timed too: `birdplane.serving.load_logged_model` against
`mlflow.pytorch.load_model`.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
import warnings
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--hidden", type=int, default=512)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")

    import mlflow
    import mlflow.pytorch
    import torch

    logging.getLogger("mlflow").setLevel(
        logging.ERROR
    )  # after the import, which sets MLflow's levels

    from birdplane import serving, tracking
    from birdplane.models import ModelConfig, build_model

    torch.manual_seed(0)
    cfg = ModelConfig(hidden=(args.hidden,))
    model = build_model(cfg)
    example = torch.randn(2, 3, 32, 32)

    def pyfunc() -> str:
        tracking.log_torch_model(model, cfg, example)
        return f"models:/{mlflow.last_logged_model().model_id}"

    def pickled() -> str:
        mlflow.pytorch.log_model(
            model,
            name="model",
            serialization_format="pickle",
            input_example=example.numpy(),
            pip_requirements=["torch"],
        )
        return f"models:/{mlflow.last_logged_model().model_id}"

    def exported() -> str:
        mlflow.pytorch.log_model(
            model,
            name="model",
            serialization_format="pt2",
            export_model=True,
            input_example=example.numpy(),
            pip_requirements=["torch"],
        )
        return f"models:/{mlflow.last_logged_model().model_id}"

    loaders = {
        "pyfunc": serving.load_logged_model,
        "pickle": mlflow.pytorch.load_model,
        "pt2": mlflow.pytorch.load_model,
    }
    with tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tracking_uri(f"sqlite:///{Path(tmp, 'mlflow.db').as_posix()}")
        mlflow.set_experiment("bench")
        print(
            f"model 3072-{args.hidden}-2, {sum(p.numel() for p in model.parameters()):,} parameters; "
            f"median of {args.repeat} after a warm-up"
        )
        for name, log in (("pyfunc", pyfunc), ("pickle", pickled), ("pt2", exported)):
            times, load_times = [], []
            try:
                for i in range(args.repeat + 1):
                    with mlflow.start_run():
                        t0 = time.perf_counter()
                        uri = log()
                        t1 = time.perf_counter()
                        loaded = loaders[name](uri)
                        t2 = time.perf_counter()
                    if i:  # the first round pays the imports
                        times.append(t1 - t0)
                        load_times.append(t2 - t1)
                with torch.no_grad():
                    same = torch.equal(loaded(example), model(example))
                print(
                    f"{name:7s} log {statistics.median(times):.2f} s  load {statistics.median(load_times):.2f} s  "
                    f"same outputs: {same}"
                )
            except Exception as e:  # noqa: BLE001 - a method this MLflow cannot do is reported, not fatal
                print(f"{name:7s} failed: {type(e).__name__}: {str(e)[:120]}")


if __name__ == "__main__":
    main()
