"""Models on log-mel spectrograms ``(batch, 1, mels, frames)``: a small CNN, or a timm model.

Both can take a CoordConv frequency channel (:class:`FrequencyCoord`): a spectrogram is not
translation invariant along frequency, and the channel tells the convolutions which band they
look at.
"""

from __future__ import annotations

import torch
from timm.layers import DropPath
from torch import nn

from hpsearch.train.core.activations import build_activation
from hpsearch.train.audio.config import AudioModelConfig

__all__ = ["MAX_WIDTH_FACTOR", "AudioCNN", "ConvBlock", "FrequencyCoord", "build_audio_model"]

#: Later blocks double the first block's channels, up to this factor.
MAX_WIDTH_FACTOR = 8


class FrequencyCoord(nn.Module):
    """Appends a channel holding each row's frequency position, from -1 (lowest band) to 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, freq, time = x.shape
        coord = torch.linspace(-1.0, 1.0, freq, device=x.device, dtype=x.dtype)
        return torch.cat([x, coord.view(1, 1, freq, 1).expand(n, 1, freq, time)], dim=1)


def _norm(name: str, channels: int) -> nn.Module:
    if name == "batch":
        return nn.BatchNorm2d(channels)
    if name == "layer":
        # One group: normalizes each example over its channels and positions.
        return nn.GroupNorm(1, channels)
    if name == "none":
        return nn.Identity()
    raise ValueError(f"`model.norm` {name!r} is not known")


class ConvBlock(nn.Module):
    """3x3 conv -> norm -> activation -> dropout, optionally residual, then a 2x2 max-pool.

    A residual block adds its input back (through a 1x1 conv when the channels change) and drops
    its branch per example with probability ``drop_path``. ``pool`` gives the pooling kernel,
    ``(1, 1)`` where a side is already down to one row or frame.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        activation: str,
        norm: str,
        dropout: float,
        residual: bool,
        drop_path: float,
        pool: tuple[int, int],
    ) -> None:
        super().__init__()
        conv_out = 2 * out_channels if activation == "glu" else out_channels
        self.conv = nn.Conv2d(in_channels, conv_out, 3, padding=1, bias=norm == "none")
        self.norm = _norm(norm, conv_out)
        self.act = build_activation(activation, glu_dim=1)  # gates channels
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.residual = residual
        self.shortcut: nn.Module = nn.Identity()
        if residual and in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.drop_path = DropPath(drop_path) if residual and drop_path > 0 else nn.Identity()
        self.pool = nn.MaxPool2d(pool) if pool != (1, 1) else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.dropout(self.act(self.norm(self.conv(x))))
        if self.residual:
            out = self.shortcut(x) + self.drop_path(out)
        return self.pool(out)


class AudioCNN(nn.Module):
    """Conv blocks over the spectrogram, global average pooling, dropout, a linear head (logits)."""

    def __init__(
        self, cfg: AudioModelConfig, *, n_mels: int, n_frames: int, n_classes: int
    ) -> None:
        super().__init__()
        self.coord = FrequencyCoord() if cfg.coordconv else nn.Identity()
        in_channels = 2 if cfg.coordconv else 1
        blocks = []
        freq, time = n_mels, n_frames
        for i in range(cfg.depth):
            channels = cfg.width * min(2**i, MAX_WIDTH_FACTOR)
            pool = (2 if freq >= 2 else 1, 2 if time >= 2 else 1)
            # Stochastic-depth rates grow linearly with depth up to the configured rate.
            drop_path = cfg.stochastic_depth * (i + 1) / cfg.depth if cfg.residual else 0.0
            blocks.append(
                ConvBlock(
                    in_channels,
                    channels,
                    activation=cfg.activation,
                    norm=cfg.norm,
                    dropout=cfg.dropout,
                    residual=cfg.residual,
                    drop_path=drop_path,
                    pool=pool,
                )
            )
            in_channels = channels
            freq, time = freq // pool[0], time // pool[1]
        self.blocks = nn.Sequential(*blocks)
        self.head_dropout = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()
        self.head = nn.Linear(in_channels, n_classes)
        _init_weights(self, cfg.init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.blocks(self.coord(x)).mean(dim=(2, 3))
        return self.head(self.head_dropout(features))


def _init_weights(model: nn.Module, init: str) -> None:
    # "default" keeps PyTorch's own init for each layer.
    if init == "default":
        return
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            if init == "xavier":
                nn.init.xavier_uniform_(m.weight)
            elif init == "kaiming":
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            else:
                raise ValueError(f"`model.init` {init!r} is not known")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def build_audio_model(
    cfg: AudioModelConfig, *, n_mels: int, n_frames: int, n_classes: int
) -> nn.Module:
    """The model ``model.*`` describes, for spectrograms of ``n_mels`` x ``n_frames``."""
    if cfg.name == "cnn":
        return AudioCNN(cfg, n_mels=n_mels, n_frames=n_frames, n_classes=n_classes)
    import timm

    if cfg.name not in timm.list_models():
        raise ValueError(
            f"`model.name` {cfg.name!r} is neither cnn nor a model in timm.list_models()"
        )
    backbone = timm.create_model(
        cfg.name,
        pretrained=False,
        in_chans=2 if cfg.coordconv else 1,
        num_classes=n_classes,
        drop_rate=cfg.dropout,
        drop_path_rate=cfg.stochastic_depth or None,
    )
    return nn.Sequential(FrequencyCoord(), backbone) if cfg.coordconv else backbone
