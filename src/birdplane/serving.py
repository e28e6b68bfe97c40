"""Loading the models that the training stages log to MLflow, without pickle.

A logged model is MLflow's pyfunc format around the stage's own model file (a state_dict plus
the config that rebuilds it, birdplane.models.save_model), loaded through `_load_pyfunc` below
(this package must be installed). `load_logged_model` reads only the model file and gives back the
torch module itself:

    from birdplane.serving import load_logged_model
    model = load_logged_model("models:/<model id>")      # the id: MLflow UI, the run's "Logged models"
    log_probs = model(images)                            # N x 3 x 32 x 32, normalized
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

MODEL_FILE = "model.pt"  # in the logged model's data/ folder (birdplane.tracking.log_torch_model)


# a logged model's file is damaged: the project's own model file is not where the fix is
LOGGED_FIX = (
    "log the model again: re-run the training stage that logged it (`dvc repro -f train@<variant>`)"
)


def load_file(path: str | Path, fix: str | None = None):
    """The model in a birdplane model file, checked before it is built (birdplane.modelfile:
    torch.load with weights_only, no code runs); `fix`: what its error says to do, where the file
    is not the project's models/<variant>.pt."""
    from birdplane.modelfile import load_model

    return load_model(Path(path), fix=fix)[0]


def predict_numpy(model, images: np.ndarray) -> np.ndarray:
    """The head's outputs for normalized images (N x 3 x 32 x 32 or N x 3072, float32)."""
    import torch

    with torch.no_grad():
        return model(torch.as_tensor(np.asarray(images, dtype=np.float32))).numpy()


class _PyfuncModel:
    def __init__(self, model):
        self.model = model

    def predict(self, model_input, params=None):
        return predict_numpy(self.model, model_input)

    def get_raw_model(self):
        return self.model


def _load_pyfunc(data_path: str) -> _PyfuncModel:
    """MLflow's entry point (loader_module): data_path is the logged model file."""
    return _PyfuncModel(load_file(data_path, LOGGED_FIX))


def load_logged_model(model_uri: str):
    """The torch module of a model a training stage logged (models:/<id>, runs:/<run>/model, ...).

    Safe with an untrusted store: only the model file is read, with torch.load(weights_only=True),
    at the place this package's logging puts it (data/model.pt); nothing the artifact names is
    imported or run, not its MLmodel's loader and not any code in it. (mlflow.pyfunc.load_model
    imports the loader module the artifact's MLmodel names: like any MLflow model, for trusted
    stores only.)"""
    import mlflow.artifacts

    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri))
    return load_file(local / "data" / MODEL_FILE, LOGGED_FIX)
