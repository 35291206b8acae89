"""Input normalization of numeric columns: fitted on the training split, applied to both."""

from __future__ import annotations

import numpy as np
from sklearn.preprocessing import QuantileTransformer, StandardScaler

__all__ = ["normalize_numeric"]


def _scaler(name: str, n_train: int) -> StandardScaler | QuantileTransformer:
    if name == "standard":
        return StandardScaler()
    # More quantiles than rows only adds duplicated knots; random_state fixes the subsample.
    n_quantiles = max(2, min(1000, n_train))
    if name in ("quantile", "rankgauss"):
        distribution = "uniform" if name == "quantile" else "normal"
        return QuantileTransformer(
            n_quantiles=n_quantiles, output_distribution=distribution, random_state=0
        )
    raise ValueError(f"`input.normalization` must be standard, quantile or rankgauss, got {name!r}")


def normalize_numeric(
    x_train: np.ndarray, x_val: np.ndarray, name: str
) -> tuple[np.ndarray, np.ndarray]:
    """Scale numeric features with ``standard`` (StandardScaler), ``quantile`` (uniform
    QuantileTransformer) or ``rankgauss`` (QuantileTransformer to a normal distribution).

    The scaler sees only the training rows, so validation metrics are not leaked into it.
    Returns float32 arrays; a table without numeric columns passes through unchanged.
    """
    if x_train.shape[1] == 0:
        return x_train.astype(np.float32), x_val.astype(np.float32)
    scaler = _scaler(name, len(x_train))
    out_train = scaler.fit_transform(x_train)
    out_val = scaler.transform(x_val)
    return out_train.astype(np.float32), out_val.astype(np.float32)
