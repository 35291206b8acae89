"""Optimizer and learning-rate schedule from the ``optim.*`` and ``sched.*`` knobs.

The optimizer comes from timm's registry (``create_optimizer_v2``); cosine and step schedules
from ``create_scheduler_v2``; constant is torch's identity ``ConstantLR``; one-cycle is torch's
``OneCycleLR``; flat-then-cosine is torch's ``ConstantLR`` then ``CosineAnnealingLR``. Every
schedule is stepped after each optimizer update and spans the whole run
(``epochs * updates_per_epoch`` updates), so even a short trial sees the full shape of its
schedule.
"""

from __future__ import annotations

from typing import Any

import torch
from timm.optim import create_optimizer_v2, get_optimizer_info, list_optimizers
from timm.scheduler import create_scheduler_v2
from timm.scheduler.scheduler import Scheduler as TimmScheduler
from torch import nn
from torch.optim.lr_scheduler import (
    ConstantLR,
    CosineAnnealingLR,
    LRScheduler,
    OneCycleLR,
    SequentialLR,
)

from hpsearch.train.core.config import SCHEDULES, OptimConfig

__all__ = [
    "FLAT_FRACTION",
    "LrSchedule",
    "build_optimizer",
    "build_schedule",
    "timm_optimizer_name",
]

#: Our names that differ from timm's. Plain SGD with heavy-ball momentum is what the
#: checklist's "SGD" + "Momentum" rows mean; timm's own "sgd" is Nesterov SGD, still reachable
#: as "nesterov".
_ALIASES = {"sgd": "momentum"}

#: Share of the run that flatcos holds the learning rate flat before annealing it (fastai's
#: ``fit_flat_cos`` default).
FLAT_FRACTION = 0.75


def timm_optimizer_name(name: str) -> str:
    """The timm registry name for ``optim.name``; ``ValueError`` when timm has no such optimizer."""
    timm_name = _ALIASES.get(name, name)
    if timm_name not in list_optimizers():
        raise ValueError(
            f"`optim.name` {name!r} is not known: use sgd, adam, adamw or a name from "
            "timm.optim.list_optimizers()"
        )
    if get_optimizer_info(timm_name).second_order:
        raise ValueError(f"`optim.name` {name!r} is second-order; the trainer does not support it")
    return timm_name


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """The optimizer ``optim.name`` names, with lr, weight decay, momentum, betas and eps.

    Weight decay skips biases and norm parameters (timm's default). timm drops momentum, betas
    and eps for optimizers that take none of them.
    """
    timm_name = timm_optimizer_name(cfg.name)
    info = get_optimizer_info(timm_name)
    kwargs: dict[str, Any] = {
        "lr": cfg.lr,
        "weight_decay": cfg.weight_decay,
        "momentum": cfg.momentum,
        "eps": cfg.eps,
        # Optimizers with three betas (Adan) keep their own defaults: two knobs cannot set them.
        "betas": (cfg.beta1, cfg.beta2) if info.num_betas == 2 else None,
    }
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    try:
        return create_optimizer_v2(model, opt=timm_name, **kwargs)
    except ImportError as e:
        raise ValueError(
            f"`optim.name` {cfg.name!r} needs a package that is not installed: {e}"
        ) from e


class LrSchedule:
    """Sets the learning rate after every optimizer update, whichever library built the schedule."""

    def __init__(self, scheduler: TimmScheduler | LRScheduler | None) -> None:
        if scheduler is None:  # timm returns None for a name its version does not know
            raise ValueError("the installed timm does not provide this schedule; upgrade timm")
        self.scheduler = scheduler

    def step(self, num_updates: int) -> None:
        """Call after optimizer update number ``num_updates`` (counting from 1)."""
        if isinstance(self.scheduler, TimmScheduler):
            self.scheduler.step_update(num_updates=num_updates)
        else:
            self.scheduler.step()


def build_schedule(
    optimizer: torch.optim.Optimizer, name: str, *, epochs: int, updates_per_epoch: int
) -> LrSchedule:
    """The schedule ``sched.name`` names over ``epochs * updates_per_epoch`` updates.

    - ``constant``: the lr stays at ``optim.lr``.
    - ``cosine``: cosine decay from ``optim.lr`` to 0.
    - ``step``: the lr drops tenfold after each third of the run.
    - ``onecycle``: warm up to ``optim.lr`` over 30% of the run, then anneal (cosine). Momentum
      is not cycled, so ``optim.momentum`` / ``optim.beta1`` keep meaning what they say.
    - ``flatcos``: ``optim.lr`` for :data:`FLAT_FRACTION` of the run, then cosine to 0.
    """
    total = epochs * updates_per_epoch
    timm_kwargs: dict[str, Any] = {
        "num_epochs": epochs,
        "step_on_epochs": False,
        "updates_per_epoch": updates_per_epoch,
    }
    if name == "constant":
        # torch's identity schedule: timm's "constant" only exists from timm 1.0.30 on.
        return LrSchedule(ConstantLR(optimizer, factor=1.0, total_iters=0))
    if name == "cosine":
        return LrSchedule(create_scheduler_v2(optimizer, "cosine", min_lr=0.0, **timm_kwargs)[0])
    if name == "step":
        # decay_epochs may be fractional: timm converts it to updates, so short runs decay too.
        scheduler, _ = create_scheduler_v2(
            optimizer, "step", decay_epochs=epochs / 3, decay_rate=0.1, **timm_kwargs
        )
        return LrSchedule(scheduler)
    max_lrs = [group["lr"] for group in optimizer.param_groups]
    if name == "onecycle":
        return LrSchedule(
            OneCycleLR(optimizer, max_lr=max_lrs, total_steps=total, cycle_momentum=False)
        )
    if name == "flatcos":
        flat = max(1, round(total * FLAT_FRACTION))
        return LrSchedule(
            SequentialLR(
                optimizer,
                [
                    ConstantLR(optimizer, factor=1.0, total_iters=flat),
                    CosineAnnealingLR(optimizer, T_max=max(1, total - flat), eta_min=0.0),
                ],
                milestones=[flat],
            )
        )
    raise ValueError(f"`sched.name` must be one of {list(SCHEDULES)}, got {name!r}")
