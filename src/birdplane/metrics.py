"""Evaluation metrics on tensors: confusion matrix, per-class precision/recall/F1, calibration, and
everything the evaluate stage reports for a model (evaluate_model)."""

from __future__ import annotations

import torch

from birdplane.inference import final_metrics, predict
from birdplane.losses import LOSSES, probabilities
from birdplane.models import n_parameters


def confusion_matrix(y_true: torch.Tensor, y_pred: torch.Tensor, n_classes: int) -> torch.Tensor:
    """cm[i, j] = number of samples of true class i predicted as j."""
    idx = y_true.long() * n_classes + y_pred.long()
    return torch.bincount(idx, minlength=n_classes * n_classes).reshape(n_classes, n_classes).cpu()


def per_class_scores(cm: torch.Tensor, classes: list[str]) -> dict[str, dict[str, float]]:
    """Precision, recall and F1 per class from a confusion matrix (0 where undefined)."""
    cm = cm.double()
    tp = cm.diag()
    predicted, actual = cm.sum(0), cm.sum(1)
    precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), torch.zeros_like(tp))
    recall = torch.where(actual > 0, tp / actual.clamp(min=1), torch.zeros_like(tp))
    denom = precision + recall
    f1 = torch.where(
        denom > 0, 2 * precision * recall / denom.clamp(min=1e-300), torch.zeros_like(tp)
    )
    return {
        c: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(actual[i]),
        }
        for i, c in enumerate(classes)
    }


def calibration(probs: torch.Tensor, y_true: torch.Tensor, n_bins: int) -> tuple[float, list[dict]]:
    """Expected calibration error of the top-class confidence, and the reliability-diagram bins.

    ECE = sum over equal-width confidence bins of |accuracy - mean confidence| weighted by the bin's
    share of samples. 0 means the predicted probabilities can be taken at face value.
    """
    conf, pred = probs.max(1)
    correct = (pred == y_true).double()
    conf = conf.double()
    # bins (lo, hi]; the lowest bin also takes conf == 0
    b = torch.clamp(torch.ceil(conf * n_bins).long() - 1, 0, n_bins - 1)
    count = torch.bincount(b, minlength=n_bins).double()
    conf_sum = torch.bincount(b, weights=conf, minlength=n_bins)
    acc_sum = torch.bincount(b, weights=correct, minlength=n_bins)
    n = len(y_true)
    ece, bins = 0.0, []
    for i in range(n_bins):
        c = int(count[i])
        mean_conf = float(conf_sum[i] / c) if c else None
        acc = float(acc_sum[i] / c) if c else None
        if c:
            ece += c / n * abs(acc - mean_conf)
        bins.append(
            {
                "bin": i,
                "lower": i / n_bins,
                "upper": (i + 1) / n_bins,
                "count": c,
                "confidence": mean_conf,
                "accuracy": acc,
            }
        )
    return ece, bins


def evaluate_model(
    model, loss: str, classes: list[str], train, val, n_bins: int
) -> tuple[dict, list[dict], list[dict]]:
    """Everything the evaluate stage reports for one trained model: its final metrics on both sets
    (birdplane.inference.final_metrics, as training reports them), the validation NLL and
    calibration, per-class scores and the confusion matrix; plus the rows of its two plots (the
    actual and predicted class of every validation image, the non-empty reliability bins)."""
    final = final_metrics(model, loss, train, val)
    x, y = val
    out = predict(model, x)
    probs = probabilities(out, LOSSES[loss].head)
    pred = out.argmax(1)
    cm = confusion_matrix(y, pred, len(classes))
    ece, bins = calibration(probs, y, n_bins)
    result = {
        "train_accuracy": final["train_accuracy"],
        "val_accuracy": final["val_accuracy"],
        "overfit_gap": final["overfit_gap"],
        "train_loss": final["train_loss"],
        "val_loss": final["val_loss"],
        "loss": loss,
        # natural log-likelihood of the true class, comparable across both heads
        "val_nll": float(-probs.clamp_min(1e-12).log().gather(1, y[:, None]).mean()),
        "val_ece": ece,
        "n_parameters": n_parameters(model),
        "per_class": per_class_scores(cm, classes),
        "confusion_matrix": {"labels": classes, "rows_actual_cols_predicted": cm.tolist()},
        "calibration_bins": bins,
    }
    confusion_rows = [
        {"actual": classes[a], "predicted": classes[p]} for a, p in zip(y.tolist(), pred.tolist())
    ]
    reliability_rows = [
        {"confidence": b["confidence"], "accuracy": b["accuracy"], "count": b["count"]}
        for b in bins
        if b["count"]
    ]
    return result, confusion_rows, reliability_rows
