"""Denoising-autoencoder pretraining of the tabular MLP's encoder (embeddings and hidden stack).

The encoder reads rows whose cells were swapped, with probability ``pretrain.noise``, with the
same column of another row of the batch (swap noise: it corrupts numeric and categorical
columns alike and keeps every value realistic). A decoder maps the last hidden layer back to
the input vector; the loss is MSE on the numeric columns plus, per categorical column, CE of
the decoded embedding against the embedding table. Labels are not used. Afterwards the
supervised model starts from the pretrained encoder; the decoder is dropped.
"""

from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from hpsearch.errors import TrainingDiverged
from hpsearch.train.core.config import PretrainConfig
from hpsearch.train.tabular.model import TabularMLP
from hpsearch.train.core.sampling import epoch_batches

__all__ = ["DenoisingAutoencoder", "pretrain_dae", "swap_noise"]


def swap_noise(x: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """``x`` with each cell replaced, with probability ``p``, by the same column of a random row.

    The noise is drawn on the CPU from ``generator`` (so a seeded run repeats), then moved."""
    if p <= 0 or x.shape[1] == 0 or len(x) < 2:
        return x
    mask = (torch.rand(x.shape, generator=generator) < p).to(x.device)
    donors = torch.randint(0, len(x), x.shape, generator=generator).to(x.device)
    return torch.where(mask, torch.gather(x, 0, donors), x)


class DenoisingAutoencoder(nn.Module):
    """The MLP's encoder plus a decoder back to its input vector.

    With ``tie_weights`` the decoder's layers are the encoder's hidden layers in reverse, each
    using its linear weight transposed (the value half of a GLU layer's), so the decoder owns
    only its biases; otherwise it has its own linear layers of the same shapes.
    """

    def __init__(self, model: TabularMLP, *, tie_weights: bool) -> None:
        super().__init__()
        self.model = model
        self.tie_weights = tie_weights
        # (in, out) of each hidden layer as the encoder sees it.
        shapes = [(b.linear.in_features, b.linear.out_features) for b in model.hidden_blocks]
        if isinstance(model.hidden_blocks[0].act, nn.GLU):
            shapes = [(i, o // 2) for i, o in shapes]
        self._shapes = shapes
        self.decoder: nn.ParameterList | nn.ModuleList
        if tie_weights:
            self.decoder = nn.ParameterList(
                nn.Parameter(torch.zeros(i)) for i, _ in reversed(shapes)
            )
        else:
            self.decoder = nn.ModuleList(nn.Linear(o, i) for i, o in reversed(shapes))

    def decoder_weights(self) -> list[torch.Tensor]:
        """The weight of each decoder layer, first to last (``(out, in)`` as ``F.linear`` takes)."""
        if not self.tie_weights:
            return [cast(nn.Linear, layer).weight for layer in self.decoder]
        return [
            block.linear.weight[:out].t()
            for block, (_, out) in zip(reversed(self.model.hidden_blocks), reversed(self._shapes))
        ]

    def inputs(self, x_num: torch.Tensor, x_cat: torch.Tensor) -> torch.Tensor:
        """The input vector the encoder's first layer reads (numeric columns, then embeddings)."""
        parts = [x_num] + [emb(x_cat[:, j]) for j, emb in enumerate(self.model.embeddings)]
        return torch.cat(parts, dim=1) if len(parts) > 1 else x_num

    def forward(self, x_num: torch.Tensor, x_cat: torch.Tensor) -> torch.Tensor:
        """The reconstructed input vector of a (corrupted) batch."""
        h = self.model.forward_features(x_num, x_cat)
        weights = self.decoder_weights()
        biases: list[torch.Tensor] = [
            cast(nn.Parameter, p) if self.tie_weights else cast(nn.Linear, p).bias
            for p in self.decoder
        ]
        for i, (w, b) in enumerate(zip(weights, biases)):
            h = F.linear(h, w, b)
            if i < len(weights) - 1:
                h = F.silu(h)
        return h

    def reconstruction_loss(
        self, recon: torch.Tensor, x_num: torch.Tensor, x_cat: torch.Tensor
    ) -> torch.Tensor:
        """MSE on the clean numeric columns plus CE of each decoded embedding against its table."""
        n_num = x_num.shape[1]
        loss = F.mse_loss(recon[:, :n_num], x_num) if n_num else recon.new_zeros(())
        offset = n_num
        for j, emb in enumerate(self.model.embedding_tables):
            part = recon[:, offset : offset + emb.embedding_dim]
            loss = loss + F.cross_entropy(part @ emb.weight.t(), x_cat[:, j])
            offset += emb.embedding_dim
        return loss


def pretrain_dae(
    model: TabularMLP,
    x_num: torch.Tensor,
    x_cat: torch.Tensor,
    cfg: PretrainConfig,
    *,
    lr: float,
    batch_size: int,
    generator: torch.Generator,
) -> list[float]:
    """Pretrain ``model``'s encoder in place as a denoising autoencoder on the rows given, for
    ``cfg.dae_epochs`` epochs with Adam at ``lr``; returns the mean reconstruction loss of each
    epoch (empty when ``dae_epochs`` is 0).

    Raises :class:`~hpsearch.errors.TrainingDiverged` when the loss stops being finite.
    """
    if cfg.dae_epochs == 0:
        return []
    dae = DenoisingAutoencoder(model, tie_weights=cfg.tie_weights).to(x_num.device)
    optimizer = torch.optim.Adam(dae.parameters(), lr=lr)
    losses = []
    dae.train()
    for epoch in range(1, cfg.dae_epochs + 1):
        batches = epoch_batches(len(x_num), batch_size, generator=generator, weights=None)
        total = 0.0
        for idx in batches:
            idx = idx.to(x_num.device)
            clean_num, clean_cat = x_num[idx], x_cat[idx]
            noisy_num = swap_noise(clean_num, cfg.noise, generator)
            noisy_cat = swap_noise(clean_cat, cfg.noise, generator)
            loss = dae.reconstruction_loss(dae(noisy_num, noisy_cat), clean_num, clean_cat)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item()
        mean = total / len(batches)
        if not math.isfinite(mean):
            raise TrainingDiverged(
                f"denoising-autoencoder loss is {mean} in pretraining epoch {epoch}; "
                "try a lower optim.lr"
            )
        losses.append(mean)
    return losses
