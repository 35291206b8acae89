"""What a model costs: its parameter count, its size on disk, its inference latency per sample,
and the peak memory of training it (:data:`hpsearch.families.COST_METRICS`).

The first three depend only on the model as built (not on its weights' values), so a run
measures them once, before its first epoch (:class:`CostMeter`); peak memory grows as training
goes and is read after every epoch. :func:`model_costs` gives the parameter count and size of a
config without training anything, for checking a constraint before a trial starts.
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
from safetensors.torch import save as safetensors_save
from torch import nn

from hpsearch.families import TaskSpec

__all__ = [
    "CostMeter",
    "CostsCallback",
    "count_params",
    "measure_costs",
    "measure_latency_ms",
    "model_costs",
    "peak_memory_mb",
    "safetensors_size",
]

#: What ``train(..., costs=...)`` takes: called once with ``{params, size_mb, latency_ms}``.
CostsCallback = Callable[[dict[str, float]], None]

#: Bytes in one MB, as every cost metric counts them.
_MB = 1e6


def count_params(model: nn.Module) -> int:
    """Every parameter of ``model``, trainable and frozen alike (a frozen backbone still runs
    at inference and still ships); buffers such as batch-norm statistics are not parameters.
    A parameter shared by two layers counts once."""
    return sum(p.numel() for p in model.parameters())


def safetensors_size(model: nn.Module) -> int:
    """The exact bytes of ``model``'s state dict saved as safetensors
    (``safetensors.torch.save_file(state_dict, path)``; header included, buffers included).

    The tensors are copied to the CPU first, so this costs one extra copy of the weights in
    host memory while it runs, and works for a model on any device.
    """
    state = {
        name: tensor.detach().to("cpu", copy=True).contiguous()
        for name, tensor in model.state_dict().items()
    }
    return len(safetensors_save(state))


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_latency_ms(
    forward: Callable[[], object],
    device: torch.device,
    *,
    warmup: int = 3,
    repeats: int = 5,
    budget_s: float = 0.5,
) -> float:
    """The wall time of ``forward()`` in milliseconds: the median of a batch of ``repeats``
    runs, after ``warmup`` runs; the fastest batch's when the first ones were slow.

    Each run is timed alone, the device synchronized before and after (on CUDA kernels run
    asynchronously). Batches go on while each is clearly faster than the ones before (after
    data loading or training, the intra-op threads of a CPU keep spinning for a while, and on
    a busy machine the first batches of a fresh process measured 100x the true latency), and
    stop once two agree. Warm-up and the batches each stop once they have taken ``budget_s``,
    so a model whose forward takes a second on a CPU costs about two runs; at least one run is
    timed.
    """

    def once() -> float:
        _synchronize(device)
        start = time.perf_counter()
        forward()
        _synchronize(device)
        return time.perf_counter() - start

    spent = 0.0
    for _ in range(warmup):
        spent += once()
        if spent >= budget_s:
            break
    medians: list[float] = []
    spent = 0.0
    while True:
        batch = [once()]
        while len(batch) < repeats and spent + sum(batch) < budget_s:
            batch.append(once())
        spent += sum(batch)
        medians.append(statistics.median(batch))
        settled = len(medians) >= 2 and medians[-1] >= 0.8 * min(medians[:-1])
        if settled or spent >= budget_s:
            return min(medians) * 1e3


def measure_costs(
    model: nn.Module,
    val_logits: Callable[[nn.Module, slice], torch.Tensor],
    device: torch.device,
) -> dict[str, float]:
    """``params``, ``size_mb`` and ``latency_ms`` of ``model`` on ``device``.

    ``latency_ms`` is one validation sample (``val_logits(model, slice(0, 1))``: the family's
    own forward path, its autocast included) with ``model`` in eval mode under
    ``torch.no_grad``, timed by :func:`measure_latency_ms`. The model's training mode is
    restored afterwards; its weights and every random state are left as they were.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():  # not inference_mode: a tensor it caches must stay trainable
            latency = measure_latency_ms(lambda: val_logits(model, slice(0, 1)), device)
    finally:
        model.train(was_training)
    return {
        "params": float(count_params(model)),
        "size_mb": safetensors_size(model) / _MB,
        "latency_ms": latency,
    }


def peak_memory_mb(device: torch.device) -> float:
    """The peak memory of training on ``device``, in MB.

    On CUDA, ``torch.cuda.max_memory_allocated`` (tensors only, not the caching allocator's
    reserve) since :class:`CostMeter` reset it. Elsewhere, the peak resident set size of the
    whole process (``getrusage``'s ``ru_maxrss``): it includes the Python runtime, torch and the
    loaded data, and it never goes down, so in a worker that runs trials one after another it
    is the peak of every run so far, not of this run alone.
    """
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / _MB
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kilobytes, macOS bytes.
    return (peak if sys.platform == "darwin" else peak * 1024) / _MB


class CostMeter:
    """A run's cost metrics: the fixed ones measured once, peak memory read at every epoch.

    Built at the start of a run (on CUDA it resets the device's peak-memory counter, so memory
    already allocated then, the model and the data, still counts). ``callback`` gets the fixed
    costs once, when they are first measured; an exception it raises propagates to the caller
    of :meth:`measure`, before anything trains.
    """

    def __init__(self, *, device: torch.device, callback: CostsCallback | None = None) -> None:
        self.device = device
        self.callback = callback
        self.fixed: dict[str, float] | None = None
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)

    def measure(
        self, model: nn.Module, val_logits: Callable[[nn.Module, slice], torch.Tensor]
    ) -> dict[str, float]:
        """The fixed costs (:func:`measure_costs`), measured the first time this is called and
        handed to the callback then; later calls return the same values."""
        if self.fixed is None:
            self.fixed = measure_costs(model, val_logits, self.device)
            if self.callback is not None:
                self.callback(dict(self.fixed))
        return dict(self.fixed)

    def epoch_costs(self) -> dict[str, float]:
        """The four cost metrics after an epoch; :meth:`measure` must have run."""
        if self.fixed is None:
            raise RuntimeError("CostMeter.epoch_costs() before measure(): measure the model first")
        return {**self.fixed, "peak_mem_mb": peak_memory_mb(self.device)}


def model_costs(config: Mapping[str, Any], task: TaskSpec) -> dict[str, float]:
    """``params`` and ``size_mb`` of the model ``config`` builds for ``task``, without training.

    The same numbers a trial of this config measures before its first epoch
    (:func:`count_params`, :func:`safetensors_size`), for checking a constraint before the
    trial starts. The model comes from the family's own builder through
    :func:`hpsearch.train.rebuild_model` (on the CPU, from a random init, never loading
    pretrained weights), which loads the task's data for its input and output sizes, as
    training does. A caller that must keep reads under data roots checks the task first, as the
    worker does. Raises ``ValueError`` for a bad config, task or family.
    """
    from hpsearch.train.core.rebuild import rebuild_model

    model = rebuild_model(config, task, device="cpu")
    return {"params": float(count_params(model)), "size_mb": safetensors_size(model) / _MB}
