"""Loading the models that the training stages log to MLflow, without pickle.

A logged model is MLflow's pyfunc format around the stage's own model file (a state_dict plus
the config that rebuilds it, birdplane.models.save_model) and this package's code. MLflow loads it
through `_load_pyfunc` below; `load_logged_model` gives back the torch module itself:

    from birdplane.serving import load_logged_model
    model = load_logged_model("models:/<model id>")      # the id: MLflow UI, the run's "Logged models"
    log_probs = model(images)                            # N x 3 x 32 x 32, normalized
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def load_file(path: str | Path):
    """The model in a birdplane model file (torch.load with weights_only: no code runs)."""
    from birdplane.models import load_model

    return load_model(Path(path))[0]


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
    return _PyfuncModel(load_file(data_path))


def load_logged_model(model_uri: str):
    """The torch module of a model a training stage logged (models:/<id>, runs:/<run>/model, ...)."""
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(model_uri).get_raw_model()
