"""MLflow: where the store is, and the run of each variant. Imported only by stage scripts.

Core code never sees MLflow; stages pass plain callbacks into it.
"""
from __future__ import annotations

import os
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

DB_NAME = "mlflow.db"
ARTIFACTS = "mlartifacts"


def project_root(start: Path | None = None) -> Path:
    """The project's root, also from inside a `dvc exp run --queue/--temp` copy.

    DVC runs queued experiments in copies under `<root>/.dvc/tmp/exps/…`; MLflow must still
    write to the one store at the real root.
    """
    here = (start or Path.cwd()).resolve()
    parts = here.parts
    for i in range(len(parts) - 3):
        if parts[i:i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return here


def tracking_uri(root: Path | None = None) -> str:
    """MLFLOW_TRACKING_URI if set, else sqlite:///<project root>/mlflow.db (absolute)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(root or project_root()) / DB_NAME}"


def git_commit(root: Path | None = None) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root or Path.cwd(), capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def setup(experiment: str) -> str:
    """Point MLflow at the project's store and return the experiment id, creating it if needed."""
    import mlflow

    from filelock import FileLock

    root = project_root()
    # our default store keeps artifacts beside it (absolute, so experiment copies share them);
    # read the variable before set_tracking_uri, which sets it
    own_store = not os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(tracking_uri(root))
    # Parallel stages (`dvc queue start --jobs 2`) may meet a store that does not exist yet: one of
    # them creates the tables and the experiment while the others wait.
    lock = FileLock(root / f".{DB_NAME}.lock", timeout=300) if own_store else _no_lock()
    with lock:
        exp = mlflow.get_experiment_by_name(experiment)
        if exp is None:
            artifact_location = (root / ARTIFACTS).as_uri() if own_store else None
            return mlflow.create_experiment(experiment, artifact_location=artifact_location)
    return exp.experiment_id


@contextmanager
def _no_lock() -> Iterator[None]:
    yield


@contextmanager
def variant_run(experiment: str, variant: str, *, run_id: str | None = None,
                tags: dict[str, Any] | None = None) -> Iterator[Any]:
    """Start (or resume, with run_id) the variant's run; a failure inside marks it FAILED."""
    import mlflow

    exp_id = setup(experiment)
    if run_id is not None:
        try:
            mlflow.get_run(run_id)
        except Exception:
            run_id = None  # the store was reset or this is another machine: start a fresh run
    kwargs = {"run_id": run_id} if run_id else {"experiment_id": exp_id, "run_name": variant}
    run = mlflow.start_run(**kwargs, tags={k: str(v) for k, v in (tags or {}).items() if v is not None})
    try:
        yield run
    except BaseException:
        mlflow.end_run(status="FAILED")
        raise
    mlflow.end_run(status="FINISHED")


def add_to_variant_run(experiment: str, variant: str, run_id: str | None, *, metrics: dict[str, float],
                       tags: dict[str, str], documents: dict[str, Any] | None = None) -> None:
    """Add a later stage's metrics (and JSON documents) to the variant's training run.

    Without a run id, or when the store does not know it (a fresh store, a `dvc pull` on another
    machine), a new run of the same name is started instead.
    """
    import mlflow

    with variant_run(experiment, variant, run_id=run_id, tags={"variant": variant, **tags}):
        mlflow.log_metrics(metrics)
        for name, doc in (documents or {}).items():
            mlflow.log_dict(doc, name)


def log_torch_model(model, example_input, name: str = "model") -> None:
    """Log the model with a signature, an input example and pinned pip requirements.

    Saved as the pickled nn.Sequential (serialization_format="pickle"): mlflow.pytorch.load_model
    gives back the trainable module, and it skips torch.export, which costs about 3 s per training
    stage here (its imports alone 2.5 s). Load only models you trust, as with any pickle.
    """
    import cloudpickle
    import mlflow
    import mlflow.pytorch
    import numpy as np
    import torch
    from mlflow.models import infer_signature

    from mlflow.utils import requirements_utils

    # MLflow checks the pinned requirements against the environment through a map of every
    # installed distribution's files to its modules, built on first use: 3 s per training stage
    # here. The pins are this environment's own versions of four packages whose module and
    # distribution names agree, so the map needs only them.
    if getattr(requirements_utils, "_MODULES_TO_PACKAGES", ()) is None:
        requirements_utils._MODULES_TO_PACKAGES = {m: [m] for m in ("torch", "mlflow", "numpy", "cloudpickle")}
    with torch.no_grad():
        example_output = model(example_input)
    signature = infer_signature(example_input.cpu().numpy(), example_output.cpu().numpy())
    mlflow.pytorch.log_model(
        model.cpu(), name=name, signature=signature, input_example=example_input.cpu().numpy().astype(np.float32),
        serialization_format="pickle",
        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}",
                          f"numpy=={np.__version__}", f"cloudpickle=={cloudpickle.__version__}"])
