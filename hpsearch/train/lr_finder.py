"""The learning-rate range test (Leslie Smith 2015; fastai's ``lr_find``) for tabular spaces.

Train the space's default config for a few hundred batches at most while the learning rate grows
exponentially every batch from ``min_lr`` to ``max_lr``; record the training loss and its
smoothed curve; stop once the smoothed loss explodes. Good learning rates lie where the loss
falls fastest, below the one where it is lowest.

:func:`lr_range_test` runs the test and returns an :class:`LrRangeTest` (the curve and the
suggestions); :func:`suggest_lr_bounds` gives only the suggested ``(low, high)`` for a study's
``optim.lr``; :func:`save_plot` draws the curve (needs matplotlib).

The suggested range, meant as search bounds for ``optim.lr`` (not a single pick), follows one
rule, written here once:

- ``high`` = the LR at the minimum of the smoothed loss: past it the loss rises, so no larger LR
  is worth searching (fastai's single pick "minimum / 10" lies inside the range);
- ``low`` = the smaller of the steepest-descent LR (where the smoothed loss falls fastest per
  decade of LR, before its minimum) and ``high / 10``, divided by 10;

both kept inside ``[min_lr, max_lr]``. The range spans at least two decades and contains both of
fastai's single picks (steepest descent, and minimum / 10).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from hpsearch.errors import UsageError
from hpsearch.spaces import SearchSpace, default_config
from hpsearch.families import TaskSpec
from hpsearch.train.core.config import parse_config
from hpsearch.train.core.losses import build_loss
from hpsearch.train.core.optim import build_optimizer
from hpsearch.train.core.sampling import epoch_batches
from hpsearch.train.tabular.trainer import TabularTensors, prepare, tabular_loss

__all__ = [
    "EXPLODE_FACTOR",
    "SMOOTHING",
    "LrRangeTest",
    "format_curve",
    "lr_range_test",
    "narrow_lr",
    "save_plot",
    "suggest_lr_bounds",
]

#: Weight of the past in the exponential moving average of the loss. fastai's 0.98 averages
#: over ~50 steps, which at 100 steps for 8 decades of LR lags the raw loss by decades.
SMOOTHING = 0.9
#: The test stops once the smoothed loss exceeds this many times its minimum so far.
EXPLODE_FACTOR = 4.0
#: Families the range test can train.
_FAMILIES = ("tabular_classification",)


@dataclass(frozen=True)
class LrRangeTest:
    """The curve of an LR range test and the learning rates it suggests."""

    lrs: tuple[float, ...]  # the LR of each recorded step, increasing
    losses: tuple[float, ...]  # the training loss of each step
    smoothed: tuple[float, ...]  # `losses` smoothed without lag (see _zero_phase)
    min_lr: float
    max_lr: float
    steps: int  # steps asked for; len(lrs) is fewer when the test stopped early
    stop_reason: str | None  # why it stopped before `steps`, or None

    @property
    def stopped_early(self) -> bool:
        """Whether the loss exploded (or stopped being finite) before the last step."""
        return self.stop_reason is not None

    @property
    def min_loss_index(self) -> int:
        """The step where the smoothed loss is lowest."""
        return int(np.argmin(self.smoothed))

    @property
    def min_loss_lr(self) -> float:
        """The LR at which the smoothed loss is lowest."""
        return self.lrs[self.min_loss_index]

    @property
    def steepest_index(self) -> int:
        """The step where the smoothed loss falls fastest per decade of LR, before its minimum.

        Raises :class:`UsageError` when the loss never fell (``min_lr`` is too high).
        """
        end = self.min_loss_index
        if end < 2:
            raise UsageError(
                f"the loss did not fall as the LR grew from {self.min_lr:.2g}: the test started "
                "too high; lower --min-lr"
            )
        slope = np.gradient(np.asarray(self.smoothed[: end + 1]), np.log10(self.lrs[: end + 1]))
        return int(np.argmin(slope))

    @property
    def steepest_lr(self) -> float:
        """The LR at which the smoothed loss falls fastest (see :attr:`steepest_index`)."""
        return self.lrs[self.steepest_index]

    def suggested_range(self) -> tuple[float, float]:
        """``(low, high)`` by the rule in this module's docstring; ``low < high`` always.

        Raises :class:`UsageError` when the loss never fell.
        """
        high = min(self.min_loss_lr, self.max_lr)
        low = max(min(self.steepest_lr, high / 10) / 10, self.min_lr)
        if low >= high:  # cannot happen with the minimum past step 2, kept as a guard
            low = self.min_lr
        return low, high


def lr_range_test(
    space: SearchSpace,
    task: TaskSpec,
    *,
    fixed: Mapping[str, Any] | None = None,
    min_lr: float = 1e-7,
    max_lr: float = 10.0,
    steps: int = 100,
    seed: int | None = 0,
    device: str | None = None,
) -> LrRangeTest:
    """Run the LR range test on the space's default config (with ``fixed`` values).

    Each step is one optimizer update (``train.grad_accum`` batches) on the training split, in
    training mode, at ``lr = min_lr * (max_lr / min_lr) ** (i / (steps - 1))``; ``optim.lr``
    and ``sched.name`` of the config are ignored, every other knob applies (optimizer, its
    momentum or betas, weight decay, batch size, loss, grad clipping, model). The test stops
    when the smoothed loss exceeds :data:`EXPLODE_FACTOR` times its best, or a loss is not
    finite.

    Only ``tabular_classification`` spaces for now: other families raise :class:`UsageError`,
    as do bad bounds. A bad config value raises ``ValueError`` naming the knob.
    """
    family = task.family or space.task
    if family not in _FAMILIES:
        raise UsageError(
            f"the LR range test supports tabular_classification spaces only for now; "
            f"space {space.name!r} is {family}"
        )
    if not (0 < min_lr < max_lr) or not math.isfinite(max_lr):
        raise UsageError(f"need 0 < min_lr < max_lr, got {min_lr=}, {max_lr=}")
    if steps < 5:
        raise UsageError(f"steps must be >= 5 to draw a curve, got {steps=}")
    config = default_config(space, fixed)
    try:
        return _run(
            config, task, min_lr=min_lr, max_lr=max_lr, steps=steps, seed=seed, device=device
        )
    except UsageError:
        raise
    except ValueError as e:  # a knob value, the dataset or the device: the message names it
        raise UsageError(str(e)) from None


def _run(
    config: Mapping[str, Any],
    task: TaskSpec,
    *,
    min_lr: float,
    max_lr: float,
    steps: int,
    seed: int | None,
    device: str | None,
) -> LrRangeTest:
    cfg = parse_config(config)
    run = prepare(cfg, task, seed=seed, device=device)
    model, generator = run.model, run.generator
    model.train()
    rows = TabularTensors.of(run.data.train, run.device)
    optimizer = build_optimizer(model, cfg.optim)
    loss_fn = build_loss(cfg.loss, run.data.n_classes)
    loop = cfg.train

    def batches():  # endless: epoch after epoch of shuffled batches
        while True:
            yield from epoch_batches(len(rows.y), loop.batch_size, generator=generator)

    stream = batches()
    ratio = max_lr / min_lr
    lrs: list[float] = []
    losses: list[float] = []
    running: list[float] = []  # the online moving average that decides when to stop
    average = 0.0
    stop_reason = None
    for i in range(steps):
        lr = min_lr * ratio ** (i / (steps - 1))
        for group in optimizer.param_groups:
            group["lr"] = lr
        step_loss = 0.0
        for _ in range(loop.grad_accum):
            loss = tabular_loss(
                model, loss_fn, rows, next(stream), activation_reg=cfg.loss.activation_reg
            )
            (loss / loop.grad_accum).backward()
            step_loss += loss.item() / loop.grad_accum
        if not math.isfinite(step_loss):
            stop_reason = f"the loss became {step_loss} at lr {lr:.2e}"
            break
        if loop.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), loop.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        # Debiased like Adam's moments, so the first steps are not pulled toward 0.
        average = SMOOTHING * average + (1 - SMOOTHING) * step_loss
        lrs.append(lr)
        losses.append(step_loss)
        running.append(average / (1 - SMOOTHING ** (i + 1)))
        if running[-1] > EXPLODE_FACTOR * min(running):
            stop_reason = (
                f"the smoothed loss exploded (> {EXPLODE_FACTOR:g}x its best) at lr {lr:.2e}"
            )
            break
    if len(lrs) < 2:
        raise UsageError(
            f"the loss was not finite from the first step (lr {min_lr:.2g}); lower --min-lr"
        )
    if stop_reason is not None and len(lrs) == steps:
        stop_reason = None  # exploding on the very last step is no early stop
    return LrRangeTest(
        lrs=tuple(lrs),
        losses=tuple(losses),
        smoothed=tuple(_zero_phase(losses)),
        min_lr=min_lr,
        max_lr=max_lr,
        steps=steps,
        stop_reason=stop_reason,
    )


def _ema(values: list[float]) -> list[float]:
    # Debiased like Adam's moments, so the first values are not pulled toward 0.
    out, average = [], 0.0
    for i, v in enumerate(values):
        average = SMOOTHING * average + (1 - SMOOTHING) * v
        out.append(average / (1 - SMOOTHING ** (i + 1)))
    return out


def _zero_phase(values: list[float]) -> list[float]:
    # The online average trails the loss by ~1/(1-SMOOTHING) steps, which would move the
    # minimum and the steepest descent to higher LRs; averaging forward then backward cancels
    # that lag (as scipy's filtfilt does).
    return _ema(_ema(values)[::-1])[::-1]


def suggest_lr_bounds(
    space: SearchSpace,
    task: TaskSpec,
    *,
    fixed: Mapping[str, Any] | None = None,
    min_lr: float = 1e-7,
    max_lr: float = 10.0,
    steps: int = 100,
    seed: int | None = 0,
    device: str | None = None,
) -> tuple[float, float]:
    """Bounds ``(low, high)`` for a study's ``optim.lr``, from an LR range test on ``task``.

    Runs :func:`lr_range_test` (same arguments) and applies the rule in this module's
    docstring. A study can narrow its space with them before searching::

        low, high = suggest_lr_bounds(space, TaskSpec(dataset="digits"))
        d = space.model_dump()
        d["params"]["optim.lr"].update(low=low, high=high, default=(low * high) ** 0.5)
        space = SearchSpace.model_validate(d)

    Raises :class:`UsageError` for a non-tabular space or when the loss never fell.
    """
    test = lr_range_test(
        space,
        task,
        fixed=fixed,
        min_lr=min_lr,
        max_lr=max_lr,
        steps=steps,
        seed=seed,
        device=device,
    )
    return test.suggested_range()


def narrow_lr(space: SearchSpace, low: float, high: float) -> SearchSpace:
    """``space`` with ``optim.lr`` searched on a log scale between ``low`` and ``high`` only.

    The default moves to the geometric middle when the old one falls outside. Raises
    :class:`UsageError` when the space has no ``optim.lr``.
    """
    if "optim.lr" not in space.params:
        raise UsageError(f"space {space.name!r} has no optim.lr to narrow")
    data = space.model_dump(mode="json", exclude_none=True)
    lr = data["params"]["optim.lr"]
    default = lr["default"] if low <= lr["default"] <= high else (low * high) ** 0.5
    lr.update(low=low, high=high, log=True, default=default)
    lr.pop("step", None)
    data["description"] = (
        f"{space.description} optim.lr narrowed by an LR range test to {low:.2e}..{high:.2e}."
    ).strip()
    return SearchSpace.model_validate(data)


def format_curve(test: LrRangeTest, *, rows: int = 20) -> list[str]:
    """A readable subset of the curve: about ``rows`` steps evenly spread, plus the steepest
    descent and the minimum (marked), as aligned text lines under a header."""
    n = len(test.lrs)
    picked = set(np.linspace(0, n - 1, min(rows, n)).round().astype(int).tolist())
    marks = {test.min_loss_index: "minimum"}
    try:
        marks.setdefault(test.steepest_index, "steepest")
    except UsageError:
        pass  # the loss never fell: nothing to mark
    picked |= set(marks)
    lines = [f"{'lr':>9}  {'loss':>8}  {'smoothed':>8}"]
    for i in sorted(picked):
        note = f"  <- {marks[i]}" if i in marks else ""
        lines.append(f"{test.lrs[i]:>9.2e}  {test.losses[i]:>8.4f}  {test.smoothed[i]:>8.4f}{note}")
    return lines


def save_plot(test: LrRangeTest, path: str | os.PathLike[str], *, title: str = "") -> None:
    """Write the loss-vs-LR curve (log LR axis) with the suggested range shaded, as an image.

    Raises :class:`UsageError` when matplotlib is not installed (``pip install matplotlib``).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError(
            "--plot needs matplotlib, which is not installed: pip install matplotlib"
        ) from None
    low, high = test.suggested_range()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    try:
        ax.plot(test.lrs, test.losses, color="0.75", linewidth=1, label="loss")
        ax.plot(test.lrs, test.smoothed, color="C0", linewidth=2, label="smoothed loss")
        ax.axvspan(low, high, color="C2", alpha=0.15, label=f"suggested {low:.1e}..{high:.1e}")
        ax.axvline(test.steepest_lr, color="C1", linestyle="--", label="steepest descent")
        ax.axvline(test.min_loss_lr, color="C3", linestyle=":", label="minimum loss")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss")
        # The exploded tail would flatten the interesting part: cap the y axis.
        top = max(test.smoothed[0], min(test.smoothed) * EXPLODE_FACTOR)
        ax.set_ylim(min(min(test.losses), min(test.smoothed)) * 0.95, top * 1.05)
        ax.set_title(title or "LR range test")
        ax.legend()
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
