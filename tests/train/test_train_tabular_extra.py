"""Tabular regression, named targets and Parquet, and denoising-autoencoder pretraining."""

from __future__ import annotations

import csv
import random
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from hpsearch.errors import SpecError
from hpsearch.families import COST_METRICS, TaskSpec
from hpsearch.studies import resolve_spec
from hpsearch.train import build_model, load_tabular, parse_config, train
from hpsearch.train.core.config import REGRESSION_DEFAULTS, parse_regression_config
from hpsearch.train.core.pretrain import DenoisingAutoencoder, pretrain_dae
from hpsearch.train.tabular.trainer import fit, fit_regression

DIABETES = TaskSpec(family="tabular_regression", dataset="diabetes", epochs=2)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py


def _rmses(config: dict[str, Any], task: TaskSpec = DIABETES) -> list[float]:
    return [r.metrics["val_rmse"] for r in fit_regression(config, task, seed=0, device="cpu")]


@pytest.fixture(scope="module")
def numbers_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 rows: `y` = 3a - 2b + noise (named, not last), a categorical `kind`, and a numeric
    last column `z` unrelated to `y`."""
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("data") / "numbers.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["a", "y", "b", "kind", "z"])
        for i in range(200):
            a, b = rng.gauss(0, 1), rng.gauss(0, 1)
            w.writerow(
                [
                    f"{a:.4f}",
                    f"{3 * a - 2 * b + rng.gauss(0, 0.1):.4f}",
                    f"{b:.4f}",
                    "xyz"[i % 3],
                    f"{rng.uniform(0, 10):.3f}",
                ]
            )
    return path


# --- regression ---------------------------------------------------------------------------


def test_regression_learns_diabetes() -> None:
    # Predicting the training mean scores about 1.0 on the standardized target.
    task = DIABETES.model_copy(update={"epochs": 15})
    final = _rmses({}, task)[-1]
    assert final < 0.85
    data = load_tabular("diabetes", val_fraction=0.25, normalization="standard", regression=True)
    assert abs(float(data.train.y.mean())) < 1e-5 and abs(float(data.train.y.std()) - 1) < 1e-4


def test_regression_reports_rmse_and_mae() -> None:
    result = next(iter(fit_regression({}, DIABETES, seed=0, device="cpu")))
    assert set(result.metrics) == {"val_rmse", "val_mae", "val_loss", *COST_METRICS}
    assert result.metrics["val_rmse"] ** 2 == pytest.approx(result.metrics["val_loss"])
    assert result.metrics["val_mae"] <= result.metrics["val_rmse"]


@pytest.mark.parametrize("loss", ["huber", "l1"])
def test_regression_loss_changes_training(loss: str) -> None:
    assert _rmses({"loss.name": loss}) != _rmses({"loss.name": "mse"})


def test_regression_refuses_classification_knobs_and_metrics() -> None:
    with pytest.raises(ValueError, match="loss.label_smoothing"):
        parse_regression_config({"loss.label_smoothing": 0.1})
    with pytest.raises(ValueError, match="loss.name"):
        parse_regression_config({"loss.name": "ce"})
    with pytest.raises(ValueError, match="val_accuracy"):
        train({}, DIABETES, lambda v, e: None, metric="val_accuracy", device="cpu")
    digits = TaskSpec(family="tabular_classification", dataset="digits", epochs=1)
    with pytest.raises(ValueError, match="val_rmse"):
        train({}, digits, lambda v, e: None, metric="val_rmse", device="cpu")
    with pytest.raises(ValueError, match="tabular_regression"):
        list(fit({}, TaskSpec(family="tabular_classification", dataset="diabetes"), seed=0))


def test_regression_space_searches_only_regression_knobs() -> None:
    space = yaml.safe_load(
        (Path(__file__).parents[2] / "search_spaces" / "tabular_regression.yaml").read_text()
    )
    for key, param in space["params"].items():
        assert key in REGRESSION_DEFAULTS, key
        values = [*param.get("choices", []), *(param[b] for b in ("low", "high") if b in param)]
        for value in [*values, param["default"]]:
            parse_regression_config({key: value})


def test_regression_study_metric_defaults_and_is_checked() -> None:
    spec = resolve_spec({"space": "tabular_regression", "task": {"dataset": "diabetes"}})
    assert (spec.metric, spec.direction) == ("val_rmse", "minimize")
    assert resolve_spec({"space": "tabular"}).metric == "val_accuracy"
    with pytest.raises(SpecError, match="use metric val_rmse or val_mae"):
        resolve_spec({"space": "tabular_regression", "metric": "val_accuracy"})


def test_regression_study_runs_two_trials(tmp_path: Path) -> None:
    import optuna

    from hpsearch.db.storage import open_storage
    from hpsearch.studies import create_study
    from hpsearch.worker import run_worker

    storage = f"sqlite:///{tmp_path / 's.db'}"
    create_study(
        open_storage(storage),
        {
            "name": "reg",
            "space": "tabular_regression",
            "metric": "val_rmse",
            "task": {"dataset": "diabetes", "epochs": 1},
            "budget": {"trials": 2},
            "seed": 0,
        },
    )
    assert run_worker(storage, study="reg", device="cpu") == 2

    trials = optuna.load_study(study_name="reg", storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    assert all(0 < t.value < 2 for t in trials)


# --- named target and Parquet ---------------------------------------------------------------


def test_named_target_column(numbers_csv: Path) -> None:
    named = load_tabular(
        str(numbers_csv), val_fraction=0.25, normalization="standard", target="y", regression=True
    )
    assert named.train.x_num.shape[1] == 3  # a, b, z
    assert named.cardinalities == (4,)  # kind: three values + unseen
    task = TaskSpec(family="tabular_regression", dataset=str(numbers_csv), target="y", epochs=10)
    assert _rmses({}, task)[-1] < 0.5  # y is a linear function of a and b


def test_last_column_is_the_default_target(numbers_csv: Path) -> None:
    last = load_tabular(
        str(numbers_csv), val_fraction=0.25, normalization="standard", regression=True
    )
    assert last.train.x_num.shape[1] == 3  # a, y, b
    assert last.y_mean == pytest.approx(5, abs=1)  # z is uniform on [0, 10]
    with pytest.raises(ValueError, match="'nope' is not a column"):
        load_tabular(
            str(numbers_csv),
            val_fraction=0.25,
            normalization="standard",
            target="nope",
            regression=True,
        )
    with pytest.raises(ValueError, match="must be a number"):
        load_tabular(
            str(numbers_csv),
            val_fraction=0.25,
            normalization="standard",
            target="kind",
            regression=True,
        )


def test_parquet_reads_like_csv_or_says_what_to_install(numbers_csv: Path, tmp_path: Path) -> None:
    path = tmp_path / "numbers.parquet"
    try:
        import pandas as pd
        import pyarrow  # noqa: F401
    except ImportError:
        path.write_bytes(b"PAR1")
        with pytest.raises(ValueError, match="pip install pandas pyarrow"):
            load_tabular(str(path), val_fraction=0.25, normalization="standard")
        return
    pd.read_csv(numbers_csv).to_parquet(path)
    kw: dict[str, Any] = {
        "val_fraction": 0.25,
        "normalization": "standard",
        "target": "y",
        "regression": True,
    }
    from_parquet = load_tabular(str(path), **kw)
    from_csv = load_tabular(str(numbers_csv), **kw)
    assert from_parquet.train.y.tolist() == pytest.approx(from_csv.train.y.tolist())
    assert from_parquet.cardinalities == from_csv.cardinalities


# --- denoising-autoencoder pretraining ------------------------------------------------------


def _mlp(**knobs: Any) -> torch.nn.Module:
    cfg = parse_config({f"model.{k}": v for k, v in knobs.items()})
    return build_model(cfg.model, n_numeric=10, cardinalities=(4,), n_classes=1)


def test_dae_pretraining_changes_the_encoder_and_learns() -> None:
    torch.manual_seed(0)
    model = _mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x_num, x_cat = torch.randn(256, 10), torch.randint(1, 4, (256, 1))
    cfg = parse_config({"pretrain.dae_epochs": 8, "pretrain.noise": 0.2}).pretrain
    losses = pretrain_dae(
        model, x_num, x_cat, cfg, lr=3e-3, batch_size=64, generator=torch.Generator().manual_seed(0)
    )
    assert len(losses) == 8 and losses[-1] < losses[0]
    after = model.state_dict()
    assert not torch.equal(before["blocks.0.linear.weight"], after["blocks.0.linear.weight"])
    assert not torch.equal(before["embeddings.0.weight"], after["embeddings.0.weight"])
    assert torch.equal(before["head.weight"], after["head.weight"])  # labels are not used


def test_dae_pretraining_changes_the_supervised_metrics() -> None:
    assert _rmses({"pretrain.dae_epochs": 2}) != _rmses({})


@pytest.mark.parametrize("activation", ["relu", "glu"])
def test_tied_decoder_shares_the_encoder_weights(activation: str) -> None:
    model = _mlp(depth=2, width=32, activation=activation)
    tied = DenoisingAutoencoder(model, tie_weights=True)
    untied = DenoisingAutoencoder(model, tie_weights=False)
    encoder_params = {id(p) for p in model.parameters()}
    # Tied: the decoder owns only its biases; its weights are views of the encoder's.
    assert all(p.dim() == 1 for p in tied.decoder.parameters())
    for w, block in zip(tied.decoder_weights(), reversed(list(model.blocks))):
        assert w._base is block.linear.weight
    assert not any(id(p) in encoder_params for p in untied.decoder.parameters())
    n_tied = sum(p.numel() for p in tied.decoder.parameters())
    n_untied = sum(p.numel() for p in untied.decoder.parameters())
    assert n_tied == 32 + (10 + 8)  # the two layers' output biases
    assert n_untied == n_tied + 32 * 32 + 32 * (10 + 8)
    x_num, x_cat = torch.randn(8, 10), torch.randint(1, 4, (8, 1))
    assert tied(x_num, x_cat).shape == untied(x_num, x_cat).shape == (8, 18)
