"""CUDA out of memory: run the same config again with half the batch and twice the accumulation.

``train.batch_size × train.grad_accum`` (the effective batch) stays the same, so the trial still
measures the config that was sampled; only its memory use halves. A trial fails for memory only
when a batch of one row does not fit either.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from hpsearch.errors import CudaOutOfMemory

_R = TypeVar("_R")

__all__ = ["CudaOutOfMemory", "halve_batch", "is_cuda_oom", "run_with_oom_retries"]

log = logging.getLogger("hpsearch.worker")

BATCH = "train.batch_size"
ACCUM = "train.grad_accum"


def is_cuda_oom(error: BaseException) -> bool:
    """Whether ``error`` is CUDA running out of memory (torch's error, or its message)."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "CUDA out of memory" in str(error)


def halve_batch(config: dict[str, Any]) -> dict[str, Any] | None:
    """The config with half the batch and twice the accumulation, or None at batch size 1."""
    batch = config.get(BATCH)
    if not isinstance(batch, int) or batch < 2:
        return None
    accum = config.get(ACCUM, 1)
    return {**config, BATCH: batch // 2, ACCUM: int(accum) * 2}


def _free_cuda_memory() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_with_oom_retries(
    run: Callable[[dict[str, Any]], _R],
    config: dict[str, Any],
    *,
    on_retry: Callable[[dict[str, Any]], None],
) -> _R:
    """``run(config)``; on CUDA OOM, again with :func:`halve_batch` until it fits.

    ``on_retry(adjusted)`` is called with each new config before it runs (to record it on the
    trial). Raises :class:`CudaOutOfMemory` when there is no smaller batch to try.
    """
    while True:
        try:
            return run(config)
        except Exception as e:
            if not is_cuda_oom(e):
                raise
            smaller = halve_batch(config)
            if smaller is None:
                raise CudaOutOfMemory(
                    f"CUDA out of memory at {BATCH}={config.get(BATCH)} "
                    f"({ACCUM}={config.get(ACCUM, 1)}): the model does not fit even at the "
                    "smallest batch; use a smaller model or a GPU with more memory"
                ) from e
            log.warning(
                "CUDA out of memory at %s=%s; retrying with %s=%s and %s=%s",
                BATCH,
                config.get(BATCH),
                BATCH,
                smaller[BATCH],
                ACCUM,
                smaller[ACCUM],
            )
            del e  # drop the traceback's frames (and the tensors they hold) before retrying
            _free_cuda_memory()
            on_retry(smaller)
            config = smaller
