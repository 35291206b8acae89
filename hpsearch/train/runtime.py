"""Where and how a run executes: the torch device, the random seeds, mixed precision."""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch

__all__ = ["autocast", "make_generator", "resolve_device", "seed_everything", "start_run"]


def resolve_device(device: str | None) -> torch.device:
    """``None`` picks CUDA when available, else CPU; a named device must exist here.

    Raises ``ValueError`` for a malformed name or a CUDA device this machine does not have.
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ValueError(f"`device` {device!r} is not a torch device name: {e}") from e
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"`device` {device!r} asked for CUDA, but no CUDA device is available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"`device` {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    return dev


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (all CUDA devices included)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_generator(seed: int | None) -> torch.Generator:
    """A CPU generator for data order: seeded when ``seed`` is given, else from OS entropy."""
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


def start_run(device: str | None, seed: int | None) -> tuple[torch.device, torch.Generator]:
    """The device a run trains on (:func:`resolve_device`) and its data-order generator; with a
    ``seed``, the global generators are seeded first (:func:`seed_everything`)."""
    dev = resolve_device(device)
    if seed is not None:
        seed_everything(seed)
    return dev, make_generator(seed)


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to ``dtype`` on ``device``'s type; a no-op context for ``None``."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
