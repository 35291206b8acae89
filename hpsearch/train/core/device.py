"""Where and how a run executes: the torch device, the random seeds, mixed precision."""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch

from hpsearch.settings import get_settings

__all__ = [
    "CPU_AMP_ENV",
    "autocast",
    "cpu_amp_dtype",
    "make_generator",
    "resolve_device",
    "seed_everything",
    "start_run",
]

#: Set to 1 to let ``train.amp`` autocast to bf16 off CUDA; unset (the default), such runs
#: train in fp32 whatever ``train.amp`` says.
CPU_AMP_ENV = "HPSEARCH_CPU_AMP"


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


def cpu_amp_dtype() -> torch.dtype | None:
    """The autocast dtype ``train.amp`` gives off CUDA: ``None`` (fp32) unless this process
    opts in with ``HPSEARCH_CPU_AMP=1``, then bf16.

    Off by default because bf16 autocast on a CPU is at best no faster (AMX), and slower
    elsewhere (1.3x with AVX-512 but no bf16, 11x on AVX2-only CPUs, whose bf16 convolutions
    are not oneDNN's), and wrong on some: with torch 2.14's oneDNN 3.12, the bf16 weight
    gradient of a 3x3 stride-2 convolution over a 1x1 feature map comes back with NaN or
    garbage in the taps that only see padding (AMX, AVX512-BF16 and AVX-512 kernels alike), so
    training diverges there. Raises :class:`~hpsearch.errors.UsageError` (a ``ValueError``)
    for a value that is not yes or no (:class:`hpsearch.settings.Settings` ``cpu_amp``).
    """
    return torch.bfloat16 if get_settings().cpu_amp else None


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to ``dtype`` on ``device``'s type; a no-op context for ``None``."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
