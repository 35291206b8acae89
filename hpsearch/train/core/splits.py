"""The train/validation split every family makes: fixed rows, and a split's tensors.

The split is seeded with :data:`SPLIT_SEED`, not with the trial's seed, so every trial of a
study is scored on the same validation rows and the scores compare.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Self

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from hpsearch.errors import TaskError

__all__ = ["SPLIT_SEED", "TensorSplit", "split_rows"]

#: The seed of every train/validation split.
SPLIT_SEED = 0


def split_rows(
    labels: np.ndarray, val_fraction: float, *, stratify: bool, what: str
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices ``(train, val)`` of a split of ``len(labels)`` rows, in the shuffled order
    scikit-learn's ``train_test_split`` gives; stratified by ``labels`` when ``stratify``.

    Raises ``ValueError`` starting with ``what`` (the dataset and the fraction, as the caller
    names them) when the rows cannot be split that way.
    """
    try:
        train, val = train_test_split(
            np.arange(len(labels)),
            test_size=val_fraction,
            stratify=labels if stratify else None,
            random_state=SPLIT_SEED,
        )
    except ValueError as e:
        raise TaskError(f"{what}: {e}") from e
    return train, val


@dataclass(frozen=True)
class TensorSplit:
    """Inputs ``x`` and class indices ``y`` (int64) of one split, as tensors."""

    x: torch.Tensor
    y: torch.Tensor

    def to(self, device: torch.device) -> Self:
        """This split on ``device``: itself off CUDA, else a copy moved through pinned memory."""
        if device.type != "cuda":
            return self
        # The whole split moves once; pinning makes that copy asynchronous.
        return dataclasses.replace(
            self,
            x=self.x.pin_memory().to(device, non_blocking=True),
            y=self.y.pin_memory().to(device, non_blocking=True),
        )
