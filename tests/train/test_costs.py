"""Cost metrics: every family's trainer measures what its model costs (parameters, size on disk,
latency per sample, peak memory of training), reports them with every epoch, and hands the
fixed ones to ``train(..., costs=...)`` before anything trains.

Tiny models on the bundled data, one epoch, CPU, one thread.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from hpsearch import studies
from hpsearch.db.storage import open_storage
from hpsearch.errors import SpecError
from hpsearch.families import COST_METRICS, FAMILY_METRICS, METRICS, TaskSpec
from hpsearch.train import fitter, model_costs, train
from hpsearch.train.audio import trainer as audio_trainer
from hpsearch.train.audio.config import parse_audio_config
from hpsearch.train.audio.data import load_audio_data
from hpsearch.train.audio.model import build_audio_model
from hpsearch.train.core.config import parse_config, parse_regression_config
from hpsearch.train.core.costs import measure_latency_ms
from hpsearch.train.image import trainer as image_trainer
from hpsearch.train.image.config import parse_image_config
from hpsearch.train.image.data import open_image_source
from hpsearch.train.image.model import build_image_model
from hpsearch.train.tabular.data import load_tabular
from hpsearch.train.tabular import trainer as tabular_trainer
from hpsearch.train.tabular.model import build_model
from hpsearch.worker import run_worker

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py

MLP = {"model.width": 16, "model.depth": 1}
#: family -> (config, dataset): the fastest configs of the other train tests.
CASES: dict[str, tuple[dict[str, Any], str]] = {
    "tabular_classification": (MLP, "digits"),
    "tabular_regression": (MLP, "diabetes"),
    "image_classification": (
        {
            "model.name": "test_resnet",
            "input.image_size": 16,
            "transfer.pretrained": False,
            "train.amp": False,
        },
        "digits",
    ),
    "audio_classification": ({"model.width": 8, "model.depth": 2, "input.n_mels": 32}, "tones"),
}
FIXED = {"params", "size_mb", "latency_ms"}


def _task(family: str, epochs: int = 1) -> TaskSpec:
    return TaskSpec(family=family, dataset=CASES[family][1], epochs=epochs)


def _same_model(family: str, config: dict[str, Any], task: TaskSpec) -> nn.Module:
    """The family's model built as its trainer builds it, straight from the family's builders."""
    if family.startswith("tabular"):
        regression = family == "tabular_regression"
        cfg = parse_regression_config(config) if regression else parse_config(config)
        data = load_tabular(
            task.dataset,
            val_fraction=task.val_fraction,
            normalization=cfg.input.normalization,
            regression=regression,
        )
        return build_model(
            cfg.model,
            n_numeric=data.train.x_num.shape[1],
            cardinalities=data.cardinalities,
            n_classes=1 if regression else data.n_classes,
        )
    if family == "image_classification":
        image_cfg = parse_image_config(config)
        source = open_image_source(task.dataset)
        return build_image_model(
            image_cfg.model, image_cfg.transfer, n_classes=source.n_classes, weights=None
        )
    audio_cfg = parse_audio_config(config)
    audio = load_audio_data(task.dataset, n_mels=audio_cfg.input.n_mels, val_fraction=0.25)
    _, _, n_mels, n_frames = audio.train.x.shape
    return build_audio_model(
        audio_cfg.model, n_mels=n_mels, n_frames=n_frames, n_classes=audio.n_classes
    )


def test_cost_metrics_are_known_metrics_after_each_familys_own() -> None:
    assert all(METRICS[name] == "minimize" for name in COST_METRICS)
    for family, metrics in FAMILY_METRICS.items():
        assert metrics[-len(COST_METRICS) :] == COST_METRICS, family
    # The default metric of each family is still its quality metric.
    assert FAMILY_METRICS["tabular_classification"][0] == "val_accuracy"
    assert FAMILY_METRICS["tabular_regression"][0] == "val_rmse"


@pytest.mark.parametrize("family", list(CASES))
def test_every_family_measures_what_its_model_costs(family: str, tmp_path: Path) -> None:
    config, _ = CASES[family]
    task = _task(family)
    handed: list[dict[str, float]] = []
    (result,) = list(fitter(family)(config, task, seed=0, device="cpu", costs=handed.append))

    assert set(result.metrics) == set(FAMILY_METRICS[family])
    m = result.metrics
    model = _same_model(family, config, task)
    assert m["params"] == sum(p.numel() for p in model.parameters())
    path = tmp_path / "model.safetensors"
    save_file(model.state_dict(), path)
    assert round(m["size_mb"] * 1e6) == path.stat().st_size
    assert 0 < m["latency_ms"] < 10_000 and math.isfinite(m["latency_ms"])
    assert 0 < m["peak_mem_mb"] < 1e6 and math.isfinite(m["peak_mem_mb"])
    # The fixed costs went to the callback once, as the epoch reported them.
    assert handed == [{k: m[k] for k in FIXED}]
    # Checking a constraint before a trial: the same numbers, with nothing trained.
    assert model_costs(config, task) == {"params": m["params"], "size_mb": m["size_mb"]}


def test_a_wider_mlp_costs_more() -> None:
    task = _task("tabular_classification")
    narrow, wide = (
        list(fitter("tabular_classification")(config, task, seed=0, device="cpu"))[-1].metrics
        for config in (MLP, {**MLP, "model.width": 64})
    )
    assert wide["params"] > narrow["params"]
    assert wide["size_mb"] > narrow["size_mb"]
    assert model_costs({**MLP, "model.width": 64}, task)["params"] == wide["params"]


def test_costs_come_once_before_the_first_report_and_a_cost_can_be_the_metric() -> None:
    events: list[tuple[str, Any]] = []
    final = train(
        MLP,
        _task("tabular_classification", epochs=2),
        lambda value, epoch: events.append(("report", (epoch, value))),
        metric="params",
        seed=0,
        device="cpu",
        costs=lambda costs: events.append(("costs", costs)),
    )
    kinds = [kind for kind, _ in events]
    assert kinds == ["costs", "report", "report"]
    costs = events[0][1]
    assert set(costs) == FIXED
    # Measured once: both epochs report the same parameter count, the one handed over.
    assert [value for _, (_, value) in events[1:]] == [costs["params"]] * 2 == [final] * 2


def test_peak_memory_is_read_after_every_epoch() -> None:
    results = list(
        fitter("tabular_classification")(MLP, _task("tabular_classification", 3), device="cpu")
    )
    peaks = [r.metrics["peak_mem_mb"] for r in results]
    assert len(peaks) == 3 and all(p > 0 for p in peaks)
    assert peaks == sorted(peaks)  # a peak never goes down within a run
    # The fixed costs are measured once, so every epoch carries the same values.
    assert len({tuple(r.metrics[k] for k in sorted(FIXED)) for r in results}) == 1


class _Breaks(Exception):
    pass


#: Where each family's trainer gets its model builder from.
BUILDERS = {
    "tabular_classification": (tabular_trainer, "build_model"),
    "tabular_regression": (tabular_trainer, "build_model"),
    "image_classification": (image_trainer, "build_image_model"),
    "audio_classification": (audio_trainer, "build_audio_model"),
}


@pytest.mark.parametrize("family", list(CASES))
def test_a_raising_costs_callback_stops_training_before_anything_trains(
    family: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The model the trainer builds, and its weights (batch-norm statistics included) as built.
    module, name = BUILDERS[family]
    real = getattr(module, name)
    built: list[tuple[nn.Module, dict[str, torch.Tensor]]] = []

    def capture(*args: Any, **kwargs: Any) -> nn.Module:
        model = real(*args, **kwargs)
        built.append((model, {k: v.clone() for k, v in model.state_dict().items()}))
        return model

    monkeypatch.setattr(module, name, capture)
    config, _ = CASES[family]
    reports: list[int] = []
    seen: list[dict[str, float]] = []

    def over_budget(costs: dict[str, float]) -> None:
        seen.append(costs)
        raise _Breaks(f"params {costs['params']} > 10")

    with pytest.raises(_Breaks, match="params"):
        train(
            # The tabular DAE pretraining would train the encoder before the first epoch.
            {**config, "pretrain.dae_epochs": 1} if family.startswith("tabular") else config,
            _task(family, epochs=3),
            lambda value, epoch: reports.append(epoch),
            metric="val_loss",
            seed=0,
            device="cpu",
            costs=over_budget,
        )
    assert len(seen) == 1
    assert reports == []
    ((model, as_built),) = built
    assert all(torch.equal(v, as_built[k]) for k, v in model.state_dict().items())


def test_a_resumed_run_hands_its_costs_over_again_before_its_next_epoch(tmp_path: Path) -> None:
    checkpoint = tmp_path / "run.ckpt"
    task = _task("tabular_classification", epochs=2)

    class _Stop(Exception):
        pass

    def stop_after_first(value: float, epoch: int) -> None:
        raise _Stop

    first: list[dict[str, float]] = []
    with pytest.raises(_Stop):
        train(MLP, task, stop_after_first, metric="val_loss", seed=0, device="cpu",
              checkpoint=checkpoint, costs=first.append)  # fmt: skip
    events: list[str] = []
    train(MLP, task, lambda value, epoch: events.append(f"report {epoch}"), metric="val_loss",
          seed=0, device="cpu", checkpoint=checkpoint,
          costs=lambda costs: events.append("costs"))  # fmt: skip
    assert len(first) == 1
    assert events == ["costs", "report 2"]


def test_a_study_may_minimize_a_cost_and_a_real_worker_reports_it(sqlite_url: str) -> None:
    spec = {
        "name": "small",
        "space": "tabular",
        "metric": "params",
        "task": {"dataset": "digits", "epochs": 1},
        "budget": {"trials": 2},
        "seed": 0,
    }
    assert studies.resolve_spec(spec).direction == "minimize"
    with pytest.raises(SpecError, match="contradicts metric 'params'"):
        studies.resolve_spec({**spec, "direction": "maximize"})
    studies.create_study(open_storage(sqlite_url), spec)

    assert run_worker(sqlite_url, study="small", device="cpu") == 2

    trials = optuna.load_study(study_name="small", storage=sqlite_url).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    for t in trials:
        assert t.value == model_costs(t.user_attrs["config"], TaskSpec(dataset="digits"))["params"]


def test_latency_is_the_median_forward_time_and_a_slow_model_costs_few_runs() -> None:
    calls = []

    def slow_forward() -> None:
        calls.append(1)
        time.sleep(0.05)

    latency = measure_latency_ms(slow_forward, torch.device("cpu"), budget_s=0.1)
    assert latency >= 50
    # Warm-up and the timed runs each stop once they have spent the budget: 2 + 2 runs, not 13.
    assert len(calls) == 4


def test_model_costs_of_a_family_without_a_trainer_says_which_are_trained() -> None:
    with pytest.raises(ValueError, match="video_classification.*tabular_classification"):
        model_costs({}, TaskSpec(family="video_classification"))
