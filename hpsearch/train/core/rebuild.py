"""A trained model taken home: rebuild its architecture from the config, score it again.

A worker keeps the final weights of the best trials (``train(..., weights=...)``);
``hpsearch export`` writes them beside the trial's config and a ``load.py`` that calls
:func:`rebuild_model`, loads the weights, and calls :func:`validate`. Both go through the
family's own trainer module (its ``validation`` function): the same model builder, the same
data split and preprocessing, the same validation outputs and the same metric code
(:func:`hpsearch.train.core.loop.evaluate`) as the epoch loop, so the metric comes out as the
trial recorded it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from hpsearch.families import TaskSpec

__all__ = ["VALIDATIONS", "Validation", "rebuild_model", "validate", "validation"]

#: The ``validation(config, task, *, device)`` of each task family, as ``module:function``.
VALIDATIONS: dict[str, str] = {
    "tabular_classification": "hpsearch.train.tabular.trainer:validation",
    "tabular_regression": "hpsearch.train.tabular.trainer:validation_regression",
    "audio_classification": "hpsearch.train.audio.trainer:validation",
    "image_classification": "hpsearch.train.image.trainer:validation",
}


@dataclass(frozen=True)
class Validation:
    """What a family's trainer scores a model on, as its epoch loop does.

    ``model`` is a new (untrained) model of the config on the device; ``outputs(model, rows)``
    gives any such model's outputs of a slice of the validation rows, scored ``chunk`` rows at
    a time against ``val_y`` by ``score`` (:func:`hpsearch.train.core.loop.evaluate`, or
    ``evaluate_regression``).
    """

    model: nn.Module
    val_y: torch.Tensor
    outputs: Callable[[nn.Module, slice], torch.Tensor]
    chunk: int
    score: Callable[..., dict[str, float]]

    def metrics(self, model: nn.Module) -> dict[str, float]:
        """Every validation metric of ``model`` (moved to the device of ``val_y`` first)."""
        return self.score(model.to(self.val_y.device), self.val_y, self.outputs, chunk=self.chunk)


def validation(
    config: Mapping[str, Any], task: TaskSpec, *, device: str | None = None
) -> Validation:
    """The :class:`Validation` of ``task`` for ``config`` (the trial's config; knobs missing
    from it take their defaults, as in training). Loads the task's data.

    ``device=None`` picks CUDA when available, as training does. Raises ``ValueError`` for a
    family without a trainer, a bad config or dataset, as :func:`hpsearch.train.train` does.
    """
    family = task.family or "tabular_classification"
    ref = VALIDATIONS.get(family)
    if ref is None:
        raise ValueError(
            f"no trainer for task family {family!r}, so no model to rebuild; trained: "
            f"{', '.join(VALIDATIONS)}"
        )
    module_name, _, name = ref.partition(":")
    make: Callable[..., Validation] = getattr(importlib.import_module(module_name), name)
    return make(config, task, device=device)


def rebuild_model(
    config: Mapping[str, Any], task: TaskSpec, *, device: str | None = "cpu"
) -> nn.Module:
    """A new model of the architecture ``config`` gives for ``task``, on ``device``, ready for
    ``load_state_dict`` of a trial's kept weights.

    The family's own builder: the tabular MLP (:func:`hpsearch.train.tabular.model.build_model`),
    ``timm.create_model(model.name, num_classes=..., drop_rate=..., ...)`` for images (never
    downloading or loading pretrained weights: the kept weights replace them), the audio CNN
    (:func:`hpsearch.train.audio.model.build_audio_model`). Input and output sizes come from
    the task's data (the number of features or classes, the spectrogram's shape), which is
    loaded for it. Raises as :func:`validation` does.
    """
    return validation(config, task, device=device).model


def validate(
    model: nn.Module,
    config: Mapping[str, Any],
    task: TaskSpec,
    *,
    device: str | None = None,
) -> dict[str, float]:
    """Every validation metric the trainer reports for ``task`` (``val_accuracy`` and
    ``val_loss``; or ``val_rmse``, ``val_mae``, ``val_loss``) of ``model``, computed as the
    epoch loop computes them after an epoch: the same split, the same preprocessing, the same
    code. The model is moved to ``device`` (None: CUDA when available) and left in eval mode.

    On the device a trial trained on, the kept weights of its final epoch give the values the
    trial recorded.
    """
    return validation(config, task, device=device).metrics(model)
