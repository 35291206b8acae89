"""The order of training rows in an epoch: shuffled, or class-balanced, cut into batches."""

from __future__ import annotations

import torch
from torch.utils.data import WeightedRandomSampler

__all__ = ["batches_per_epoch", "class_balance_weights", "epoch_batches"]


def batches_per_epoch(n_rows: int, batch_size: int) -> int:
    """How many batches :func:`epoch_batches` yields for ``n_rows`` rows (the same every epoch)."""
    n = -(-n_rows // batch_size)
    # A trailing batch of one row is dropped: BatchNorm cannot normalize a single row.
    if n > 1 and n_rows % batch_size == 1:
        n -= 1
    return n


def class_balance_weights(y: torch.Tensor) -> torch.Tensor:
    """Per-row sampling weights that make every class equally likely (1 / class count)."""
    counts = torch.bincount(y)
    return 1.0 / counts[y].double()


def epoch_batches(
    n_rows: int,
    batch_size: int,
    *,
    generator: torch.Generator,
    weights: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """Row indices (CPU int64) for each batch of one epoch.

    Without ``weights`` the rows are a random permutation; with them, ``n_rows`` rows are drawn
    with replacement through :class:`~torch.utils.data.WeightedRandomSampler` (the balanced
    sampler). Both consume ``generator`` only, so a seeded generator gives the same batches.
    """
    if weights is None:
        order = torch.randperm(n_rows, generator=generator)
    else:
        # torch types `weights` as Sequence[float]; its docs and code take a tensor too.
        sampler = WeightedRandomSampler(
            weights,  # type: ignore[arg-type]
            n_rows,
            replacement=True,
            generator=generator,
        )
        order = torch.tensor(list(sampler), dtype=torch.int64)
    return list(order.split(batch_size))[: batches_per_epoch(n_rows, batch_size)]
