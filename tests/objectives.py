"""Training functions for worker tests, loaded with ``--objective objectives:NAME``."""

from __future__ import annotations

import os
import time


def quadratic(config: dict, report) -> float:
    """Cheap and deterministic: best at lr=1e-2, width=128; reports three steps."""
    import math

    value = -abs(math.log10(config["optim.lr"]) + 2) - abs(math.log2(config["model.width"]) - 7) / 4
    for step in range(1, 4):
        report(value - 1.0 / step, step)
    return value


def steady(config: dict, report) -> float:
    """`quadratic` after 0.6 s, so that several workers overlap."""
    time.sleep(0.6)
    return quadratic(config, report)


def slow(config: dict, report) -> float:
    """One step every 0.2 s for up to 100 steps, so a test can act on a running trial."""
    for step in range(1, 101):
        time.sleep(0.2)
        report(float(step), step)
    return 100.0


def failing(config: dict, report) -> float:
    """Fails on wide layers: a config-level failure the worker must survive."""
    if config["model.width"] > 64:
        raise RuntimeError(f"width {config['model.width']} does not fit")
    report(1.0, 1)
    return 1.0


_calls = 0


def worsening(config: dict, report) -> float:
    """Each call in this process scores lower than the last: a pruner must cut the later ones."""
    global _calls
    _calls += 1
    value = 100.0 - _calls
    for step in range(1, 6):
        report(value, step)
    return value


def resumable(config: dict, report, checkpoint=None) -> float:
    """20 steps of 0.1 s that save the last finished step to ``checkpoint`` and resume after it.

    Returns the step it started from, so a test can tell a resumed trial from a fresh one.
    """
    start = 1
    if checkpoint is not None and checkpoint.exists():
        start = int(checkpoint.read_text()) + 1
    for step in range(start, 21):
        time.sleep(0.1)
        report(float(step), step)
        if checkpoint is not None:
            # A stop interrupts at once, mid-write too: write aside, then rename (atomic).
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            partial = checkpoint.with_name(f".{checkpoint.name}.partial")
            partial.write_text(str(step))
            os.replace(partial, checkpoint)
    return float(start)


def needs_small_batches(config: dict, report) -> float:
    """Runs out of CUDA memory above 16 rows a batch, as a big model on a small GPU does."""
    import torch

    if config["train.batch_size"] > 16:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    report(1.0, 1)
    return float(config["train.batch_size"] * config.get("train.grad_accum", 1))


def never_fits(config: dict, report) -> float:
    """Out of CUDA memory at any batch size."""
    import torch

    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")


def own_knobs(config: dict, report) -> float:
    """A user's function over parameters no built-in trainer has (space ``task: custom``)."""
    value = -((config["my.x"] - 0.3) ** 2) - (0.0 if config["my.kind"] == "b" else 0.1)
    report(value, 1)
    return value


def trade_off(config: dict, report) -> dict:
    """Two objectives that pull apart: ``error`` falls as ``size`` grows (x in [0, 1])."""
    x, y = float(config["x"]), float(config["y"])
    report(1.0 - x, 1)
    return {"error": (1.0 - x) ** 2 + 0.1 * y, "size": x + 0.1 * y, "aux": 10 * x}


def quadratic_xy(config: dict, report) -> float:
    """One number, for a study that wants several: the worker says what it needs."""
    return float(config["x"]) ** 2
