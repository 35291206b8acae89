"""Resumable training: a run stopped after an epoch and started again with the same checkpoint
path continues exactly where it stopped, and a checkpoint it cannot use is ignored.

A stop is simulated by a ``report`` that raises after epoch 2, as a worker killed there would
leave things: the checkpoint of epoch 2 on disk, epochs 1-2 reported.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import torch

from hpsearch.families import TaskSpec
from hpsearch.train import train
from hpsearch.train.core import loop
from hpsearch.train.tabular import trainer as tabular

#: Small, but with every piece of state a resume must restore: dropout (torch's RNG), EMA
#: weights, BatchNorm statistics, a timm schedule, Adam moments, the data-order generator.
TABULAR = {
    "model.width": 32,
    "model.dropout": 0.2,
    "train.ema": True,
    "train.ema_decay": 0.9,
    "sched.name": "cosine",
    "train.batch_size": 128,
}
DIGITS = TaskSpec(family="tabular_classification", dataset="digits", epochs=4)


class Stopped(Exception):
    """Raised by a report to stop a run the way a killed worker would."""


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py


def _run(
    config: dict[str, Any],
    task: TaskSpec,
    *,
    checkpoint: Path | None = None,
    metric: str = "val_loss",
    seed: int = 0,
    stop_after: int | None = None,
    reported: dict[int, float] | None = None,
) -> tuple[float, dict[int, float]]:
    """Train through :func:`train`; the final value and what was reported, epoch -> value.

    With ``stop_after`` the report of that epoch raises :class:`Stopped`."""
    reported = {} if reported is None else reported

    def report(value: float, epoch: int) -> None:
        reported[epoch] = value
        if epoch == stop_after:
            raise Stopped

    final = train(
        config, task, report, metric=metric, seed=seed, device="cpu", checkpoint=checkpoint
    )
    return final, reported


def _stop(config: dict[str, Any], task: TaskSpec, path: Path, **kw: Any) -> dict[int, float]:
    """Run with checkpoint ``path`` until the report of epoch 2 stops it; what it reported."""
    reported: dict[int, float] = {}
    with pytest.raises(Stopped):
        _run(config, task, checkpoint=path, stop_after=2, reported=reported, **kw)
    return reported


def _assert_resumes(
    config: dict[str, Any], task: TaskSpec, path: Path, metric: str = "val_loss"
) -> None:
    full_final, full = _run(config, task, metric=metric)
    first = _stop(config, task, path, metric=metric)
    assert first == {1: full[1], 2: full[2]}
    final, resumed = _run(config, task, checkpoint=path, metric=metric)
    # Only the epochs after the saved one are reported, and each is what the uninterrupted
    # run reported: the model, optimizer, schedule, EMA and random streams were all restored.
    assert list(resumed) == list(range(3, task.epochs + 1))
    assert resumed == {e: v for e, v in full.items() if e >= 3}
    assert final == full_final
    # The file stays (the worker decides when to delete it), and no temp file is left behind.
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_tabular_run_resumes_exactly_after_a_stop(tmp_path: Path) -> None:
    # The folder does not exist yet: the trainer creates it.
    path = tmp_path / "trial-7" / "attempt" / "state.pt"
    _assert_resumes(TABULAR, DIGITS, path)


def test_resume_without_the_random_states_would_differ(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The control for the test above: dropout draws from torch's global RNG, so a resume that
    # forgot to restore it reports other values. The exact equality above is not a given.
    _, full = _run(TABULAR, DIGITS)
    path = tmp_path / "state.pt"
    _stop(TABULAR, DIGITS, path)
    torch.manual_seed(123)
    monkeypatch.setattr(loop, "restore_rng", lambda state, device: None)
    _, resumed = _run(TABULAR, DIGITS, checkpoint=path)
    assert list(resumed) == [3, 4]
    assert resumed != {3: full[3], 4: full[4]}


def test_resumed_tabular_run_skips_pretraining(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = {**TABULAR, "pretrain.dae_epochs": 1, "pretrain.noise": 0.2}
    full_final, full = _run(config, DIGITS)
    path = tmp_path / "state.pt"
    _stop(config, DIGITS, path)

    calls: list[int] = []
    real = tabular.pretrain_dae

    def counting(*args: Any, **kwargs: Any) -> list[float]:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(tabular, "pretrain_dae", counting)
    final, resumed = _run(config, DIGITS, checkpoint=path)
    assert calls == []  # the pretrained encoder came back with the checkpoint's weights
    assert resumed == {3: full[3], 4: full[4]}
    assert final == full_final


def test_regression_run_resumes_exactly(tmp_path: Path) -> None:
    task = TaskSpec(family="tabular_regression", dataset="diabetes", epochs=4)
    config = {**TABULAR, "loss.name": "huber", "sched.name": "onecycle"}
    _assert_resumes(config, task, tmp_path / "state.pt", "val_rmse")


def test_audio_run_resumes_exactly(tmp_path: Path) -> None:
    # SpecAugment draws from the run's generator and Mixup from torch's global RNG.
    config = {
        "model.width": 8,
        "model.depth": 2,
        "input.n_mels": 32,
        "aug.mixup": True,
        "aug.time_warp": 2,
        "train.ema": True,
        "sched.name": "flatcos",
    }
    task = TaskSpec(family="audio_classification", dataset="tones", epochs=3)
    _assert_resumes(config, task, tmp_path / "state.pt")


def test_image_run_resumes_exactly(tmp_path: Path) -> None:
    # timm's Mixup draws from NumPy's global RNG, the PIL transforms from Python's and torch's.
    config = {
        "model.name": "test_resnet",
        "input.image_size": 16,
        "transfer.pretrained": False,
        "train.amp": False,
        "aug.mixup": True,
        "aug.cutout": 0.25,
        "sched.name": "step",
    }
    task = TaskSpec(family="image_classification", dataset="digits", epochs=3)
    _assert_resumes(config, task, tmp_path / "state.pt")


def test_a_finished_run_resumes_to_its_final_value(tmp_path: Path) -> None:
    # A worker killed after the last epoch, before the trial was told: the retry trains
    # nothing, reports nothing, and returns the final value.
    path = tmp_path / "state.pt"
    final, reported = _run(TABULAR, DIGITS, checkpoint=path)
    assert list(reported) == [1, 2, 3, 4]
    again, reported_again = _run(TABULAR, DIGITS, checkpoint=path)
    assert reported_again == {}
    assert again == final


@pytest.mark.parametrize(
    ("change", "value"),
    [("config", {**TABULAR, "model.width": 16}), ("seed", 1), ("metric", "val_accuracy")],
)
def test_a_checkpoint_of_another_run_is_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, change: str, value: Any
) -> None:
    path = tmp_path / "state.pt"
    _stop(TABULAR, DIGITS, path)
    run: dict[str, Any] = {"config": TABULAR, "seed": 0, "metric": "val_loss"}
    run[change] = value
    config = run.pop("config")
    fresh_final, fresh = _run(config, DIGITS, **run)
    with caplog.at_level(logging.WARNING, logger="hpsearch.train.core.checkpoint"):
        final, reported = _run(config, DIGITS, checkpoint=path, **run)
    assert reported == fresh  # from epoch 1, as if there were no file
    assert final == fresh_final
    assert any("another config" in r.getMessage() for r in caplog.records)
    # The run overwrote the file with its own state: a retry of it now has nothing left to do.
    again, reported_again = _run(config, DIGITS, checkpoint=path, **run)
    assert reported_again == {}
    assert again == fresh_final


def _truncated(path: Path) -> None:
    _stop(TABULAR, DIGITS, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garbage(path: Path) -> None:
    path.write_bytes(b"this is not a checkpoint\x00\xff" * 10)


def _not_a_dict(path: Path) -> None:
    torch.save([torch.zeros(3)], path)


def _empty(path: Path) -> None:
    path.write_bytes(b"")


@pytest.mark.parametrize("spoil", [_truncated, _garbage, _not_a_dict, _empty])
def test_a_corrupt_checkpoint_is_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, spoil: Any
) -> None:
    path = tmp_path / "state.pt"
    spoil(path)
    fresh_final, fresh = _run(TABULAR, DIGITS)
    with caplog.at_level(logging.WARNING, logger="hpsearch.train.core.checkpoint"):
        final, reported = _run(TABULAR, DIGITS, checkpoint=path)
    assert reported == fresh
    assert final == fresh_final
    assert any("ignoring checkpoint" in r.getMessage() for r in caplog.records)


def test_checkpoint_loads_with_weights_only(tmp_path: Path) -> None:
    path = tmp_path / "state.pt"
    _stop(TABULAR, DIGITS, path)
    state = torch.load(path, weights_only=True)
    assert state["epoch"] == 2
    assert state["ema"] is not None  # train.ema is on: the EMA weights are saved too
