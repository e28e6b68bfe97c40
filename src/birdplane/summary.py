"""Mean and spread over seeds, and the rule that picks the small net from the capacity sweep."""

from __future__ import annotations

import math
from typing import Any, Sequence


def spread(values: Sequence[float]) -> dict[str, Any]:
    """Mean, sample standard deviation (n - 1; 0 for one value) and the values themselves."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {"mean": mean, "std": std, "n": n, "values": list(values)}


def spread_known(values: Sequence[float | None]) -> dict[str, Any] | None:
    """spread() of the values that are known: a seed without the quantity (None, e.g. no
    misclassified image to measure a gradient on) is left out; None if no seed has it."""
    known = [v for v in values if v is not None]
    return spread(known) if known else None


def smallest_within_one_std(configs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The sweep's pick for `small`: the configuration with the fewest parameters whose mean
    validation accuracy is within one standard deviation (over seeds) of the best mean.

    configs: name -> {"n_parameters": int, "val_accuracy": {"mean", "std"}, ...}. The one-std
    band is the best configuration's own spread: a smaller net inside it cannot be told apart
    from the best with this many seeds.
    """
    if not configs:
        raise ValueError("no configurations to choose from")
    best_name = max(
        configs, key=lambda c: (configs[c]["val_accuracy"]["mean"], -configs[c]["n_parameters"])
    )
    best = configs[best_name]["val_accuracy"]
    floor = best["mean"] - best["std"]
    within = [c for c in configs if configs[c]["val_accuracy"]["mean"] >= floor]
    pick = min(within, key=lambda c: (configs[c]["n_parameters"], c))
    return {
        "pick": pick,
        "best": best_name,
        "best_val_mean": best["mean"],
        "best_val_std": best["std"],
        "threshold": floor,
        "within_one_std": sorted(within, key=lambda c: configs[c]["n_parameters"]),
        "rule": "fewest parameters with mean validation accuracy >= best mean - best std (over seeds)",
    }
