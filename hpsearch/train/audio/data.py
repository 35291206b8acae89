"""Audio datasets for the trainer: clips, log-mel spectrograms, a train/validation split.

``tones`` is a synthetic dataset generated in code (six classes of tones, chirps and noise
bands, 8 kHz, one second). Any other dataset name is a folder with one subfolder of ``.wav``
files per class (the subfolder's name is the label). Multi-channel files are mixed to mono;
files at other sample rates are resampled (polyphase, :func:`scipy.signal.resample_poly`) to
the folder's most common rate. Every clip is cropped (centre) or zero-padded to one length: the
longest clip, at most :data:`MAX_SECONDS`.

Spectrograms are computed with torch (``torch.stft`` and a mel filterbank built here), cached
in-process per dataset and number of mel bands, and standardized per mel band with the training
split's statistics.
"""

from __future__ import annotations

import functools
import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hpsearch.data_roots import check_member
from hpsearch.errors import TaskError
from hpsearch.train.core.splits import SPLIT_SEED, TensorSplit, split_rows

__all__ = [
    "MAX_SECONDS",
    "SPLIT_SEED",
    "TONES_CLASSES",
    "AudioClips",
    "AudioData",
    "AudioSplit",
    "load_audio",
    "load_audio_data",
    "load_clips",
    "log_mel",
    "make_tones",
    "mel_filterbank",
]

#: Longest clip kept; longer ones are centre-cropped to this.
MAX_SECONDS = 10.0
#: The ``tones`` classes, in label order.
TONES_CLASSES = ("low_tone", "high_tone", "chirp_up", "chirp_down", "noise_band", "two_tone")
_HOP_SECONDS = 0.010
_WINDOW_SECONDS = 0.032
_LOG_FLOOR = 1e-6


@dataclass(frozen=True)
class AudioClips:
    """Equal-length mono waveforms with their labels."""

    waves: np.ndarray  # float32, (clips, samples), in [-1, 1]
    labels: np.ndarray  # int64, (clips,)
    classes: tuple[str, ...]
    sample_rate: int
    files: tuple[str, ...] = ()  # per clip, its path inside the dataset folder; () if generated


@dataclass(frozen=True)
class AudioSplit(TensorSplit):
    """Standardized log-mel spectrograms ``(clips, 1, mels, frames)`` and labels."""


@dataclass(frozen=True)
class AudioData:
    """A dataset ready to train on (tensors shared through the cache: do not modify them)."""

    train: AudioSplit
    val: AudioSplit
    classes: tuple[str, ...]
    sample_rate: int
    val_files: tuple[str, ...] = ()  # per validation clip, as :attr:`AudioClips.files`

    @property
    def n_classes(self) -> int:
        return len(self.classes)


# --- clips ------------------------------------------------------------------------------------


def make_tones(
    *, per_class: int = 60, sample_rate: int = 8000, seconds: float = 1.0, seed: int = 0
) -> AudioClips:
    """The synthetic ``tones`` dataset: six classes, ``per_class`` clips each.

    Each clip lasts 0.5-1 s at a random offset inside a ``seconds`` window, with a random
    phase, amplitude and frequency (in partly overlapping class ranges) and white noise, so the
    classes take a few epochs to separate.
    """
    rng = np.random.default_rng(seed)
    n = int(sample_rate * seconds)
    waves, labels = [], []
    for label in range(len(TONES_CLASSES)):
        for _ in range(per_class):
            length = int(sample_rate * rng.uniform(0.5, min(1.0, seconds)))
            t = np.arange(length) / sample_rate
            phase = rng.uniform(0, 2 * np.pi)
            if label == 0:  # a steady tone, low
                signal = np.sin(2 * np.pi * rng.uniform(200, 500) * t + phase)
            elif label == 1:  # a steady tone, high
                signal = np.sin(2 * np.pi * rng.uniform(1500, 3000) * t + phase)
            elif label in (2, 3):  # a linear chirp, up or down, over at least 1 kHz
                f0 = rng.uniform(300, 1500)
                f1 = f0 + rng.uniform(1000, 2200)
                if label == 3:
                    f0, f1 = f1, f0
                duration = length / sample_rate
                signal = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * duration)) + phase)
            elif label == 4:  # noise filtered to a band (by zeroing FFT bins)
                spectrum = np.fft.rfft(rng.standard_normal(length))
                freqs = np.fft.rfftfreq(length, 1 / sample_rate)
                low = rng.uniform(800, 2800)
                spectrum[(freqs < low) | (freqs > low + 1000)] = 0
                signal = np.fft.irfft(spectrum, n=length)
                signal /= np.abs(signal).max() + 1e-9
            else:  # two tones, the second 2.5 times the first
                f = rng.uniform(300, 1000)
                signal = 0.5 * (np.sin(2 * np.pi * f * t + phase) + np.sin(5 * np.pi * f * t))
            noise = rng.uniform(0.01, 0.1) * rng.standard_normal(length)
            signal = rng.uniform(0.3, 0.9) * signal + noise
            clip = np.zeros(n)
            offset = rng.integers(0, n - length + 1)
            clip[offset : offset + length] = signal
            waves.append(np.clip(clip, -1, 1))
            labels.append(label)
    return AudioClips(
        waves=np.asarray(waves, dtype=np.float32),
        labels=np.asarray(labels, dtype=np.int64),
        classes=TONES_CLASSES,
        sample_rate=sample_rate,
    )


def _read_wav(path: Path) -> tuple[int, np.ndarray]:
    from scipy.io import wavfile

    try:
        rate, data = wavfile.read(path)
    except (ValueError, OSError) as e:
        # scipy's message quotes the file's first bytes: name the error's kind only.
        raise TaskError(
            f"cannot read WAV file {str(path)!r} ({type(e).__name__}: not a PCM or float WAV "
            "file scipy can read)"
        ) from None
    if np.issubdtype(data.dtype, np.integer):
        info = np.iinfo(data.dtype)
        # uint8 WAV is offset binary (silence at 128); the signed types are centred on 0.
        zero, half_range = (info.max + info.min + 1) / 2, (info.max - info.min + 1) / 2
        data = (data.astype(np.float64) - zero) / half_range
    data = data.astype(np.float32)
    if data.ndim == 2:
        data = data.mean(axis=1)
    return int(rate), data


def _fit_length(wave: np.ndarray, n: int) -> np.ndarray:
    if len(wave) >= n:
        start = (len(wave) - n) // 2
        return wave[start : start + n]
    return np.pad(wave, (0, n - len(wave)))


def load_audio(folder: str | os.PathLike[str]) -> AudioClips:
    """Read a folder of class subfolders of ``.wav`` files (see the module docstring)."""
    root = Path(folder)
    if not root.is_dir():
        raise TaskError(
            f"audio dataset {str(folder)!r} is neither a bundled dataset (tones) nor a folder"
        )
    classes = tuple(sorted(d.name for d in root.iterdir() if d.is_dir()))
    files = [
        (f, label) for label, c in enumerate(classes) for f in sorted((root / c).glob("*.wav"))
    ]
    if len(classes) < 2 or not files:
        raise TaskError(
            f"audio dataset {str(folder)!r} needs at least two class subfolders of .wav files, "
            f"found {len(classes)} subfolder(s) and {len(files)} file(s)"
        )
    for f, _ in files:
        check_member(f, field="task.dataset", named=str(folder))  # a symlink out of the roots
    read = [(_read_wav(f), label) for f, label in files]
    rate = Counter(r for (r, _), _ in read).most_common(1)[0][0]
    waves = []
    for (r, wave), _ in read:
        if r != rate:
            from scipy.signal import resample_poly

            g = math.gcd(rate, r)
            wave = resample_poly(wave, rate // g, r // g).astype(np.float32)
        waves.append(wave)
    n = min(max(len(w) for w in waves), int(MAX_SECONDS * rate))
    return AudioClips(
        waves=np.stack([_fit_length(w, n) for w in waves]),
        labels=np.asarray([label for _, label in read], dtype=np.int64),
        classes=classes,
        sample_rate=rate,
        files=tuple(f.relative_to(root).as_posix() for f, _ in files),
    )


@functools.lru_cache(maxsize=4)
def load_clips(dataset: str) -> AudioClips:
    """The clips of a dataset name (``tones``) or folder, cached in-process."""
    if dataset == "tones":
        return make_tones()
    return load_audio(dataset)


# --- spectrograms -----------------------------------------------------------------------------


def _hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank(n_mels: int, n_fft: int, sample_rate: int) -> torch.Tensor:
    """Triangular HTK-mel filters from 0 Hz to Nyquist, ``(n_mels, n_fft // 2 + 1)``.

    A band narrower than one FFT bin (low bands with many mels and a short FFT) would be empty;
    it takes the bin nearest its centre instead, so every band carries signal.
    """
    bins = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(0, _hz_to_mel(sample_rate / 2), n_mels + 2))
    lower, center, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins - lower) / (center - lower)
    falling = (upper - bins) / (upper - center)
    fb = np.clip(np.minimum(rising, falling), 0, None)
    for band in np.flatnonzero(fb.sum(axis=1) == 0):
        fb[band, np.abs(bins - edges[band + 1]).argmin()] = 1.0
    return torch.tensor(fb, dtype=torch.float32)


def _stft_sizes(sample_rate: int) -> tuple[int, int]:
    n_fft = 1 << math.ceil(math.log2(_WINDOW_SECONDS * sample_rate))
    return n_fft, max(1, round(_HOP_SECONDS * sample_rate))


def log_mel(waves: torch.Tensor, sample_rate: int, n_mels: int) -> torch.Tensor:
    """Log mel-band power of ``(clips, samples)`` waveforms: ``(clips, n_mels, frames)``.

    Hann window of ~32 ms (a power of two in samples), 10 ms hop, frames centred.
    """
    n_fft, hop = _stft_sizes(sample_rate)
    fb = mel_filterbank(n_mels, n_fft, sample_rate)
    window = torch.hann_window(n_fft)
    out = []
    for chunk in waves.split(256):  # bounds the memory of the complex STFT
        spec = torch.stft(chunk, n_fft, hop_length=hop, window=window, return_complex=True)
        out.append(torch.log(fb @ spec.abs().pow(2) + _LOG_FLOOR))
    return torch.cat(out)


@functools.lru_cache(maxsize=8)
def _log_mels(dataset: str, n_mels: int) -> torch.Tensor:
    clips = load_clips(dataset)
    return log_mel(torch.from_numpy(clips.waves), clips.sample_rate, n_mels)


def load_audio_data(dataset: str, *, n_mels: int, val_fraction: float) -> AudioData:
    """Spectrograms of ``dataset``, split (stratified, fixed seed) and standardized per band."""
    clips = load_clips(dataset)
    mels = _log_mels(dataset, n_mels)
    train_rows, val_rows = split_rows(
        clips.labels,
        val_fraction,
        stratify=np.bincount(clips.labels).min() >= 2,
        what=f"audio dataset {dataset!r} is too small to split",
    )
    train_idx = torch.from_numpy(np.sort(train_rows))
    val_idx = torch.from_numpy(np.sort(val_rows))
    train_x = mels[train_idx]
    mean = train_x.mean(dim=(0, 2), keepdim=True)
    std = train_x.std(dim=(0, 2), keepdim=True)
    scale = torch.where(std > 1e-6, std, torch.ones_like(std))  # a constant band stays 0

    def split(rows: torch.Tensor) -> AudioSplit:
        x = ((mels[rows] - mean) / scale).unsqueeze(1)
        return AudioSplit(x=x.contiguous(), y=torch.from_numpy(clips.labels)[rows])

    return AudioData(
        train=split(train_idx),
        val=split(val_idx),
        classes=clips.classes,
        sample_rate=clips.sample_rate,
        val_files=tuple(clips.files[i] for i in val_idx.tolist()) if clips.files else (),
    )
