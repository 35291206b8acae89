"""The final model's predictions on the validation split, as a :class:`ValPredictions`.

A family knows its validation outputs, its class names and how to show an example (an image,
a table row, a file name); :func:`predictor` turns those into the one-argument callable that
:func:`hpsearch.train.core.loop.run_epochs` calls with the final weights after the last epoch.
Everything else (eval mode, no gradients, softmax, per-example losses, the worst examples) is
written here once for every family.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hpsearch.analysis.predictions import ValPredictions

__all__ = ["Predict", "PredictionsCallback", "WorstInputs", "predictor"]

#: What ``train(..., predictions=...)`` takes: called once with the final model's predictions.
PredictionsCallback = Callable[[ValPredictions], None]
#: ``worst_inputs(indices)``: the :class:`ValPredictions` fields that show those validation
#: examples (``worst_images``, ``worst_rows`` and ``feature_names``, or ``worst_files``).
WorstInputs = Callable[[np.ndarray], dict[str, Any]]


#: What :func:`hpsearch.train.core.loop.run_epochs` calls with the final weights:
#: ``predict(model, val_y, outputs, chunk)``, the same validation rows its metric scored.
Predict = Callable[[nn.Module, torch.Tensor, Callable[[nn.Module, slice], torch.Tensor], int], None]


def predictor(
    callback: PredictionsCallback | None,
    *,
    family: str,
    worst_inputs: WorstInputs,
    class_names: Sequence[str] | None = None,
    target_scale: tuple[float, float] | None = None,
    meta: dict[str, Any] | None = None,
) -> Predict | None:
    """The callable that scores a model on the validation split and hands ``callback`` a
    :class:`ValPredictions`; ``None`` when ``callback`` is None (nothing to compute).

    The epoch loop calls it with the validation labels and ``outputs(model, rows)``, the
    model's outputs of a slice of validation rows (the family's ``val_logits``, so predictions
    are computed exactly as the reported metric is), ``chunk`` rows per forward.
    Classification by default: ``class_names`` are the dataset's (``"0"``, ``"1"``, ... when
    None). With ``target_scale=(mean, std)`` it is regression: the labels and the outputs are
    the standardized target, reported back in its own units. ``meta`` goes into the
    predictions with ``n_val`` added.
    """
    if callback is None:
        return None

    def predict(
        model: nn.Module,
        val_y: torch.Tensor,
        outputs: Callable[[nn.Module, slice], torch.Tensor],
        chunk: int,
    ) -> None:
        out = _outputs(model, len(val_y), outputs, chunk=chunk)
        y = val_y.cpu()
        if target_scale is None:
            predictions = _classification(out, y, class_names)
        else:
            predictions = _regression(out, y, *target_scale)
        worst = ValPredictions.worst_indices(predictions["loss"])
        callback(
            ValPredictions(
                family=family,
                worst=worst,
                meta={**(meta or {}), "n_val": len(y)},
                **predictions,
                **worst_inputs(worst),
            )
        )

    return predict


@torch.no_grad()
def _outputs(
    model: nn.Module, n: int, outputs: Callable[[nn.Module, slice], torch.Tensor], *, chunk: int
) -> torch.Tensor:
    model.eval()
    parts = [outputs(model, slice(s, s + chunk)).float().cpu() for s in range(0, n, chunk)]
    return torch.cat(parts)


def _classification(
    logits: torch.Tensor, y: torch.Tensor, class_names: Sequence[str] | None
) -> dict[str, Any]:
    n_classes = logits.shape[1]
    names = list(class_names) if class_names else [str(c) for c in range(n_classes)]
    if len(names) != n_classes:
        raise ValueError(f"{len(names)} class names for a model of {n_classes} outputs: {names}")
    return {
        "kind": "classification",
        "y_true": y.numpy().astype(np.int64),
        "y_pred": logits.argmax(dim=1).numpy().astype(np.int64),
        "probs": F.softmax(logits, dim=1).numpy().astype(np.float32),
        # Plain CE whatever the training loss, like the reported val_loss.
        "loss": F.cross_entropy(logits, y, reduction="none").numpy().astype(np.float32),
        "class_names": names,
    }


def _regression(out: torch.Tensor, y: torch.Tensor, mean: float, std: float) -> dict[str, Any]:
    y_true = y.double().numpy() * std + mean
    y_pred = out.reshape(-1).double().numpy() * std + mean
    return {
        "kind": "regression",
        "y_true": y_true,
        "y_pred": y_pred,
        "loss": (y_pred - y_true) ** 2,
    }
