"""SpecAugment (Park et al., 2019) on batches of spectrograms: time warping, time and frequency
masking.

Every function takes a batch shaped ``(batch, channels, freq, time)`` and returns a new tensor
of the same shape; each example gets its own random warp or mask. The masks fill with 0, which
is the training mean of every band once spectrograms are standardized per band (the paper fills
with the mean). A width of 0 returns the input unchanged. torchaudio has these, but it would pull
in a second torch build; they are a few lines each here.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SpecAugment", "freq_mask", "mask_band", "time_mask", "time_warp", "warp_time"]

_FREQ, _TIME = 2, 3


def mask_band(
    spec: torch.Tensor, dim: int, start: torch.Tensor, width: torch.Tensor, value: float = 0.0
) -> torch.Tensor:
    """Set ``spec[i, :, ...]`` to ``value`` on ``[start[i], start[i] + width[i])`` along ``dim``.

    ``dim`` is 2 (frequency) or 3 (time); ``start`` and ``width`` hold one integer per example.
    """
    if dim not in (_FREQ, _TIME):
        raise ValueError(f"`dim` must be 2 (frequency) or 3 (time), got {dim}")
    pos = torch.arange(spec.shape[dim], device=spec.device)
    start = start.to(spec.device).view(-1, 1)
    width = width.to(spec.device).view(-1, 1)
    inside = (pos >= start) & (pos < start + width)  # (batch, size along dim)
    shape = [spec.shape[0], 1, 1, 1]
    shape[dim] = spec.shape[dim]
    return spec.masked_fill(inside.view(shape), value)


def _random_mask(
    spec: torch.Tensor, dim: int, max_width: int, generator: torch.Generator | None
) -> torch.Tensor:
    if max_width < 0:
        raise ValueError(f"a mask's largest width must be >= 0, got {max_width}")
    size = spec.shape[dim]
    max_width = min(max_width, size)
    if max_width == 0:
        return spec
    n = spec.shape[0]
    # The paper's t ~ U[0, T] and t0 ~ U[0, tau - t): one draw per example.
    width = torch.randint(0, max_width + 1, (n,), generator=generator)
    start = (torch.rand(n, generator=generator) * (size - width + 1)).long()
    return mask_band(spec, dim, start, width)


def time_mask(
    spec: torch.Tensor, max_width: int, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Mask a random run of up to ``max_width`` consecutive frames (all bands) per example."""
    return _random_mask(spec, _TIME, max_width, generator)


def freq_mask(
    spec: torch.Tensor, max_width: int, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Mask a random run of up to ``max_width`` consecutive mel bands (all frames) per example."""
    return _random_mask(spec, _FREQ, max_width, generator)


def warp_time(spec: torch.Tensor, center: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Move frame ``center[i]`` to ``center[i] + shift[i]``, stretching the time axis linearly on
    both sides of it (first and last frames stay put); frames are linearly interpolated."""
    n_frames = spec.shape[_TIME]
    last = n_frames - 1
    center = center.to(spec.device, torch.float32).view(-1, 1)
    target = center + shift.to(spec.device, torch.float32).view(-1, 1)
    t = torch.arange(n_frames, device=spec.device, dtype=torch.float32).view(1, -1)
    # Where each output frame reads from: [0, target] maps onto [0, center], the rest onto
    # [center, last].
    left = t * center / target.clamp(min=1e-6)
    right = center + (t - target) * (last - center) / (last - target).clamp(min=1e-6)
    src = torch.where(t <= target, left, right).clamp(0, last)  # (batch, frames)
    lo = src.floor().long()
    hi = (lo + 1).clamp(max=last)
    frac = (src - lo).to(spec.dtype)
    index_shape = (spec.shape[0], 1, 1, n_frames)
    expand = (-1, spec.shape[1], spec.shape[2], -1)
    lo_vals = spec.gather(_TIME, lo.view(index_shape).expand(expand))
    hi_vals = spec.gather(_TIME, hi.view(index_shape).expand(expand))
    return lo_vals + (hi_vals - lo_vals) * frac.view(index_shape)


def time_warp(
    spec: torch.Tensor, max_shift: int, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """The paper's time warp: a random frame in ``(W, tau - W)`` moves by ``w ~ U[-W, W]``.

    ``W`` is ``max_shift``, reduced where the clip is too short for it (below a third of the
    frames), so the warp point always has room on both sides.
    """
    if max_shift < 0:
        raise ValueError(f"the largest time-warp shift must be >= 0, got {max_shift}")
    n_frames = spec.shape[_TIME]
    w = min(max_shift, (n_frames - 1) // 3)
    if w == 0:
        return spec
    n = spec.shape[0]
    center = torch.randint(w, n_frames - 1 - w, (n,), generator=generator)
    shift = torch.randint(-w, w + 1, (n,), generator=generator)
    return warp_time(spec, center, shift)


class SpecAugment(nn.Module):
    """Time warp, then a frequency mask and a time mask, in training mode only.

    In eval mode (``.eval()``) the input passes through unchanged.
    """

    def __init__(
        self,
        *,
        time_warp: int = 0,
        time_mask: int = 0,
        freq_mask: int = 0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("time_warp", time_warp), ("time_mask", time_mask),
                            ("freq_mask", freq_mask)):  # fmt: skip
            if value < 0:
                raise ValueError(f"`aug.{name}` must be >= 0 (0 = off), got {value!r}")
        self.max_shift = time_warp
        self.max_time_width = time_mask
        self.max_freq_width = freq_mask
        self.generator = generator

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return spec
        spec = time_warp(spec, self.max_shift, generator=self.generator)
        spec = freq_mask(spec, self.max_freq_width, generator=self.generator)
        return time_mask(spec, self.max_time_width, generator=self.generator)

    def extra_repr(self) -> str:
        return (
            f"time_warp={self.max_shift}, time_mask={self.max_time_width}, "
            f"freq_mask={self.max_freq_width}"
        )
