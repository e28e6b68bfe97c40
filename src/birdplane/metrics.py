"""Evaluation metrics on tensors: confusion matrix, per-class precision/recall/F1, calibration."""
from __future__ import annotations

import torch


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
    f1 = torch.where(denom > 0, 2 * precision * recall / denom.clamp(min=1e-300), torch.zeros_like(tp))
    return {c: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                "support": int(actual[i])} for i, c in enumerate(classes)}


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
        bins.append({"bin": i, "lower": i / n_bins, "upper": (i + 1) / n_bins,
                     "count": c, "confidence": mean_conf, "accuracy": acc})
    return ece, bins
