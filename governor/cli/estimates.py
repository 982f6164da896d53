"""The profiler's self-estimate in words: per model, the mean error (%) expected on unmeasured points.

The estimate (governor.core.perf.sampling) is the larger of a model's cross-validated MAPE and its mean
relative spread over all candidates. At 100 % or more it is no longer an error figure: a model that
always answered 0 would score 100 %. That happens for two reasons, each said in words instead:

- too few points to pin any of the model's candidates: the fit then reports at least 100 % so the
  sampler never stops on it, and its leave-one-out error, fitted to one or two points, can run to
  millions of %; or held-out points missed by 100 % or more;
- the models' spread: at some unmeasured points they disagree by more than the value they predict.
"""

from __future__ import annotations

from collections.abc import Mapping

from governor.core.perf.model import TargetModel

__all__ = ["MEANINGFUL_BELOW_PCT", "describe_estimates"]

MEANINGFUL_BELOW_PCT = 100.0  # at or above it the figure says nothing about the error


def describe_estimates(estimates: Mapping[str, float], models: Mapping[tuple[str, str], TargetModel],
                       measured: int) -> str:
    """``estimates``: "<target>@<mapping>" -> estimated MAPE, %; ``models``: the fitted models by (target, mapping)."""
    figures, unpinned, spread = [], [], []
    for key, pct in estimates.items():
        target, _, mapping = key.partition("@")
        model = models.get((target, mapping))
        if pct < MEANINGFUL_BELOW_PCT:
            figures.append(f"{key} {pct:.2f} %")
        elif model is None or model.cv_mape >= 1.0:
            unpinned.append(key)
        else:
            spread.append(key)
    parts = figures
    if unpinned:
        parts.append(f"not enough points to estimate: {', '.join(unpinned)} ({measured} measured; "
                     "its models need more to be pinned down)")
    if spread:
        parts.append(f"no estimate yet for {', '.join(spread)} (at some unmeasured points its models disagree "
                     "by more than the value they predict; measure more)")
    return "; ".join(parts) or "none"
