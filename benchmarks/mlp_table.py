"""The MLP grid (``mlp_grid.py``'s table of real learning curves) as a benchmark problem.

One dataset of the table is one problem: a five-knob hpsearch space, as a user would write it
from the checklist (learning rate and width high impact, depth and weight decay medium, batch
size low), with the usual starting point as defaults (Adam's lr 1e-3, 128 units, 2 layers,
weight decay 1e-4, batch 128). A config is evaluated at the nearest grid point in log space.
The value is the validation log loss after the last epoch, or after any epoch for
multi-fidelity search; regret is normalized by the table's ``median - optimum`` of final
losses and shown as log10.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from hpsearch.spaces import SearchSpace

DATA = Path(__file__).parent / "data"
REGRET_FLOOR = 1e-6
FLIP = {"high": "low", "medium": "medium", "low": "high"}

#: the space: knob -> (spec, the grid's axis name)
_PARAMS: dict[str, dict[str, Any]] = {
    "lr": {
        "type": "float",
        "low": 1e-5,
        "high": 1.0,
        "log": True,
        "default": 1e-3,
        "impact": "high",
        "checklist": "Learning Rate (LR)",
    },
    "width": {
        "type": "int",
        "low": 16,
        "high": 128,
        "log": True,
        "default": 128,
        "impact": "high",
        "checklist": "Layer size",
    },
    "depth": {
        "type": "int",
        "low": 1,
        "high": 3,
        "default": 2,
        "impact": "medium",
        "checklist": "Num of layers (depth)",
    },
    "alpha": {
        "type": "float",
        "low": 1e-8,
        "high": 1.0,
        "log": True,
        "default": 1e-4,
        "impact": "medium",
        "checklist": "Weight decay",
    },
    "batch_size": {
        "type": "int",
        "low": 32,
        "high": 512,
        "log": True,
        "default": 128,
        "impact": "low",
        "checklist": "Batch Size (BS)",
    },
}
_TABLE: dict[str, Any] | None = None


def _load() -> dict[str, Any]:
    """Every ``mlp_grid*.npz`` under benchmarks/data, merged by dataset."""
    global _TABLE
    if _TABLE is None:
        files = sorted(DATA.glob("mlp_grid*.npz"))
        if not files:
            raise FileNotFoundError(
                f"no MLP grid under {DATA}: build it with `python benchmarks/mlp_grid.py`"
            )
        loss: dict[str, np.ndarray] = {}
        grid: dict[str, np.ndarray] = {}
        for f in files:
            with np.load(f) as z:
                grid = {k.removeprefix("grid_"): z[k] for k in z.files if k.startswith("grid_")}
                for i, name in enumerate(z["datasets"]):
                    loss[str(name)] = z["loss"][i].astype(np.float64)
        _TABLE = {"loss": loss, "grid": grid}
    return _TABLE


def datasets() -> list[str]:
    """The datasets the table has."""
    return list(_load()["loss"])


class MLPGridProblem:
    """One dataset of the MLP grid: final-epoch (or per-epoch) validation log loss."""

    def __init__(self, dataset: str) -> None:
        table = _load()
        if dataset not in table["loss"]:
            raise ValueError(f"no dataset {dataset!r} in the MLP grid; it has {datasets()}")
        self.curves = table["loss"][dataset]  # (lr, alpha, width, depth, batch, epochs)
        self.grid = table["grid"]
        final = self.curves[..., -1]
        self.optimum = float(final.min())
        self.scale = float(np.median(final)) - self.optimum
        self.epochs = self.curves.shape[-1]

    def space(self, *, reverse_tiers: bool) -> SearchSpace:
        params = {k: dict(p) for k, p in _PARAMS.items()}
        if reverse_tiers:
            for p in params.values():
                p["impact"] = FLIP[p["impact"]]
        return SearchSpace.model_validate({"name": "mlp-grid", "task": "tabular", "params": params})

    def cell(self, config: dict[str, Any]) -> tuple[int, ...]:
        out = []
        for name in ("lr", "alpha", "width", "depth", "batch_size"):
            axis = np.asarray(self.grid[name], dtype=float)
            v = float(config[name])
            dist = np.abs(np.log(axis) - math.log(v)) if name != "depth" else np.abs(axis - v)
            out.append(int(np.argmin(dist)))
        return tuple(out)

    def curve(self, config: dict[str, Any]) -> np.ndarray:
        """The config's validation log loss after each epoch."""
        return self.curves[self.cell(config)]

    def log_regret(self, final_loss: float) -> float:
        return float(np.log10(max((final_loss - self.optimum) / self.scale, REGRET_FLOOR)))

    def evaluate(self, config: dict[str, Any], rng: np.random.Generator) -> tuple[float, float]:
        final = float(self.curve(config)[-1])
        return final, self.log_regret(final)
