"""The activation functions ``model.activation`` names, for the tabular MLP and the audio CNN."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["GeneralRelu", "build_activation"]


class GeneralRelu(nn.Module):
    """ReLU shifted down by ``sub`` (fastai's GeneralRelu): centres the activations nearer 0."""

    def __init__(self, sub: float = 0.5) -> None:
        super().__init__()
        self.sub = sub

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x) - self.sub

    def extra_repr(self) -> str:
        return f"sub={self.sub}"


def build_activation(name: str, *, glu_dim: int) -> nn.Module:
    """The activation ``name`` (one of :data:`hpsearch.train.core.config.ACTIVATIONS`).

    ``glu`` gates half of the features along ``glu_dim`` with the other half, so the layer
    before it must output twice the features: the last dim for an MLP, the channels for a CNN.
    """
    if name == "relu":
        return nn.ReLU()
    if name == "relu-0.5":
        return GeneralRelu(0.5)
    if name == "gelu":
        return nn.GELU()
    if name == "silu":
        return nn.SiLU()
    if name == "mish":
        return nn.Mish()
    if name == "glu":
        return nn.GLU(dim=glu_dim)
    raise ValueError(f"`model.activation` {name!r} is not known")
