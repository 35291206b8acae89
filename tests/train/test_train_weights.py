"""The trainer hands over the final model's weights, and a model rebuilt from the config with
them scores what the last epoch reported (issue 18: take the model home).

Every family trains for real on small data. ``rebuild_model`` + ``load_state_dict`` +
``validate`` must give the last reported metric exactly: the weights are the ones it was
computed with (EMA weights when ``train.ema`` is on), and validation is the trainer's own.
"""

from __future__ import annotations

from typing import Any

import optuna
import pytest
import safetensors.torch
import torch

from hpsearch.families import TaskSpec
from hpsearch.train import rebuild_model, train, validate
from hpsearch.train.core.weights import safetensors_bytes

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py

TINY_IMAGE = {
    "model.name": "test_resnet",
    "input.image_size": 16,
    "transfer.pretrained": False,
    "train.ema": True,
    "train.ema_decay": 0.9,
}
TINY_AUDIO = {"model.width": 8, "model.depth": 2, "input.n_mels": 16, "train.batch_size": 8}

CASES = {
    # EMA on, and batch norm: the weights must be the EMA model's, running statistics included.
    "tabular": (
        "tabular_classification",
        "digits",
        {"model.width": 32, "model.norm": "batch", "train.ema": True, "train.ema_decay": 0.9},
        "val_accuracy",
    ),
    "regression": ("tabular_regression", "diabetes", {"model.width": 16}, "val_rmse"),
    "image": ("image_classification", "digits", TINY_IMAGE, "val_loss"),
    "audio": ("audio_classification", "tones", TINY_AUDIO, "val_accuracy"),
}


def _train(family: str, dataset: str, config: dict[str, Any], metric: str, **kw: Any) -> Any:
    task = TaskSpec(family=family, dataset=dataset, epochs=2, val_fraction=0.2)
    kept: list[dict[str, torch.Tensor]] = []
    reported: list[float] = []
    value = train(
        config,
        task,
        lambda v, _step: reported.append(v),
        metric=metric,
        seed=0,
        device="cpu",
        weights=kept.append,
        **kw,
    )
    return task, value, reported, kept


@pytest.mark.parametrize("case", list(CASES))
def test_rebuilt_model_with_the_kept_weights_scores_the_last_reported_metric(case: str) -> None:
    family, dataset, config, metric = CASES[case]
    task, value, reported, kept = _train(family, dataset, config, metric)
    assert len(kept) == 1 and reported[-1] == value
    (weights,) = kept
    assert all(t.device.type == "cpu" and t.is_contiguous() for t in weights.values())

    model = rebuild_model(config, task)
    assert set(model.state_dict()) == set(weights)  # buffers (batch-norm statistics) too
    before = validate(model, config, task, device="cpu")[metric]  # untrained: another value
    # Through the file format the worker keeps: safetensors bytes and back.
    model.load_state_dict(safetensors.torch.load(safetensors_bytes(weights)))
    assert validate(model, config, task, device="cpu")[metric] == value
    assert before != value


def test_the_weights_are_the_ema_weights_not_the_raw_ones() -> None:
    family, dataset, config, _metric = CASES["tabular"]
    task, value, _reported, (weights,) = _train(family, dataset, config, "val_loss")
    # Same seed, same batches: the run without EMA ends with this run's raw weights.
    _task, raw_value, _r, (raw,) = _train(
        family, dataset, {**config, "train.ema": False}, "val_loss"
    )
    assert raw_value != value
    model = rebuild_model(config, task)
    model.load_state_dict(weights)
    assert validate(model, config, task, device="cpu")["val_loss"] == value
    model.load_state_dict(raw)
    assert validate(model, config, task, device="cpu")["val_loss"] == raw_value


def test_a_pruned_run_hands_over_no_weights() -> None:
    task = TaskSpec(dataset="digits", epochs=3)
    kept: list[Any] = []

    def report(_value: float, step: int) -> None:
        if step == 1:
            raise optuna.TrialPruned("pruned at 1")

    with pytest.raises(optuna.TrialPruned):
        train({"model.width": 16}, task, report, seed=0, device="cpu", weights=kept.append)
    assert kept == []


def test_rebuilding_a_family_without_a_trainer_says_so() -> None:
    with pytest.raises(ValueError, match="no trainer for task family 'custom'"):
        rebuild_model({}, TaskSpec(family="custom", dataset="digits"))
