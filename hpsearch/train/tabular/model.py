"""The tabular MLP: categorical embeddings, hidden blocks, and a linear head that gives logits."""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn

from hpsearch.train.core.activations import GeneralRelu, build_activation
from hpsearch.train.core.config import ModelConfig

__all__ = ["DropConnectLinear", "GeneralRelu", "HiddenBlock", "TabularMLP", "build_model"]


class DropConnectLinear(nn.Linear):
    """A linear layer whose weights (not activations) are dropped with probability ``p`` in
    training, rescaled by ``1 / (1 - p)`` like dropout so the expected output is unchanged."""

    def __init__(self, in_features: int, out_features: int, *, p: float = 0.0) -> None:
        super().__init__(in_features, out_features)
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.p > 0:
            return F.linear(x, F.dropout(self.weight, self.p, training=True), self.bias)
        return super().forward(x)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, p={self.p}"


def _norm(name: str, features: int) -> nn.Module:
    if name == "batch":
        return nn.BatchNorm1d(features)
    if name == "layer":
        return nn.LayerNorm(features)
    if name == "none":
        return nn.Identity()
    raise ValueError(f"`model.norm` {name!r} is not known")


class HiddenBlock(nn.Module):
    """Linear -> norm -> activation -> dropout, optionally as a residual branch.

    With ``activation="glu"`` the linear layer outputs twice ``out_features`` and GLU gates
    half of them with the other half. A residual block (needs ``in_features == out_features``)
    adds its input back, and drops its branch per sample with probability ``drop_path``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        activation: str,
        norm: str,
        dropout: float,
        dropconnect: float,
        residual: bool = False,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        if residual and in_features != out_features:
            raise ValueError(
                f"a residual block needs equal widths, got {in_features} -> {out_features}"
            )
        linear_out = 2 * out_features if activation == "glu" else out_features
        self.linear = DropConnectLinear(in_features, linear_out, p=dropconnect)
        self.norm = _norm(norm, linear_out)
        self.act = build_activation(activation, glu_dim=-1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.residual = residual
        self.drop_path = DropPath(drop_path) if residual and drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.dropout(self.act(self.norm(self.linear(x))))
        if self.residual:
            return x + self.drop_path(out)
        return out


class TabularMLP(nn.Module):
    """An MLP over numeric features plus one embedding per categorical column.

    ``forward`` returns logits; ``forward_features`` returns the last hidden layer's
    activations (what activation regularization penalizes), and ``head`` maps them to logits.
    """

    def __init__(
        self,
        *,
        n_numeric: int,
        cardinalities: tuple[int, ...],
        n_classes: int,
        cfg: ModelConfig,
    ) -> None:
        super().__init__()
        self.embeddings = nn.ModuleList(nn.Embedding(c, cfg.embedding_dim) for c in cardinalities)
        in_features = n_numeric + cfg.embedding_dim * len(cardinalities)
        if in_features == 0:
            raise ValueError("the dataset has no feature columns")
        residual_blocks = cfg.depth - 1 if cfg.residual else 0
        blocks = []
        for i in range(cfg.depth):
            # Only blocks whose input has the hidden width can be residual: all but the first.
            residual = cfg.residual and i > 0
            # Stochastic-depth rates grow linearly with depth up to the configured rate (as in
            # the paper and timm's models), so the deepest branch is dropped most often.
            drop_path = cfg.stochastic_depth * i / residual_blocks if residual else 0.0
            blocks.append(
                HiddenBlock(
                    in_features if i == 0 else cfg.width,
                    cfg.width,
                    activation=cfg.activation,
                    norm=cfg.norm,
                    dropout=cfg.dropout,
                    dropconnect=cfg.dropconnect,
                    residual=residual,
                    drop_path=drop_path,
                )
            )
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(cfg.width, n_classes)
        _init_linear(self, cfg.init)

    @property
    def hidden_blocks(self) -> list[HiddenBlock]:
        """The hidden blocks, first to last (``blocks``, typed: nn.Sequential yields Modules)."""
        return cast("list[HiddenBlock]", list(self.blocks))

    @property
    def embedding_tables(self) -> list[nn.Embedding]:
        """One embedding table per categorical column, in column order (``embeddings``, typed)."""
        return cast("list[nn.Embedding]", list(self.embeddings))

    def forward_features(self, x_num: torch.Tensor, x_cat: torch.Tensor) -> torch.Tensor:
        """The last hidden layer's activations for a batch."""
        parts = [x_num] + [emb(x_cat[:, j]) for j, emb in enumerate(self.embeddings)]
        x = torch.cat(parts, dim=1) if len(parts) > 1 else x_num
        return self.blocks(x)

    def forward(self, x_num: torch.Tensor, x_cat: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x_num, x_cat))


def _init_linear(model: nn.Module, init: str) -> None:
    # "default" keeps PyTorch's own init (Kaiming-uniform with a=sqrt(5)).
    if init == "default":
        return
    for m in model.modules():
        if isinstance(m, nn.Linear):
            if init == "xavier":
                nn.init.xavier_uniform_(m.weight)
            elif init == "kaiming":
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            else:
                raise ValueError(f"`model.init` {init!r} is not known")
            nn.init.zeros_(m.bias)


def build_model(
    cfg: ModelConfig, *, n_numeric: int, cardinalities: tuple[int, ...], n_classes: int
) -> TabularMLP:
    """The MLP the ``model.*`` knobs describe, for a dataset of this shape."""
    return TabularMLP(
        n_numeric=n_numeric, cardinalities=cardinalities, n_classes=n_classes, cfg=cfg
    )
