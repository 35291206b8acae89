"""The trainer hands over the final model's validation predictions (error analysis, issue 8).

Every family trains for real on small data; the predictions must agree with the metrics the
last epoch reported (so they come from the same weights), name the highest-loss examples, and
show those examples as a person would see them: images as decoded, table rows as read, files.
"""

from __future__ import annotations

import csv
import random
import wave
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import timm
from sklearn.datasets import load_diabetes
from timm.data import resolve_data_config

from hpsearch.families import TaskSpec
from hpsearch.train import WORST_KEPT, ValPredictions, train
from hpsearch.train.audio import trainer as audio_trainer
from hpsearch.train.image import trainer as image_trainer
from hpsearch.train.tabular import trainer as tabular_trainer
from hpsearch.train.tabular.data import load_tabular
from hpsearch.train.image.data import load_images, open_image_source
from hpsearch.train.core.loop import EpochResult

COLORS = {"red": "warm", "orange": "warm", "blue": "cool", "green": "leafy"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py


def _fit(fit: Any, config: dict[str, Any], task: TaskSpec) -> tuple[EpochResult, ValPredictions]:
    """Run ``fit`` to the end; its last result and the one predictions it handed over."""
    got: list[ValPredictions] = []
    results = list(fit(config, task, seed=0, device="cpu", predictions=got.append))
    assert len(got) == 1
    assert results[-1].epoch == task.epochs
    return results[-1], got[0]


def _assert_worst_are_the_highest_losses(p: ValPredictions) -> None:
    assert p.worst.dtype == np.int64
    assert len(p.worst) == min(WORST_KEPT, len(p.loss)) == len(set(p.worst.tolist()))
    worst_losses = p.loss[p.worst]
    assert (np.diff(worst_losses) <= 0).all()  # highest first
    rest = np.delete(p.loss, p.worst)
    assert len(rest) == 0 or worst_losses.min() >= rest.max()


def _assert_classification(p: ValPredictions, last: EpochResult, n_classes: int) -> None:
    """Shapes, dtypes, and agreement with the last epoch's reported metrics."""
    n = len(p.y_true)
    assert p.kind == "classification"
    assert p.meta["n_val"] == n
    assert (p.y_true.dtype, p.y_pred.dtype) == (np.int64, np.int64)
    assert (p.probs.dtype, p.loss.dtype) == (np.float32, np.float32)
    assert p.probs.shape == (n, n_classes) and p.loss.shape == (n,)
    assert len(p.class_names) == n_classes
    np.testing.assert_allclose(p.probs.sum(axis=1), 1.0, rtol=1e-5)
    assert (p.probs.argmax(axis=1) == p.y_pred).all()
    # The loss is plain CE: -log of the true class's probability.
    true_prob = p.probs[np.arange(n), p.y_true]
    np.testing.assert_allclose(p.loss, -np.log(true_prob), rtol=1e-4, atol=1e-5)
    # Computed with the very weights the last metric was: the accuracy is exactly the same.
    assert np.mean(p.y_true == p.y_pred) == last.metrics["val_accuracy"]
    assert np.mean(p.loss, dtype=np.float64) == pytest.approx(last.metrics["val_loss"], rel=1e-5)
    _assert_worst_are_the_highest_losses(p)


def _assert_round_trip(p: ValPredictions) -> None:
    back = ValPredictions.load(p.to_bytes())
    for name in ValPredictions._ARRAYS:
        mine, theirs = getattr(p, name), getattr(back, name)
        assert (mine is None) == (theirs is None), name
        if mine is not None:
            assert theirs.dtype == mine.dtype, name
            np.testing.assert_array_equal(theirs, mine)
    for name in ("kind", "family", "meta", *ValPredictions._LISTS):
        assert getattr(back, name) == getattr(p, name), name


# --- tabular ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def colors_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """240 rows: a unique `id`, a numeric `noise` with missing cells, a categorical `color`
    that decides the label, and the label in `target`."""
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("data") / "colors.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "noise", "target", "color"])
        for i in range(240):
            color = list(COLORS)[i % 4]
            # Some labels flipped, so a few rows stay wrong and have a high loss.
            label = COLORS[color] if rng.random() > 0.15 else rng.choice(["warm", "cool", "leafy"])
            noise = "" if i % 7 == 0 else f"{rng.gauss(100, 30):.4f}"
            w.writerow([i * 3 + 1000, noise, label, color])
    return path


def test_tabular_classification_predicts_with_the_ema_weights_and_keeps_raw_rows(
    colors_csv: Path,
) -> None:
    task = TaskSpec(family="tabular_classification", dataset=str(colors_csv), epochs=3)
    config = {"model.width": 32, "train.ema": True, "train.ema_decay": 0.9, "optim.lr": 3e-3}
    last, p = _fit(tabular_trainer.fit, config, task)

    assert p.family == "tabular_classification"
    assert p.class_names == ["cool", "leafy", "warm"]  # the labels, in index order
    _assert_classification(p, last, n_classes=3)
    assert p.meta["dataset"] == str(colors_csv)

    # The worst rows are the CSV's rows, in its own units: numbers as written (missing ones
    # NaN), the category as its code, whose value meta["categories"] names.
    assert p.feature_names == ["id", "noise", "color"]
    assert p.worst_rows.shape == (len(p.worst), 3) and p.worst_rows.dtype == np.float64
    with open(colors_csv, newline="") as f:
        by_id = {int(r["id"]): r for r in csv.DictReader(f)}
    colors = p.meta["categories"]["color"]
    for row, true_class in zip(p.worst_rows, p.y_true[p.worst]):
        written = by_id[int(row[0])]
        if written["noise"]:
            assert row[1] == float(written["noise"])
        else:
            assert np.isnan(row[1])
        assert colors[int(row[2]) - 1] == written["color"]
        assert p.class_names[true_class] == written["target"]
    _assert_round_trip(p)


def test_tabular_regression_predicts_in_the_targets_units() -> None:
    task = TaskSpec(family="tabular_regression", dataset="diabetes", epochs=3)
    last, p = _fit(tabular_trainer.fit_regression, {"optim.lr": 3e-3}, task)

    assert (p.kind, p.family) == ("regression", "tabular_regression")
    assert p.probs is None and p.class_names is None
    n = len(p.y_true)
    assert p.y_true.shape == p.y_pred.shape == p.loss.shape == (n,)
    np.testing.assert_allclose(p.loss, (p.y_pred - p.y_true) ** 2)
    # Scaled back by the target's training standard deviation, the metrics agree.
    y_std = load_tabular(
        "diabetes", val_fraction=task.val_fraction, normalization="standard", regression=True
    ).y_std
    rmse = np.sqrt(np.mean(p.loss))
    assert rmse / y_std == pytest.approx(last.metrics["val_rmse"], rel=1e-5)
    mae = np.mean(np.abs(p.y_pred - p.y_true))
    assert mae / y_std == pytest.approx(last.metrics["val_mae"], rel=1e-5)
    _assert_worst_are_the_highest_losses(p)

    # The targets and worst rows are the dataset's own: each worst row is a row of the table
    # (unscaled), with that row's target.
    diabetes = load_diabetes()
    assert p.feature_names == list(diabetes.feature_names)
    for row, y in zip(p.worst_rows, p.y_true[p.worst]):
        (match,) = np.flatnonzero((diabetes.data == row).all(axis=1))
        assert y == pytest.approx(diabetes.target[match], abs=1e-3)
    _assert_round_trip(p)


# --- images -----------------------------------------------------------------------------------


def test_image_predictions_keep_the_worst_images_as_decoded() -> None:
    task = TaskSpec(family="image_classification", dataset="digits", epochs=1)
    config = {
        "model.name": "test_resnet",
        "input.image_size": 16,
        "transfer.pretrained": False,
        "train.amp": False,
    }
    last, p = _fit(image_trainer.fit, config, task)

    assert p.family == "image_classification"
    assert p.class_names == [str(d) for d in range(10)]
    _assert_classification(p, last, n_classes=10)
    assert p.meta["image_size"] == 16
    # What the validation transform starts from: decoded, resized, not normalized.
    interpolation = resolve_data_config({}, model=timm.create_model("test_resnet"))
    val = load_images(
        open_image_source("digits"),
        image_size=16,
        val_fraction=0.25,
        interpolation=interpolation["interpolation"],
    ).val
    np.testing.assert_array_equal(p.y_true, val.y.numpy())
    assert p.worst_images.dtype == np.uint8
    assert p.worst_images.shape == (WORST_KEPT, 16, 16, 3)
    np.testing.assert_array_equal(p.worst_images, val.x[p.worst].permute(0, 2, 3, 1).numpy())
    assert p.worst_images.max() > 200  # ink on a dark background, in 0..255
    _assert_round_trip(p)


# --- audio ------------------------------------------------------------------------------------


def _write_wav(path: Path, signal: np.ndarray, rate: int) -> None:
    data = (np.clip(signal, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(data.tobytes())


@pytest.fixture(scope="module")
def wav_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three classes (low tone, high tone, noise) of 12 clips of 0.3 s at 8 kHz."""
    root = tmp_path_factory.mktemp("wavs")
    rng = np.random.default_rng(0)
    t = np.arange(2400) / 8000
    for name in ["low", "high", "noise"]:
        (root / name).mkdir()
        for i in range(12):
            if name == "noise":
                signal = 0.3 * rng.standard_normal(len(t))
            else:
                f = rng.uniform(200, 400) if name == "low" else rng.uniform(2000, 3000)
                signal = 0.6 * np.sin(2 * np.pi * f * t)
            _write_wav(root / name / f"{i:02d}.wav", signal, 8000)
    return root


AUDIO = {"model.width": 8, "model.depth": 2, "input.n_mels": 16, "train.batch_size": 8}


def test_audio_predictions_name_the_worst_files(wav_folder: Path) -> None:
    task = TaskSpec(family="audio_classification", dataset=str(wav_folder), epochs=2)
    last, p = _fit(audio_trainer.fit, AUDIO, task)

    assert p.family == "audio_classification"
    assert p.class_names == ["high", "low", "noise"]
    _assert_classification(p, last, n_classes=3)
    assert len(p.worst_files) == len(p.worst) == p.meta["n_val"] == 9
    for name, true_class in zip(p.worst_files, p.y_true[p.worst]):
        assert (wav_folder / name).is_file()
        assert name.split("/")[0] == p.class_names[true_class]  # its class folder
    _assert_round_trip(p)


def test_generated_audio_names_examples_by_their_index_in_the_split() -> None:
    task = TaskSpec(family="audio_classification", dataset="tones", epochs=1, val_fraction=0.1)
    last, p = _fit(audio_trainer.fit, AUDIO, task)

    _assert_classification(p, last, n_classes=6)
    assert p.worst_files == [f"tones#{i}" for i in p.worst.tolist()]


# --- through train(): pruned and resumed runs ---------------------------------------------------

TABULAR = {"model.width": 32, "train.ema": True, "train.ema_decay": 0.9, "sched.name": "cosine"}
DIGITS = TaskSpec(family="tabular_classification", dataset="digits", epochs=3)


def test_a_pruned_trial_hands_over_no_predictions() -> None:
    got: list[ValPredictions] = []

    def report(value: float, epoch: int) -> None:
        raise optuna.TrialPruned(f"pruned at epoch {epoch}")

    with pytest.raises(optuna.TrialPruned):
        train(TABULAR, DIGITS, report, seed=0, device="cpu", predictions=got.append)
    assert got == []


def _train_to_end(path: Path) -> tuple[list[int], float, list[ValPredictions]]:
    """Train :data:`DIGITS` through :func:`train` with checkpoint ``path``: the epochs it
    reported, its final accuracy, and the predictions it handed over."""
    reported: list[int] = []
    got: list[ValPredictions] = []
    final = train(
        TABULAR,
        DIGITS,
        lambda value, epoch: reported.append(epoch),
        metric="val_accuracy",
        seed=0,
        device="cpu",
        checkpoint=path,
        predictions=got.append,
    )
    return reported, final, got


def test_a_resumed_run_with_nothing_left_predicts_from_the_restored_weights(
    tmp_path: Path,
) -> None:
    reported, final, first = _train_to_end(tmp_path / "state.pt")
    assert reported == [1, 2, 3] and len(first) == 1
    assert np.mean(first[0].y_true == first[0].y_pred) == final

    reported, _, again = _train_to_end(tmp_path / "state.pt")
    assert reported == [] and len(again) == 1  # nothing trained, still predicted
    np.testing.assert_array_equal(again[0].probs, first[0].probs)
    np.testing.assert_array_equal(again[0].worst, first[0].worst)
