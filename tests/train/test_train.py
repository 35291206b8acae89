"""The trainer on real data: digits (bundled with scikit-learn) and a small generated CSV.

Most tests train for one or two epochs; a knob is "real" when changing it alone, under the same
seed, changes the validation losses the run reports.
"""

from __future__ import annotations

import csv
import math
import random
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from torch import nn

from hpsearch.errors import TrainingDiverged
from hpsearch.families import FAMILY_METRICS, METRICS, TaskSpec
from hpsearch.train import (
    DEFAULTS,
    DropConnectLinear,
    GeneralRelu,
    SoftF1Loss,
    build_model,
    fit,
    load_tabular,
    parse_config,
    train,
)
from hpsearch.train.core.sampling import batches_per_epoch, class_balance_weights, epoch_batches

DIGITS = TaskSpec(family="tabular_classification", dataset="digits", epochs=2)


def _task(epochs: int = 2, dataset: str = "digits") -> TaskSpec:
    return TaskSpec(family="tabular_classification", dataset=dataset, epochs=epochs)


def _val_losses(config: dict[str, Any], task: TaskSpec = DIGITS, seed: int = 0) -> list[float]:
    return [r.metrics["val_loss"] for r in fit(config, task, seed=seed, device="cpu")]


def _model(**knobs: Any) -> nn.Module:
    cfg = parse_config({f"model.{k}": v for k, v in knobs.items()})
    return build_model(cfg.model, n_numeric=64, cardinalities=(), n_classes=10)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py


@pytest.fixture(scope="module")
def category_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """240 rows: a numeric noise column, a categorical `color` that decides the label, and the
    label in a column named `target` that is not the last one."""
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("data") / "colors.csv"
    label = {"red": "warm", "orange": "warm", "blue": "cool", "green": "leafy"}
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["noise", "target", "color", "size"])
        for i in range(240):
            color = list(label)[i % 4]
            w.writerow([f"{rng.gauss(0, 1):.4f}", label[color], color, rng.randint(1, 9)])
    return path


# --- learning and reporting ---------------------------------------------------------------


def test_default_config_learns_digits() -> None:
    reported: list[tuple[float, int]] = []
    value = train({}, _task(epochs=5), lambda v, e: reported.append((v, e)), seed=0, device="cpu")
    assert value > 0.8  # chance is 0.1
    assert value == reported[-1][0]


def test_report_is_called_once_per_epoch_in_order() -> None:
    reported: list[tuple[float, int]] = []

    def report(value: float, epoch: int) -> None:
        reported.append((value, epoch))

    value = train({}, _task(epochs=3), report, metric="val_loss", seed=1)
    assert [e for _, e in reported] == [1, 2, 3]
    assert value == reported[-1][0]
    assert all(0 < v < 3 for v, _ in reported)  # a CE loss, not an accuracy


def test_an_exception_from_report_stops_training() -> None:
    class Pruned(Exception):
        pass

    epochs: list[int] = []

    def report(value: float, epoch: int) -> None:
        epochs.append(epoch)
        if epoch == 2:
            raise Pruned

    with pytest.raises(Pruned):
        train({}, _task(epochs=5), report, seed=0, device="cpu")
    assert epochs == [1, 2]


def test_every_reported_metric_is_known() -> None:
    result = next(iter(fit({}, _task(epochs=1), seed=0, device="cpu")))
    assert set(result.metrics) == set(FAMILY_METRICS["tabular_classification"]) <= set(METRICS)
    assert 0.0 <= result.metrics["val_accuracy"] <= 1.0


def test_same_seed_gives_identical_metrics() -> None:
    config = {"model.dropout": 0.3, "train.balanced_sampler": True}
    assert _val_losses(config, seed=3) == _val_losses(config, seed=3)
    assert _val_losses(config, seed=3) != _val_losses(config, seed=4)


# --- every knob changes training ----------------------------------------------------------

# (knob, value, other knobs the change needs to matter). The baseline is the same other knobs
# at their defaults, trained for two epochs under the same seed.
KNOB_CHANGES: list[tuple[str, Any, dict[str, Any]]] = [
    ("optim.lr", 1e-2, {}),
    ("optim.name", "sgd", {}),
    ("optim.name", "adam", {}),
    ("optim.name", "lamb", {}),  # any timm optimizer
    ("optim.momentum", 0.5, {"optim.name": "sgd"}),
    ("optim.beta1", 0.5, {}),
    ("optim.beta2", 0.9, {}),
    ("optim.eps", 1e-2, {}),
    ("optim.weight_decay", 0.5, {}),
    ("sched.name", "constant", {}),
    ("sched.name", "step", {}),
    ("sched.name", "onecycle", {}),
    ("sched.name", "flatcos", {}),
    ("model.width", 32, {}),
    ("model.depth", 3, {}),
    ("model.activation", "relu-0.5", {}),
    ("model.activation", "gelu", {}),
    ("model.activation", "silu", {}),
    ("model.activation", "mish", {}),
    ("model.activation", "glu", {}),
    ("model.dropout", 0.4, {}),
    ("model.dropconnect", 0.3, {}),
    ("model.norm", "none", {}),
    ("model.norm", "layer", {}),
    ("model.init", "xavier", {}),
    ("model.init", "kaiming", {}),
    ("model.residual", True, {"model.depth": 3}),
    ("model.stochastic_depth", 0.3, {"model.depth": 3, "model.residual": True}),
    ("input.normalization", "quantile", {}),
    ("input.normalization", "rankgauss", {}),
    ("loss.name", "mse", {}),
    ("loss.name", "soft_f1", {}),
    ("loss.label_smoothing", 0.2, {}),
    ("loss.activation_reg", 0.5, {}),
    ("train.batch_size", 100, {}),
    ("train.balanced_sampler", True, {}),
    ("train.grad_clip", 0.05, {}),
    ("train.ema", True, {}),
    ("train.ema_decay", 0.9, {"train.ema": True}),
    ("train.grad_accum", 3, {}),
    ("pretrain.dae_epochs", 1, {}),
    ("pretrain.noise", 0.4, {"pretrain.dae_epochs": 1}),
    ("pretrain.tie_weights", True, {"pretrain.dae_epochs": 1}),
]

_baselines: dict[str, list[float]] = {}


@pytest.mark.parametrize(("knob", "value", "context"), KNOB_CHANGES, ids=lambda x: str(x))
def test_knob_changes_training(knob: str, value: Any, context: dict[str, Any]) -> None:
    assert DEFAULTS[knob] != value
    key = repr(sorted(context.items()))
    if key not in _baselines:
        _baselines[key] = _val_losses(context)
    changed = _val_losses({**context, knob: value})
    assert all(math.isfinite(v) for v in changed)
    assert changed != _baselines[key]


def test_every_knob_has_a_change_test() -> None:
    # model.embedding_dim needs a categorical column: test_embedding_dim_changes_training.
    tested = {knob for knob, _, _ in KNOB_CHANGES} | {"model.embedding_dim"}
    assert tested == set(DEFAULTS)


def _tabular_spaces() -> list[Path]:
    files = sorted((Path(__file__).parents[2] / "search_spaces").glob("*.yaml"))
    return [f for f in files if yaml.safe_load(f.read_text())["task"] == "tabular_classification"]


@pytest.mark.parametrize("space_file", _tabular_spaces(), ids=lambda p: p.stem)
def test_tabular_spaces_search_only_knobs_the_trainer_has(space_file: Path) -> None:
    space = yaml.safe_load(space_file.read_text())
    for key, param in space["params"].items():
        assert key in DEFAULTS, f"{space_file.name}: {key} is not a trainer knob"
        values = [*param.get("choices", []), *(param[b] for b in ("low", "high") if b in param)]
        for value in [*values, param.get("default", DEFAULTS[key])]:
            parse_config({key: value})  # raises ValueError naming the key


# --- the structure the model knobs build ----------------------------------------------------


def _linears(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


@pytest.mark.parametrize("depth", [1, 2, 4])
def test_depth_is_the_number_of_hidden_layers(depth: int) -> None:
    assert len(_linears(_model(depth=depth))) == depth + 1  # plus the head


def test_width_sets_hidden_features() -> None:
    model = _model(width=48, depth=3)
    assert [m.out_features for m in _linears(model)] == [48, 48, 48, 10]
    assert model(torch.randn(5, 64), torch.zeros(5, 0, dtype=torch.long)).shape == (5, 10)


def test_glu_doubles_the_linear_output_and_halves_it_back() -> None:
    model = _model(width=32, depth=2, activation="glu").eval()
    assert [m.out_features for m in _linears(model)] == [64, 64, 10]
    hidden = model.forward_features(torch.randn(4, 64), torch.zeros(4, 0, dtype=torch.long))
    assert hidden.shape == (4, 32)


def test_relu_minus_half_shifts_relu_down() -> None:
    x = torch.tensor([-2.0, 0.0, 1.0])
    assert torch.equal(GeneralRelu(0.5)(x), torch.tensor([-0.5, -0.5, 0.5]))
    assert any(isinstance(m, GeneralRelu) for m in _model(activation="relu-0.5").modules())


@pytest.mark.parametrize(
    ("norm", "kind", "count"),
    [("batch", nn.BatchNorm1d, 3), ("layer", nn.LayerNorm, 3), ("none", nn.BatchNorm1d, 0)],
)
def test_norm_layers(norm: str, kind: type[nn.Module], count: int) -> None:
    model = _model(norm=norm, depth=3)
    assert sum(isinstance(m, kind) for m in model.modules()) == count
    if norm == "none":
        assert not any(isinstance(m, nn.LayerNorm) for m in model.modules())


def test_residual_blocks_add_their_input_back() -> None:
    model = _model(residual=True, depth=3, norm="none", dropout=0.0).eval()
    assert [b.residual for b in model.blocks] == [False, True, True]
    block = model.blocks[1]
    nn.init.zeros_(block.linear.weight)
    nn.init.zeros_(block.linear.bias)
    x = torch.randn(6, 128)
    assert torch.equal(block(x), x)  # relu(0) = 0: only the skip path is left
    assert not any(b.residual for b in _model(depth=3).blocks)


def test_stochastic_depth_drops_whole_residual_branches_in_training() -> None:
    model = _model(residual=True, depth=3, stochastic_depth=0.5, norm="none", dropout=0.0)
    drop_probs = [b.drop_path.drop_prob for b in model.blocks if hasattr(b.drop_path, "drop_prob")]
    assert drop_probs == [0.25, 0.5]  # growing with depth up to the knob's rate
    block = model.blocks[2].train()
    torch.manual_seed(0)
    x = torch.randn(200, 128)
    kept_input = (block(x) == x).all(dim=1)
    assert 0 < kept_input.sum() < 200  # some rows skipped the branch, some did not
    # Without residual connections the knob has nothing to drop.
    plain = _model(depth=3, stochastic_depth=0.5)
    assert not any(hasattr(b.drop_path, "drop_prob") for b in plain.blocks)


def test_dropconnect_drops_weights_only_in_training() -> None:
    layer = DropConnectLinear(16, 16, p=0.5)
    x = torch.randn(3, 16)
    torch.manual_seed(0)
    assert not torch.equal(layer.train()(x), layer(x))
    assert torch.equal(layer.eval()(x), nn.functional.linear(x, layer.weight, layer.bias))
    model = _model(dropconnect=0.2)
    assert [m.p for m in model.blocks.modules() if isinstance(m, DropConnectLinear)] == [0.2, 0.2]


@pytest.mark.parametrize("init", ["xavier", "kaiming"])
def test_init_zeroes_biases_and_changes_weights(init: str) -> None:
    torch.manual_seed(0)
    default = _model()
    torch.manual_seed(0)
    model = _model(init=init)
    for a, b in zip(_linears(default), _linears(model)):
        assert not torch.equal(a.weight, b.weight)
        assert torch.count_nonzero(b.bias) == 0


# --- data --------------------------------------------------------------------------------


def test_digits_split_is_stratified_and_shared_across_trials() -> None:
    data = load_tabular("digits", val_fraction=0.25, normalization="standard")
    assert data.train.x_num.shape[1] == 64 and data.n_classes == 10
    assert len(data.train.y) + len(data.val.y) == 1797
    assert len(data.val.y) == pytest.approx(0.25 * 1797, abs=1)
    assert set(data.val.y.tolist()) == set(range(10))
    assert abs(data.train.x_num.mean()) < 1e-3  # standardized on the training rows
    again = load_tabular("digits", val_fraction=0.25, normalization="standard")
    assert again is data  # cached in-process


@pytest.mark.parametrize("normalization", ["quantile", "rankgauss"])
def test_quantile_normalizations(normalization: str) -> None:
    x = load_tabular("digits", val_fraction=0.25, normalization=normalization).train.x_num
    if normalization == "quantile":
        assert x.min() >= 0 and x.max() <= 1
    else:
        assert x.min() < -1 and x.max() > 1  # normal output distribution


def test_csv_categorical_column_gets_an_embedding(category_csv: Path) -> None:
    data = load_tabular(str(category_csv), val_fraction=0.25, normalization="standard")
    assert data.n_classes == 3  # the `target` column, not the last one
    assert data.train.x_num.shape[1] == 2 and data.train.x_cat.shape[1] == 1
    assert data.cardinalities == (5,)  # four colors and the "unseen" code
    cfg = parse_config({"model.embedding_dim": 3})
    model = build_model(cfg.model, n_numeric=2, cardinalities=data.cardinalities, n_classes=3)
    assert [(e.num_embeddings, e.embedding_dim) for e in model.embeddings] == [(5, 3)]
    assert _linears(model)[0].in_features == 2 + 3
    # Only the color decides the label, so the embedding must carry it.
    task = _task(epochs=8, dataset=str(category_csv))
    value = train({"optim.lr": 1e-2}, task, lambda v, e: None, seed=0)
    assert value > 0.9


def test_embedding_dim_changes_training(category_csv: Path) -> None:
    task = _task(dataset=str(category_csv))
    assert _val_losses({"model.embedding_dim": 2}, task) != _val_losses({}, task)


def test_balanced_sampler_evens_out_classes() -> None:
    y = torch.tensor([0] * 900 + [1] * 100)
    gen = torch.Generator().manual_seed(0)
    batches = epoch_batches(1000, 100, generator=gen, weights=class_balance_weights(y))
    drawn = y[torch.cat(batches)]
    assert 400 < int((drawn == 1).sum()) < 600  # 10% of the rows, about half the draws


def test_a_lone_last_row_is_not_a_batch() -> None:
    # BatchNorm cannot train on one row, so 129 rows in batches of 64 make two batches.
    assert batches_per_epoch(129, 64) == 2
    batches = epoch_batches(129, 64, generator=torch.Generator().manual_seed(0))
    assert [len(b) for b in batches] == [64, 64]
    assert batches_per_epoch(130, 64) == 3


# --- losses ------------------------------------------------------------------------------


def test_soft_f1_is_low_for_confident_right_answers() -> None:
    target = torch.tensor([0, 1, 2, 1])
    right = nn.functional.one_hot(target, 3).float() * 20
    wrong = nn.functional.one_hot((target + 1) % 3, 3).float() * 20
    loss = SoftF1Loss(3)
    assert loss(right, target) < 0.01 < 0.99 < loss(wrong, target)


# --- schedules ---------------------------------------------------------------------------


def _lrs(schedule: str, epochs: int = 4) -> list[float]:
    config = {"sched.name": schedule}
    return [r.lr for r in fit(config, _task(epochs=epochs), seed=0, device="cpu")]


def test_schedules_change_the_lr_over_epochs() -> None:
    lr = DEFAULTS["optim.lr"]
    assert _lrs("constant") == [lr] * 4
    cosine = _lrs("cosine")
    assert all(a > b for a, b in zip(cosine, cosine[1:])) and cosine[-1] < lr / 10
    step = _lrs("step", epochs=3)
    assert step == pytest.approx([lr, lr / 10, lr / 100])
    onecycle = _lrs("onecycle", epochs=8)  # warms up over the first 30% of the run
    assert onecycle[0] < onecycle[1] < max(onecycle) and onecycle[-1] < lr / 100
    assert max(onecycle) == pytest.approx(lr, rel=0.2)
    flatcos = _lrs("flatcos")
    assert flatcos[:2] == [lr, lr] and flatcos[-1] < lr / 10


# --- failures ------------------------------------------------------------------------------


def test_huge_lr_raises_training_diverged() -> None:
    with pytest.raises(TrainingDiverged, match=r"epoch 1"):
        train({"optim.name": "sgd", "optim.lr": 1e6}, DIGITS, lambda v, e: None, seed=0)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"metric": "val_f1"}, "val_f1"),
        ({"config": {"model.activation": "tanh"}}, "tanh"),
        ({"config": {"optim.name": "nosuchopt"}}, "nosuchopt"),
        ({"config": {"optim.lrr": 1e-3}}, "optim.lrr"),
        ({"config": {"train.batch_size": "big"}}, "train.batch_size"),
        ({"config": {"model.dropout": 1.5}}, "model.dropout"),
        ({"task": _task(dataset="/no/such/file.csv")}, "/no/such/file.csv"),
        ({"task": TaskSpec(family="video_classification")}, "video_classification"),
    ],
)
def test_bad_input_raises_value_error_naming_it(kwargs: dict[str, Any], named: str) -> None:
    args: dict[str, Any] = {"config": {}, "task": DIGITS, "metric": "val_accuracy", **kwargs}
    with pytest.raises(ValueError, match=named):
        train(args["config"], args["task"], lambda v, e: None, metric=args["metric"], device="cpu")


# --- CUDA --------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_trains_on_cuda() -> None:
    reported: list[float] = []
    # A short run: a quick EMA, so the averaged weights have caught up by the last epoch.
    config = {
        "train.ema": True,
        "train.ema_decay": 0.9,
        "model.residual": True,
        "model.depth": 3,
        "train.balanced_sampler": True,
    }
    value = train(config, _task(epochs=3), lambda v, e: reported.append(v), seed=0, device="cuda")
    assert len(reported) == 3 and value > 0.8
