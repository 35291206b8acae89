"""What a study trains: the task part of a study spec, and the task families hpsearch knows.

This module is torch-free on purpose: the REST service validates tasks without importing the
trainer. The trainer (:mod:`hpsearch.train`) dispatches on :attr:`TaskSpec.family`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "TaskSpec",
    "TASK_FAMILIES",
    "USER_OBJECTIVE_FAMILY",
    "BUNDLED_DATASETS",
    "METRICS",
    "COST_METRICS",
    "FAMILY_METRICS",
    "default_metric",
]

#: Task families and whether this version of the trainer can train them.
TASK_FAMILIES: dict[str, bool] = {
    "tabular_classification": True,
    "tabular_regression": True,
    "image_classification": True,
    "audio_classification": True,
}

#: The family of a study that a worker's own function trains (``hpsearch worker --objective``):
#: its space may name any parameters (bounded by the space's own caps), and the built-in trainer
#: never runs it.
USER_OBJECTIVE_FAMILY = "custom"

#: Datasets that ship with a package and need no download.
BUNDLED_DATASETS: tuple[str, ...] = ("digits", "diabetes", "tones")

#: Metrics the trainer reports after every epoch, with the direction that improves each.
METRICS: dict[str, Literal["maximize", "minimize"]] = {
    "val_accuracy": "maximize",
    "val_loss": "minimize",
    "val_rmse": "minimize",
    "val_mae": "minimize",
    "params": "minimize",
    "size_mb": "minimize",
    "latency_ms": "minimize",
    "peak_mem_mb": "minimize",
}

#: What a model costs, which every trained family reports beside its quality metrics
#: (:mod:`hpsearch.train.core.costs`): ``params``, every parameter, trainable and frozen;
#: ``size_mb``, its state dict saved as safetensors, in MB (1e6 bytes); ``latency_ms``, the
#: median time of one validation sample through the model in eval mode on the worker's device;
#: ``peak_mem_mb``, the peak memory of training so far (CUDA: max allocated; CPU: the process's
#: peak RSS). The first three are measured once, before the first epoch.
COST_METRICS: tuple[str, ...] = ("params", "size_mb", "latency_ms", "peak_mem_mb")

#: The metrics each task family reports (the first is a study's default). Regression metrics
#: are in units of the standardized target (training mean 0, standard deviation 1).
FAMILY_METRICS: dict[str, tuple[str, ...]] = {
    "tabular_classification": ("val_accuracy", "val_loss", *COST_METRICS),
    "tabular_regression": ("val_rmse", "val_mae", "val_loss", *COST_METRICS),
    "image_classification": ("val_accuracy", "val_loss", *COST_METRICS),
    "audio_classification": ("val_accuracy", "val_loss", *COST_METRICS),
}


def default_metric(family: str | None) -> str:
    """The metric a study of ``family`` optimizes unless it names one (classification when
    ``family`` is None or unknown)."""
    return FAMILY_METRICS.get(family or "tabular_classification", ("val_accuracy",))[0]


class TaskSpec(BaseModel):
    """What to train: the dataset, the epoch budget of one trial, and the task family."""

    model_config = ConfigDict(extra="forbid")

    family: str | None = Field(
        default=None, description="Task family; the search space's `task` when absent."
    )
    dataset: str = Field(
        default="digits",
        max_length=4096,
        description=(
            "A bundled dataset name (digits, diabetes, tones) or a path under the workers' "
            "data roots (`hpsearch worker --data-root`): a CSV, a Parquet file (with pandas "
            "and pyarrow installed) or a folder. No '..' and no system paths."
        ),
    )
    target: str | None = Field(
        default=None,
        max_length=1024,
        description=(
            "The label column of a CSV or Parquet table; when absent, the column named "
            "`target`, else the last column."
        ),
    )
    epochs: int = Field(default=20, ge=1, le=100_000, description="Epochs per trial.")
    val_fraction: float = Field(
        default=0.25, gt=0.0, lt=1.0, description="Share of the data held out for validation."
    )
    pretrained_weights: str | None = Field(
        default=None,
        description=(
            "Pretrained backbone weights for transfer learning: a file or folder under the "
            "workers' data roots, or 'hub' to load timm's published weights (needs network)."
        ),
    )
