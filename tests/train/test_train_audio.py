"""The audio trainer: the generated `tones` data and a WAV folder, SpecAugment, every knob of the
audio space, and a study over that space run by a worker.

A knob is "real" when changing it alone, under the same seed, changes the validation metrics
the run reports (the control test shows that an unchanged config reproduces them exactly).
"""

from __future__ import annotations

import math
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from hpsearch import studies
from hpsearch.errors import TrainingDiverged
from hpsearch.spaces import load_space
from hpsearch.db.storage import open_storage
from hpsearch.families import BUNDLED_DATASETS, COST_METRICS, TASK_FAMILIES, TaskSpec
from hpsearch.train import FITTERS, fitter
from hpsearch.train.audio import trainer as audio_trainer
from hpsearch.train.audio.trainer import autocast_dtype, fit
from hpsearch.train.audio.config import AUDIO_DEFAULTS, parse_audio_config
from hpsearch.train.audio.data import load_audio, log_mel, make_tones, mel_filterbank
from hpsearch.train.audio.model import AudioCNN, build_audio_model
from hpsearch.train.core.device import CPU_AMP_ENV
from hpsearch.train.audio.specaugment import (
    SpecAugment,
    freq_mask,
    mask_band,
    time_mask,
    time_warp,
    warp_time,
)
from hpsearch.worker import run_worker

#: A small, fast model: most tests change one knob of this.
TINY = {"model.width": 8, "model.depth": 2, "input.n_mels": 32}


def _task(epochs: int = 1, dataset: str = "tones") -> TaskSpec:
    return TaskSpec(family="audio_classification", dataset=dataset, epochs=epochs)


def _metrics(config: dict[str, Any], epochs: int = 1, seed: int = 0) -> list[tuple[float, float]]:
    return [
        (r.metrics["val_loss"], r.metrics["val_accuracy"])
        for r in fit({**TINY, **config}, _task(epochs), seed=seed, device="cpu")
    ]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py


# --- registration and learning ----------------------------------------------------------------


def test_audio_family_is_registered() -> None:
    assert TASK_FAMILIES["audio_classification"] is True
    assert "tones" in BUNDLED_DATASETS
    assert FITTERS["audio_classification"] == "hpsearch.train.audio.trainer:fit"
    assert fitter("audio_classification") is fit


def test_space_knobs_are_the_trainers_knobs() -> None:
    space = load_space("audio")
    assert space.task == "audio_classification"
    assert set(space.params) <= set(AUDIO_DEFAULTS)
    # The trainer's defaults are the space's, so a direct fit() means what a study means.
    for name, param in space.params.items():
        assert AUDIO_DEFAULTS[name] == param.default, name


def test_tones_learns() -> None:
    config = {"model.width": 16, "model.depth": 3, "aug.time_mask": 0, "aug.freq_mask": 0,
              "optim.lr": 3e-3}  # fmt: skip
    results = list(fit({**TINY, **config}, _task(epochs=5), seed=0, device="cpu"))
    assert [r.epoch for r in results] == [1, 2, 3, 4, 5]
    assert all(set(r.metrics) == {"val_accuracy", "val_loss", *COST_METRICS} for r in results)
    # Six classes: chance is 1/6.
    assert results[-1].metrics["val_accuracy"] > 0.5
    assert results[-1].metrics["val_loss"] < results[0].metrics["val_loss"]
    assert results[-1].train_loss < results[0].train_loss


def test_tones_is_seeded_and_shaped() -> None:
    a, b = make_tones(per_class=5), make_tones(per_class=5)
    assert np.array_equal(a.waves, b.waves)
    assert a.waves.shape == (30, 8000) and a.waves.dtype == np.float32
    assert np.abs(a.waves).max() <= 1.0
    assert not np.array_equal(a.waves, make_tones(per_class=5, seed=1).waves)
    assert np.bincount(a.labels).tolist() == [5] * 6


def _write_wav(path: Path, signal: np.ndarray, rate: int) -> None:
    """16-bit PCM; ``signal`` is (samples,) or (samples, channels) in [-1, 1]."""
    data = (np.clip(signal, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1 if data.ndim == 1 else data.shape[1])
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(data.tobytes())


@pytest.fixture(scope="module")
def wav_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three classes (low tone, high tone, noise) of 12 clips, 0.4-0.6 s at 8 kHz; one clip is
    stereo and one is at 16 kHz."""
    root = tmp_path_factory.mktemp("wavs")
    rng = np.random.default_rng(0)
    for label, name in enumerate(["low", "high", "noise"]):
        (root / name).mkdir()
        for i in range(12):
            rate = 16000 if (label, i) == (1, 0) else 8000
            t = np.arange(int(rate * rng.uniform(0.4, 0.6))) / rate
            if name == "noise":
                signal = 0.3 * rng.standard_normal(len(t))
            else:
                f = rng.uniform(200, 400) if name == "low" else rng.uniform(2000, 3000)
                signal = 0.6 * np.sin(2 * np.pi * f * t + rng.uniform(0, 6))
            if (label, i) == (0, 0):
                signal = np.stack([signal, 0.5 * signal], axis=1)
            _write_wav(root / name / f"{i:02d}.wav", signal, rate)
    (root / "README.txt").write_text("not a class folder")
    return root


def test_wav_folder_loads_to_one_rate_and_length(wav_folder: Path) -> None:
    clips = load_audio(wav_folder)
    assert clips.classes == ("high", "low", "noise")
    assert clips.sample_rate == 8000
    assert clips.waves.shape[0] == 36
    # Every clip is padded or cropped to the longest (at 8 kHz, at most 0.6 s).
    assert 0.4 * 8000 < clips.waves.shape[1] <= 0.6 * 8000 + 1
    assert np.bincount(clips.labels).tolist() == [12, 12, 12]


def test_wav_folder_trains(wav_folder: Path) -> None:
    config = {**TINY, "optim.lr": 3e-3, "train.batch_size": 8, "aug.time_mask": 0}
    results = list(fit(config, _task(epochs=5, dataset=str(wav_folder)), seed=0, device="cpu"))
    assert len(results) == 5
    assert all(math.isfinite(r.metrics["val_loss"]) for r in results)
    # Three easy classes, nine validation clips: chance is 1/3.
    assert results[-1].metrics["val_accuracy"] > 0.6


def test_missing_dataset_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nope"):
        fit(TINY, _task(dataset=str(tmp_path / "nope")), seed=0, device="cpu")
    (tmp_path / "only").mkdir()
    with pytest.raises(ValueError, match="two class subfolders"):
        fit(TINY, _task(dataset=str(tmp_path)), seed=0, device="cpu")


# --- spectrograms -----------------------------------------------------------------------------


def test_log_mel_puts_a_tone_in_its_band() -> None:
    rate = 8000
    t = torch.arange(rate) / rate
    low, high = torch.sin(2 * torch.pi * 300 * t), torch.sin(2 * torch.pi * 3000 * t)
    mels = log_mel(torch.stack([low, high]), rate, n_mels=32)
    assert mels.shape == (2, 32, 101)  # 10 ms hop over 1 s, centred frames
    peak_low, peak_high = mels.mean(dim=2).argmax(dim=1).tolist()
    assert peak_low < 10
    assert peak_high > 25


def test_every_mel_band_has_a_filter() -> None:
    # 128 bands from a 256-point FFT: the lowest bands are narrower than one bin.
    fb = mel_filterbank(128, 256, 8000)
    assert fb.shape == (128, 129)
    assert (fb.sum(dim=1) > 0).all()


# --- SpecAugment ------------------------------------------------------------------------------


def _batch(n: int = 64) -> torch.Tensor:
    return torch.randn(n, 1, 20, 50) + 5.0  # no zeros of its own


def test_mask_band_zeroes_exactly_the_asked_band() -> None:
    spec = _batch(2)
    out = mask_band(spec, 3, start=torch.tensor([3, 10]), width=torch.tensor([4, 7]))
    zero_frames = [(out[i] == 0).all(dim=(0, 1)).nonzero().flatten().tolist() for i in range(2)]
    assert zero_frames == [[3, 4, 5, 6], [10, 11, 12, 13, 14, 15, 16]]
    assert (out != 0).sum() == spec.numel() - 20 * (4 + 7)
    out = mask_band(spec, 2, start=torch.tensor([0, 18]), width=torch.tensor([2, 5]))
    zero_bands = [(out[i] == 0).all(dim=(0, 2)).nonzero().flatten().tolist() for i in range(2)]
    assert zero_bands == [[0, 1], [18, 19]]  # clipped at the last band


@pytest.mark.parametrize(("mask", "dim"), [(time_mask, 3), (freq_mask, 2)])
def test_random_masks_are_one_band_up_to_the_width(mask: Any, dim: int) -> None:
    spec = _batch()
    out = mask(spec, 6, generator=torch.Generator().manual_seed(0))
    assert out.shape == spec.shape
    other = 2 if dim == 3 else 3
    widths = []
    for i in range(len(spec)):
        zero = out[i, 0] == 0
        full = zero.all(dim=other - 2).nonzero().flatten()  # whole rows/columns masked
        assert zero.sum() == len(full) * spec.shape[other]  # nothing else masked
        if len(full):
            assert full.tolist() == list(range(full[0], full[0] + len(full)))  # contiguous
        widths.append(len(full))
    assert max(widths) == 6 and min(widths) == 0 and len(set(widths)) > 3


@pytest.mark.parametrize("op", [time_mask, freq_mask, time_warp])
def test_width_zero_is_identity(op: Any) -> None:
    spec = _batch()
    assert torch.equal(op(spec, 0), spec)


def test_warp_time_moves_content_and_keeps_shape() -> None:
    spec = torch.zeros(1, 1, 4, 50)
    spec[..., 20] = 1.0  # a click at frame 20
    out = warp_time(spec, center=torch.tensor([20]), shift=torch.tensor([8]))
    assert out.shape == spec.shape
    assert out[0, 0, 0].argmax().item() == 28
    assert out[0, 0, 0, 28].item() == pytest.approx(1.0)
    # The ends stay where they were.
    ramp = torch.arange(50.0).expand(1, 1, 4, 50)
    warped = warp_time(ramp, center=torch.tensor([20]), shift=torch.tensor([-8]))
    assert warped[..., 0].eq(0).all() and warped[..., -1].eq(49).all()
    assert warped[0, 0, 0, 12].item() == pytest.approx(20.0)
    assert (warped[0, 0, 0].diff() > 0).all()  # still in order: stretched, not shuffled
    assert torch.equal(warp_time(ramp, torch.tensor([20]), torch.tensor([0])), ramp)


def test_time_warp_moves_each_example_differently() -> None:
    ramp = torch.arange(60.0).expand(16, 1, 3, 60).contiguous()
    out = time_warp(ramp, 10, generator=torch.Generator().manual_seed(0))
    assert out.shape == ramp.shape
    moved = (out - ramp).abs().amax(dim=(1, 2, 3))
    assert (moved <= 10 + 1e-4).all() and (moved > 0).sum() >= 12


def test_specaugment_only_in_training_mode() -> None:
    spec = _batch()
    augment = SpecAugment(time_warp=5, time_mask=10, freq_mask=5)
    assert not torch.equal(augment(spec), spec)
    augment.eval()
    assert augment(spec) is spec


def test_fit_augments_training_batches_only(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[bool, int]] = []

    class Recording(SpecAugment):
        def forward(self, spec: torch.Tensor) -> torch.Tensor:
            seen.append((self.training, len(spec)))
            return super().forward(spec)

    monkeypatch.setattr(audio_trainer, "SpecAugment", Recording)
    list(fit({**TINY, "train.batch_size": 64}, _task(), seed=0, device="cpu"))
    assert all(training for training, _ in seen)
    assert sum(n for _, n in seen) == 270  # the training clips of tones, not the 90 val clips


# --- every knob changes training --------------------------------------------------------------

KNOB_CHANGES = [
    ({}, {"input.n_mels": 16}),
    ({}, {"model.width": 12}),
    ({}, {"model.depth": 3}),
    ({}, {"model.init": "xavier"}),
    ({}, {"model.init": "kaiming"}),
    ({}, {"model.activation": "relu-0.5"}),
    ({}, {"model.activation": "gelu"}),
    ({}, {"model.activation": "silu"}),
    ({}, {"model.activation": "mish"}),
    ({}, {"model.activation": "glu"}),
    ({}, {"model.residual": True}),
    ({"model.residual": True}, {"model.stochastic_depth": 0.3}),
    ({}, {"model.coordconv": True}),
    ({}, {"model.norm": "none"}),
    ({}, {"model.norm": "layer"}),
    ({}, {"model.dropout": 0.4}),
    ({}, {"optim.name": "adam"}),
    ({}, {"optim.name": "sgd"}),
    ({}, {"optim.lr": 1e-2}),
    ({}, {"sched.name": "constant"}),
    ({}, {"sched.name": "onecycle"}),
    ({"optim.name": "sgd"}, {"optim.momentum": 0.8}),
    ({}, {"optim.beta1": 0.8}),
    ({}, {"optim.beta2": 0.9}),
    ({}, {"optim.eps": 1e-6}),
    ({"optim.lr": 1e-2}, {"optim.weight_decay": 0.1}),
    ({}, {"loss.name": "mse"}),
    ({}, {"loss.name": "soft_f1"}),
    ({}, {"loss.label_smoothing": 0.3}),
    ({}, {"train.batch_size": 16}),
    ({}, {"train.grad_accum": 2}),
    ({}, {"train.balanced_sampler": True}),
    ({}, {"train.grad_clip": 0.05}),
    ({}, {"train.ema": True}),
    ({"train.ema": True}, {"train.ema_decay": 0.9}),
    ({}, {"aug.time_warp": 10}),
    ({}, {"aug.time_mask": 40}),
    ({}, {"aug.freq_mask": 16}),
    ({}, {"aug.mixup": True}),
    ({"aug.mixup": True}, {"aug.mixup_alpha": 1.0}),
]


def _knob_id(case: tuple[dict[str, Any], dict[str, Any]]) -> str:
    return ",".join(f"{k}={v}" for k, v in case[1].items())


def test_knob_cases_cover_the_space() -> None:
    changed = {k for _, change in KNOB_CHANGES for k in change}
    # train.amp only acts on CUDA: tested below through autocast_dtype and on a GPU.
    assert set(load_space("audio").params) - changed == {"train.amp"}


@pytest.fixture(scope="module")
def baselines() -> dict[str, list[tuple[float, float]]]:
    return {}


@pytest.mark.parametrize(("base", "change"), KNOB_CHANGES, ids=map(_knob_id, KNOB_CHANGES))
def test_knob_changes_training(
    base: dict[str, Any], change: dict[str, Any], baselines: dict[str, Any]
) -> None:
    key = repr(sorted(base.items()))
    if key not in baselines:
        baselines[key] = _metrics(base)
    assert _metrics({**base, **change}) != baselines[key]


def test_same_seed_same_metrics() -> None:
    # The control for the knob tests: an unchanged config gives the same metrics.
    config = {"aug.time_warp": 5, "aug.mixup": True, "train.ema": True}
    assert _metrics(config) == _metrics(config)
    assert _metrics(config) != _metrics(config, seed=1)


def test_coordconv_adds_a_frequency_channel() -> None:
    cfg = parse_audio_config({**TINY, "model.coordconv": True})
    model = build_audio_model(cfg.model, n_mels=32, n_frames=101, n_classes=6)
    assert isinstance(model, AudioCNN)
    assert model.blocks[0].conv.in_channels == 2
    x = torch.zeros(2, 1, 32, 101)
    with_coord = model.coord(x)
    assert with_coord.shape == (2, 2, 32, 101)
    assert torch.equal(with_coord[0, 1, :, 0], torch.linspace(-1, 1, 32))
    assert torch.equal(with_coord[0, 1, :, 0], with_coord[0, 1, :, 100])  # constant over time
    plain = build_audio_model(parse_audio_config(TINY).model, n_mels=32, n_frames=101, n_classes=6)
    assert plain.blocks[0].conv.in_channels == 1


def test_width_depth_and_deep_pooling_shape_the_cnn() -> None:
    cfg = parse_audio_config({"model.width": 4, "model.depth": 6, "input.n_mels": 16})
    model = build_audio_model(cfg.model, n_mels=16, n_frames=40, n_classes=3)
    channels = [block.conv.out_channels for block in model.blocks]
    assert channels == [4, 8, 16, 32, 32, 32]  # doubling, capped at 8x
    # Six 2x2 pools would shrink 16 mel bands below one: pooling stops at one row.
    assert model(torch.zeros(2, 1, 16, 40)).shape == (2, 3)


def test_timm_model_by_name() -> None:
    cfg = parse_audio_config({"model.name": "resnet10t", "model.coordconv": True})
    model = build_audio_model(cfg.model, n_mels=32, n_frames=64, n_classes=5)
    assert model(torch.zeros(2, 1, 32, 64)).shape == (2, 5)
    with pytest.raises(ValueError, match="model.name"):
        fit({"model.name": "no_such_net"}, _task(), device="cpu")


def test_amp_is_autocast_on_cuda_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CPU_AMP_ENV, raising=False)
    assert autocast_dtype(torch.device("cpu"), True) is None
    monkeypatch.setenv(CPU_AMP_ENV, "1")  # the explicit opt-in for bf16 on a CPU
    assert autocast_dtype(torch.device("cpu"), True) == torch.bfloat16
    assert autocast_dtype(torch.device("cpu"), False) is None
    monkeypatch.setenv(CPU_AMP_ENV, "sometimes")
    with pytest.raises(ValueError, match=CPU_AMP_ENV):
        fit({**TINY, "train.amp": True}, _task(), device="cpu")
    monkeypatch.delenv(CPU_AMP_ENV)
    if torch.cuda.is_available():
        assert autocast_dtype(torch.device("cuda"), True) in (torch.bfloat16, torch.float16)
        assert autocast_dtype(torch.device("cuda"), False) is None


def test_amp_trains_in_bf16_on_a_cpu_when_opted_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CPU_AMP_ENV, "1")
    seen: set[torch.dtype] = set()
    real = audio_trainer.build_audio_model

    def capture(*args: Any, **kwargs: Any) -> torch.nn.Module:
        model = real(*args, **kwargs)
        model.register_forward_hook(lambda m, a, out: seen.add(out.dtype) if m.training else None)
        return model

    monkeypatch.setattr(audio_trainer, "build_audio_model", capture)
    result = next(fit({**TINY, "train.amp": True}, _task(), seed=0, device="cpu"))
    assert seen == {torch.bfloat16}
    assert math.isfinite(result.train_loss) and math.isfinite(result.metrics["val_loss"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_amp_changes_training_on_cuda() -> None:
    def run(amp: bool) -> list[float]:
        cfg = {**TINY, "train.amp": amp}
        return [r.metrics["val_loss"] for r in fit(cfg, _task(), seed=0, device="cuda")]

    assert run(True) != run(False)


# --- bad knobs --------------------------------------------------------------------------------

BAD_CONFIGS = [
    ({"model.widht": 8}, "model.widht"),
    ({"loss.activation_reg": 0.1}, "loss.activation_reg"),  # a tabular knob
    ({"model.activation": "tanh"}, "model.activation"),
    ({"model.norm": "group"}, "model.norm"),
    ({"model.depth": 0}, "model.depth"),
    ({"input.n_mels": 48}, "input.n_mels"),
    ({"aug.time_mask": -1}, "aug.time_mask"),
    ({"aug.time_warp": 2.5}, "aug.time_warp"),
    ({"aug.mixup_alpha": 0.0}, "aug.mixup_alpha"),
    ({"train.amp": "yes"}, "train.amp"),
    ({"train.batch_size": 0}, "train.batch_size"),
    ({"optim.name": "adamz"}, "optim.name"),
    ({"sched.name": "linear"}, "sched.name"),
    ({"loss.name": "hinge"}, "loss.name"),
]


@pytest.mark.parametrize(("config", "knob"), BAD_CONFIGS, ids=[k for _, k in BAD_CONFIGS])
def test_bad_knob_is_a_value_error_naming_it(config: dict[str, Any], knob: str) -> None:
    with pytest.raises(ValueError, match=knob.replace(".", r"\.")):
        fit(config, _task(), seed=0, device="cpu")


def test_wrong_family_is_refused() -> None:
    with pytest.raises(ValueError, match="tabular_classification"):
        fit({}, TaskSpec(family="tabular_classification", dataset="tones"), device="cpu")


def test_divergence_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    real = audio_trainer.build_loss

    def nan_loss(cfg: Any, n_classes: int) -> Any:
        loss = real(cfg, n_classes)
        return lambda logits, y: loss(logits, y) * float("nan")

    monkeypatch.setattr(audio_trainer, "build_loss", nan_loss)
    with pytest.raises(TrainingDiverged, match="epoch 1"):
        list(fit(TINY, _task(), seed=0, device="cpu"))


# --- a study over the audio space -------------------------------------------------------------


def test_worker_runs_a_study_over_the_audio_space(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'audio.db'}"
    spec = studies.create_study(
        open_storage(url),
        {
            "space": "audio",
            "task": {"dataset": "tones", "epochs": 1},
            "budget": {"trials": 2},
            "seed": 0,
            # Keeps the sampled CNNs small enough for a CPU test.
            "fixed": {"model.width": 16, "model.depth": 2, "input.n_mels": 32},
        },
    )
    assert run_worker(url, study=spec.name, device="cpu") == 2
    status = studies.study_status(open_storage(url), spec.name)
    assert status.done
    import optuna

    trials = optuna.load_study(study_name=spec.name, storage=url).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert all(0.0 <= t.value <= 1.0 for t in trials)
