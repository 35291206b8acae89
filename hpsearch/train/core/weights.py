"""The final model's weights, handed over once training ends (``train(..., weights=...)``).

The epoch loop calls the callback with the same weights the last reported metric was computed
with (the EMA weights when ``train.ema`` is on), as a CPU state dict that safetensors can write
as it is: every tensor contiguous and owning its memory, so a worker can keep the model of a
trial and ``hpsearch export`` can hand it to its user.
"""

from __future__ import annotations

from collections.abc import Callable

import safetensors.torch
import torch
from torch import nn

__all__ = ["WeightsCallback", "cpu_state_dict", "safetensors_bytes"]

#: What ``train(..., weights=...)`` takes: called once with the final model's CPU state dict.
WeightsCallback = Callable[[dict[str, torch.Tensor]], None]


def cpu_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` copied to the CPU: contiguous tensors that share no memory with
    the model or with one another (safetensors refuses shared or strided tensors), buffers
    such as batch-norm statistics included."""
    return {
        name: tensor.detach().to("cpu", copy=True).contiguous()
        for name, tensor in model.state_dict().items()
    }


def safetensors_bytes(state: dict[str, torch.Tensor]) -> bytes:
    """``state`` (a :func:`cpu_state_dict`) as the bytes of a ``.safetensors`` file, which
    ``safetensors.torch.load_file`` (or ``load``) reads back into the same tensors."""
    return safetensors.torch.save(state, metadata={"format": "pt"})
