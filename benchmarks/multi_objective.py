"""Multi-objective search and pruning on the MLP grid (issue 18, items 3 and 4).

Two objectives, both minimized, on each dataset of the MLP grid (``mlp_grid.py``: real Adam
trainings of an MLP over learning rate, width, depth, weight decay and batch size, 27 epochs):
the validation log loss after the last epoch, and the MLP's parameter count, computed exactly
from its width and depth and the dataset's input and output sizes (``mlp_grid.py`` builds
``n_features -> width x depth -> n_classes`` with a bias on every layer; the sizes are derived
from its dataset loaders). A config is evaluated at the nearest grid point, as in
``mlp_table.py``.

The metric is the hypervolume of the front of the complete trials against ONE reference point
per dataset, the same for every method: the table's median final loss and 1.1 x the largest
parameter count (so the largest MLP still counts), normalized by the hypervolume of the
table's true Pareto front (every config of the grid). Tables show the median over seeds of
``log10(1 - HV / HV_true)`` (floored at -6: the true front found); lower is better, 0 is no
point inside the reference box.

Part 1, ``search``: the same trial budget for every sampler, each built by hpsearch's
``make_sampler`` over ``MLPGridProblem.space`` in a study with directions
``["minimize", "minimize"]``: ``impact`` (the default strategy: the checklist prior over
multivariate MO-TPE), ``tpe`` (MO-TPE), ``tpe+defaults`` (MO-TPE with the defaults enqueued as
trial 0), ``nsga2`` (Optuna's NSGA-II, its default population of 50) and ``random``.

Part 2, ``pruning``: the default strategy with hpsearch's ``pareto`` pruner (``make_pruner``:
rungs at epochs 1, 3, 9, 27, keep the top third) against no pruner. Four asynchronous workers
each advance their trial one epoch per tick; after every epoch, at a rung
(``pruner.is_rung``), the trial's vector ``[val loss at that epoch, params]`` goes into its
``rungs`` user attribute and ``pruner.stops(...)`` decides, exactly as the worker's
``pareto_rung`` does (the last epoch, 27, is not judged: the trial is trained, as in the
worker). The pruned study runs until it has spent as many epochs as the unpruned one's
``--prune-trials`` trials. Two what-ifs for the default strategy (``PRUNING``): the last epoch
judged too, and exact ties broken; and, to see the pruner under other samplers, ``tpe`` and ``random`` with and without
it (``--prune-strategies``).

    python benchmarks/multi_objective.py [--part search,pruning] [--seeds 10] [--trials 100]
        [--prune-trials 50] [--prune-strategies impact,tpe,random] [--datasets all]
        [--methods all] [--jobs 2] [--out benchmarks/results] [--tag SUFFIX]

Prints (and writes to ``OUT/multi_objective.md``) the tables, plots part 1 to
``OUT/multi_objective.png``, keeps part 1's curves and part 2's figures per study
(``FIGURES`` at each budget) in ``OUT/multi_objective.npz``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import mlp_table
import numpy as np
import optuna
from optuna._hypervolume import compute_hypervolume
from optuna.trial import TrialState

from hpsearch.spaces import default_config, suggest_config
from hpsearch.strategy import make_pruner, make_sampler
from hpsearch.strategy.pareto_pruner import RUNGS_ATTR, ParetoRungPruner

BUDGETS = (10, 25, 50, 100)
FLOOR = 1e-6  # 1 - HV / HV_true of the true front itself (log10: -6)
DIRECTIONS: list[Literal["minimize", "maximize"]] = ["minimize", "minimize"]
WORKERS = 4  # asynchronous workers of the pruning part

#: method -> (hpsearch strategy, enqueue the defaults as trial 0)
METHODS: dict[str, tuple[str, bool]] = {
    "impact": ("impact", False),
    "tpe": ("tpe", False),
    "tpe+defaults": ("tpe", True),
    "nsga2": ("nsga2", False),
    "random": ("random", False),
}

_SIZES: dict[str, tuple[int, int]] = {}  # dataset -> (n_features, n_classes), filled in main


def layer_sizes() -> dict[str, tuple[int, int]]:
    """Each dataset's (input features, classes), from ``mlp_grid.py``'s loaders."""
    if not _SIZES:
        import mlp_grid  # imports torch: only for the loaders, once, before any fork

        for name, (x, y) in mlp_grid.datasets().items():
            _SIZES[name] = (int(x.shape[1]), len(np.unique(y)))
    return _SIZES


def param_count(width: int, depth: int, n_in: int, n_out: int) -> int:
    """Weights and biases of ``mlp_grid.py``'s MLP: ``n_in -> width x depth -> n_out``."""
    sizes = [n_in, *([width] * depth), n_out]
    return sum(a * b + b for a, b in zip(sizes, sizes[1:], strict=False))


class TradeOff:
    """One dataset of the grid with two objectives: final val log loss and parameter count."""

    def __init__(self, dataset: str) -> None:
        self.problem = mlp_table.MLPGridProblem(dataset)
        n_in, n_out = layer_sizes()[dataset]
        grid = self.problem.grid
        widths, depths = np.asarray(grid["width"]), np.asarray(grid["depth"])
        # params by (width index, depth index); the table's axes: lr, alpha, width, depth, batch
        self.params = np.array(
            [[param_count(int(w), int(d), n_in, n_out) for d in depths] for w in widths],
            dtype=float,
        )
        final = self.problem.curves[..., -1]
        every = np.broadcast_to(self.params[None, None, :, :, None], final.shape)
        self.reference = np.array([float(np.median(final)), 1.1 * float(self.params.max())])
        points = np.stack([final.ravel(), every.ravel()], axis=1)
        self.true_hv = _hv(points, self.reference)
        self.epochs = self.problem.epochs

    def evaluate(self, config: dict[str, Any]) -> tuple[np.ndarray, float]:
        """The config's validation loss after each epoch, and its parameter count."""
        cell = self.problem.cell(config)
        return self.problem.curves[cell], float(self.params[cell[2], cell[3]])

    def log_gap(self, points: Sequence[Sequence[float]]) -> float:
        """log10 of ``1 - HV / HV_true`` of ``points`` (floored at log10 ``FLOOR``)."""
        hv = _hv(np.asarray(points, dtype=float).reshape(-1, 2), self.reference)
        return float(np.log10(max(1.0 - hv / self.true_hv, FLOOR)))


def _hv(points: np.ndarray, reference: np.ndarray) -> float:
    inside = points[np.all(points < reference, axis=1)]
    return float(compute_hypervolume(inside, reference)) if len(inside) else 0.0


_PROBLEMS: dict[str, TradeOff] = {}


def trade_off(dataset: str) -> TradeOff:
    if dataset not in _PROBLEMS:
        _PROBLEMS[dataset] = TradeOff(dataset)
    return _PROBLEMS[dataset]


# ---- part 1: the front at equal trial budgets ----------------------------------------------


def run_search(task: tuple[str, str, int, int]) -> tuple[str, str, int, np.ndarray]:
    """One study of ``method``: the log10 HV gap of its front after each trial."""
    dataset, method, seed, n_trials = task
    prob = trade_off(dataset)
    strategy, enqueue = METHODS[method]
    space = prob.problem.space(reverse_tiers=False)
    sampler = make_sampler(strategy, space, seed=seed, n_trials=n_trials)
    study = optuna.create_study(
        study_name=f"{dataset}/{method}/{seed}",  # the prior's draws depend on it
        storage=optuna.storages.InMemoryStorage(),
        sampler=sampler,
        directions=DIRECTIONS,
    )
    if enqueue:
        study.enqueue_trial(default_config(space))
    points: list[tuple[float, float]] = []
    curve = np.empty(n_trials)
    for i in range(n_trials):
        trial = study.ask()
        losses, params = prob.evaluate(suggest_config(trial, space))
        study.tell(trial, [float(losses[-1]), params])
        points.append((float(losses[-1]), params))
        curve[i] = prob.log_gap(points)
    return dataset, method, seed, curve


# ---- part 2: the pareto pruner against none ------------------------------------------------

#: one record per finished trial: number, epochs spent, complete (1/0), final loss, params,
#: epochs the study had spent when it ended, pruned at the last epoch (1/0)
#: pruning mode -> (the pareto pruner, judge the last epoch too, break exact ties): hpsearch's
#: worker, and two what-ifs: prune a trial after its last epoch too; a relative jitter
#: of 1e-6 per trial on its losses, so two trials of one grid cell are not exact ties (two real
#: trainings of one config never are)
PRUNING: dict[str, tuple[bool, bool, bool]] = {
    "none": (False, False, False),
    "pareto": (True, False, False),
    "pareto, last epoch judged": (True, True, False),
    "pareto, ties broken": (True, False, True),
}
RECORD = ("number", "epochs", "complete", "loss", "params", "ended_at", "pruned_last")


def run_pruning(task: tuple[str, str, int, int]) -> tuple[str, str, int, np.ndarray]:
    """One study under ``label`` (``"STRATEGY, MODE"``, MODE one of ``PRUNING``), run by
    ``WORKERS`` asynchronous workers; its finished trials as rows of ``RECORD``.

    Unpruned: ``n_trials`` trials. Pruned: until it spent ``n_trials`` full trainings' worth
    of epochs and its first ``n_trials`` trials have ended."""
    dataset, label, seed, n_trials = task
    strategy, mode = label.split(", ", 1)
    pruned, judge_last, jitter = PRUNING[mode]
    noise = np.random.default_rng([seed, 77])
    prob = trade_off(dataset)
    space = prob.problem.space(reverse_tiers=False)
    epochs = prob.epochs
    pruner = make_pruner("pareto", epochs=epochs) if pruned else optuna.pruners.NopPruner()
    name = f"{dataset}/pruning/{seed}"  # the same name with and without: the same first draws
    storage = optuna.storages.InMemoryStorage()
    studies = []
    for w in range(WORKERS):
        sampler = make_sampler(strategy, space, seed=seed, n_trials=n_trials)
        if w == 0:
            studies.append(
                optuna.create_study(
                    study_name=name,
                    storage=storage,
                    sampler=sampler,
                    pruner=pruner,
                    directions=DIRECTIONS,
                )
            )
        else:
            studies.append(optuna.load_study(study_name=name, storage=storage, sampler=sampler))
    budget = n_trials * epochs
    spent = 0
    asked = 0
    records: list[tuple[float, ...]] = []
    # per worker: [trial, losses, params, epochs done, rungs]
    running: list[list[Any] | None] = [None] * WORKERS

    def unfinished_early() -> bool:
        return any(r is not None and r[0].number < n_trials for r in running)

    while True:
        if pruned:
            more = spent < budget or unfinished_early()
        else:
            more = asked < n_trials or any(r is not None for r in running)
        if not more:
            break
        for w, study in enumerate(studies):
            if running[w] is None:
                if (not pruned and asked >= n_trials) or (pruned and spent >= budget):
                    continue
                trial = study.ask()
                asked += 1
                losses, params = prob.evaluate(suggest_config(trial, space))
                if jitter:
                    losses = losses * (1.0 + 1e-6 * float(noise.normal()))
                running[w] = [trial, losses, params, 0, {}]
            state = running[w]
            assert state is not None
            trial, losses, params, done, rungs = state
            done += 1
            spent += 1
            state[3] = done
            value = float(losses[done - 1])
            stop = False
            judged = judge_last or done < epochs
            if isinstance(pruner, ParetoRungPruner) and judged and pruner.is_rung(done):
                # the worker's pareto_rung: record the vector, then ask the pruner
                rungs[str(done)] = [value, params]
                trial.set_user_attr(RUNGS_ATTR, dict(rungs))
                stop = pruner.stops(study, trial.number, done, [value, params])
            if stop:
                study.tell(trial, state=TrialState.PRUNED)
                records.append((trial.number, done, 0, value, params, spent, float(done == epochs)))
                running[w] = None
            elif done == epochs:
                study.tell(trial, [value, params])
                records.append((trial.number, done, 1, value, params, spent, 0.0))
                running[w] = None
    return dataset, label, seed, np.array(records, dtype=float)


def _front_gap(prob: TradeOff, rows: np.ndarray) -> float:
    done = rows[rows[:, 2] == 1]
    return prob.log_gap(done[:, 3:5]) if len(done) else 0.0


#: what ``pruning_figures`` returns, in the order the .npz keeps them
FIGURES = (
    "epochs",
    "gap_trials",
    "gap_epochs",
    "trials_in_epochs",
    "complete_in_epochs",
    "pruned_last",
)


def pruning_figures(prob: TradeOff, rows: np.ndarray, n: int, *, pruned: bool) -> dict[str, float]:
    """At trial budget ``n``: epochs of the first ``n`` trials and their front's gap; at the
    epoch budget ``n`` full trainings: the gap of the trials complete by then, and their count.

    Unpruned, the first ``n`` trials are what ``n`` full trainings buy (with several workers
    some of them end after the study's total passed ``n x epochs``, other trials' epochs
    having been spent first; the sum is the same)."""
    first = rows[rows[:, 0] < n]
    by_epochs = rows[rows[:, 5] <= n * prob.epochs] if pruned else first
    return {
        "epochs": float(first[:, 1].sum()),
        "gap_trials": _front_gap(prob, first),
        "gap_epochs": _front_gap(prob, by_epochs),
        "trials_in_epochs": float(len(by_epochs)),
        "complete_in_epochs": float(by_epochs[:, 2].sum()),
        "pruned_last": float(first[:, 6].sum()),
    }


# ---- reports -------------------------------------------------------------------------------


def search_report(curves: dict[str, dict[str, np.ndarray]], datasets: list[str]) -> str:
    """Per-budget tables (datasets and pooled as columns) and where ``impact`` loses."""
    methods = list(curves)
    n = next(iter(curves[methods[0]].values())).shape[1]
    budgets = [b for b in BUDGETS if b <= n]
    groups = [*datasets, "pooled"] if len(datasets) > 1 else list(datasets)

    def runs(m: str, g: str) -> np.ndarray:
        return np.concatenate([curves[m][d] for d in datasets]) if g == "pooled" else curves[m][g]

    med = {(m, g): np.median(runs(m, g), axis=0) for m in methods for g in groups}
    lines = [
        "### Part 1: median log10(1 - HV / HV_true) at equal trial budgets (lower is better)",
        "",
    ]
    lines += [
        "| method | " + " | ".join(f"{b} trials" for b in budgets) + " |",
        "|---|" + "---:|" * len(budgets),
    ]
    for m in methods:
        cells = [
            f"{med[m, 'pooled' if len(groups) > 1 else groups[0]][b - 1]:.2f}" for b in budgets
        ]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Pooled over datasets and seeds. Per dataset:")
    lines.append("")
    for b in budgets:
        lines += [
            f"**{b} trials**",
            "",
            "| method | " + " | ".join(groups) + " |",
            "|---|" + "---:|" * len(groups),
        ]
        for m in methods:
            lines.append(f"| {m} | " + " | ".join(f"{med[m, g][b - 1]:.2f}" for g in groups) + " |")
        lines.append("")
    if "impact" in methods:
        losses = []
        for b in budgets:
            for g in groups:
                beaten = [
                    f"{m} {med[m, g][b - 1]:.2f}"
                    for m in methods
                    if m != "impact" and med[m, g][b - 1] < med["impact", g][b - 1] - 1e-9
                ]
                if beaten:
                    losses.append(
                        f"- {g}, {b} trials: impact {med['impact', g][b - 1]:.2f}, beaten by "
                        + ", ".join(beaten)
                    )
        lines += ["#### Where impact loses (a lower median than impact's)", ""]
        lines += losses or ["- nowhere"]
        lines.append("")
    return "\n".join(lines) + "\n"


def pruning_report(
    runs: dict[tuple[str, str], list[np.ndarray]], datasets: list[str], n_trials: int
) -> tuple[str, dict[str, np.ndarray]]:
    """Epochs saved, and the front's gap at equal trials and at equal epochs, per mode."""
    budgets = [b for b in BUDGETS if b <= n_trials]
    groups = [*datasets, "pooled"] if len(datasets) > 1 else list(datasets)
    modes = list(dict.fromkeys(label for _d, label in runs))
    figs: dict[tuple[str, str, int], list[dict[str, float]]] = {}
    for (d, mode), rows in runs.items():
        prob = trade_off(d)
        for b in budgets:
            figs[d, mode, b] = [
                pruning_figures(prob, r, b, pruned=not mode.endswith(", none")) for r in rows
            ]

    def col(g: str, mode: str, b: int, key: str) -> np.ndarray:
        ds = datasets if g == "pooled" else [g]
        return np.array([f[key] for d in ds for f in figs[d, mode, b]])

    def med(g: str, mode: str, b: int, key: str) -> float:
        return float(np.median(col(g, mode, b, key)))

    def saved(g: str, mode: str, b: int) -> float:
        base = mode.split(", ", 1)[0] + ", none"
        ratio = col(g, mode, b, "epochs") / col(g, base, b, "epochs")
        return float(np.median(100.0 * (1.0 - ratio)))

    lines = [
        f"### Part 2: the pareto pruner against no pruning ({WORKERS} asynchronous workers)",
        "",
        "Medians over datasets and seeds. *gap*: log10(1 - HV / HV_true) of the complete "
        "trials' front (lower is better). *N trials*: the first N trials of each study. "
        "*N x 27 epochs*: the trials that ended before the study had spent N full trainings' "
        "worth of epochs (what the unpruned study spends on N trials; for `none`, its N "
        "trials). `pareto` is hpsearch's worker (epoch 27 is not judged); what-ifs: `last epoch "
        "judged` may prune a trial after all its epochs, `ties broken` jitters each "
        "trial's losses by 1e-6 (relative) so that two trials of one grid cell do not tie. "
        "`impact` is the default strategy; `tpe` (MO-TPE) and `random` show the pruner under "
        "other samplers.",
        "",
        "| strategy, pruning | N | epochs of N trials | epochs saved | gap at N trials "
        "| gap at N x 27 epochs | trials (complete) in N x 27 epochs "
        "| of N trials, pruned at epoch 27 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    g0 = "pooled" if len(groups) > 1 else groups[0]
    for b in budgets:
        for mode in modes:
            lines.append(
                f"| {mode} | {b} | {med(g0, mode, b, 'epochs'):.0f} | "
                f"{saved(g0, mode, b):.0f}% | {med(g0, mode, b, 'gap_trials'):.2f} | "
                f"{med(g0, mode, b, 'gap_epochs'):.2f} | "
                f"{med(g0, mode, b, 'trials_in_epochs'):.0f} "
                f"({med(g0, mode, b, 'complete_in_epochs'):.0f}) | "
                f"{med(g0, mode, b, 'pruned_last'):.0f} |"
            )
    lines.append("")
    b = budgets[-1]
    lines += [
        f"Per dataset at N = {b}: epochs saved / gap at N trials / gap at N x 27 epochs",
        "",
        "| dataset | " + " | ".join(modes) + " |",
        "|---|" + "---:|" * len(modes),
    ]
    for g in groups:
        cells = [
            f"{saved(g, m, b):.0f}% / {med(g, m, b, 'gap_trials'):.2f} / "
            f"{med(g, m, b, 'gap_epochs'):.2f}"
            for m in modes
        ]
        lines.append(f"| {g} | " + " | ".join(cells) + " |")
    # per (dataset, label): seeds x budgets x FIGURES, as float32
    keep = {
        f"prune|{d}|{mode}": np.array(
            [
                [[f[k] for k in FIGURES] for f in per_budget]
                for per_budget in zip(*(figs[d, mode, b] for b in budgets), strict=True)
            ],
            dtype=np.float32,
        )
        for (d, mode) in runs
    }
    keep["prune_budgets"] = np.array(budgets)
    return "\n".join(lines) + "\n", keep


def plot(curves: dict[str, dict[str, np.ndarray]], datasets: list[str], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for m, per in curves.items():
        pooled = np.concatenate([per[d] for d in datasets])
        x = np.arange(1, pooled.shape[1] + 1)
        ax.plot(x, np.median(pooled, axis=0), label=m)
        lo, hi = np.percentile(pooled, [25, 75], axis=0)
        ax.fill_between(x, lo, hi, alpha=0.12)
    ax.set_xscale("log")
    ax.set_xlabel("trials")
    ax.set_ylabel("median log10(1 - HV / HV_true)")
    ax.set_title("MLP grid, val log loss vs parameter count (pooled, IQR band)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _quiet() -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.simplefilter("ignore")


def _map(fn: Any, tasks: list[Any], jobs: int, label: str) -> list[Any]:
    start = time.time()
    out = []
    if jobs == 1:
        results: Any = map(fn, tasks)
        pool = None
    else:
        pool = multiprocessing.get_context("fork").Pool(jobs, initializer=_quiet)
        results = pool.imap_unordered(fn, tasks)
    for k, r in enumerate(results, 1):
        out.append(r)
        if k % max(1, len(tasks) // 10) == 0 or k == len(tasks):
            print(
                f"  {label}: {k}/{len(tasks)} studies, {time.time() - start:.0f}s", file=sys.stderr
            )
    if pool is not None:
        pool.close()
        pool.join()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", default="search,pruning", help="search, pruning, or both")
    parser.add_argument("--datasets", default="all", help="comma-separated, or all")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--trials", type=int, default=100, help="trial budget of part 1")
    parser.add_argument(
        "--prune-trials", type=int, default=50, help="unpruned trials of part 2 (N's largest)"
    )
    parser.add_argument(
        "--prune-strategies",
        default="impact,tpe,random",
        help="part 2's strategies (impact: every mode; the others: none and pareto)",
    )
    parser.add_argument("--methods", default="all", help=f"comma-separated of {list(METHODS)}")
    parser.add_argument("--jobs", type=int, default=1, help="processes")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--tag", default="", help="suffix of the output files")
    args = parser.parse_args(argv)
    _quiet()
    sizes = layer_sizes()
    names = mlp_table.datasets() if args.datasets == "all" else args.datasets.split(",")
    unknown = [d for d in names if d not in sizes or d not in mlp_table.datasets()]
    if unknown:
        parser.error(f"unknown dataset(s) {unknown}; choose from {mlp_table.datasets()}")
    methods = list(METHODS) if args.methods == "all" else args.methods.split(",")
    bad = [m for m in methods if m not in METHODS]
    if bad:
        parser.error(f"unknown method(s) {bad}; choose from {list(METHODS)}")
    parts = args.part.split(",")
    if not parts or any(part not in ("search", "pruning") for part in parts):
        parser.error(f"--part must be search, pruning or both (comma-separated), got {args.part!r}")
    for d in names:  # build each problem (and its true front) before forking
        trade_off(d)
    start = time.time()
    text = (
        f"multi-objective, MLP grid: {len(names)} datasets x {args.seeds} seeds; objectives "
        "final val log loss and parameter count (both minimized); reference point per dataset: "
        "(median final loss, 1.1 x largest parameter count)\n\n"
    )
    text += "| dataset | n_features | n_classes | params range | reference point | true front |\n"
    text += "|---|---:|---:|---:|---:|---:|\n"
    for d in names:
        p = trade_off(d)
        n_front = _front_size(p)
        text += (
            f"| {d} | {sizes[d][0]} | {sizes[d][1]} | {p.params.min():.0f}-{p.params.max():.0f} "
            f"| ({p.reference[0]:.3f}, {p.reference[1]:.0f}) | {n_front} points |\n"
        )
    text += "\n"
    keep: dict[str, np.ndarray] = {}
    curves: dict[str, dict[str, np.ndarray]] = {}
    if "search" in parts:
        tasks = [(d, m, s, args.trials) for d in names for s in range(args.seeds) for m in methods]
        per: dict[str, dict[str, list[np.ndarray]]] = {m: {d: [] for d in names} for m in methods}
        t0 = time.time()
        for d, m, s, curve in sorted(_map(run_search, tasks, args.jobs, "search")):
            per[m][d].append(curve)
        curves = {m: {d: np.stack(v) for d, v in x.items()} for m, x in per.items()}
        text += f"{args.trials} trials per study, 1 worker, {time.time() - t0:.0f}s\n\n"
        text += search_report(curves, names)
        keep.update(
            {
                f"search|{m}|{d}": v.astype(np.float32)
                for m, x in curves.items()
                for d, v in x.items()
            }
        )
    if "pruning" in parts:
        labels = [
            f"{strategy}, {mode}"
            for strategy in args.prune_strategies.split(",")
            for mode in (PRUNING if strategy == "impact" else ("none", "pareto"))
        ]
        tasks2 = [
            (d, p, s, args.prune_trials) for d in names for s in range(args.seeds) for p in labels
        ]
        runs: dict[tuple[str, str], list[np.ndarray]] = {(d, p): [] for d in names for p in labels}
        t0 = time.time()
        for d, p, _s, rows in sorted(_map(run_pruning, tasks2, args.jobs, "pruning"), key=_by_seed):
            runs[d, p].append(rows)
        ptext, pkeep = pruning_report(runs, names, args.prune_trials)
        text += f"\n{args.prune_trials} unpruned trials per study, {time.time() - t0:.0f}s\n\n"
        text += ptext
        keep.update(pkeep)
    text += f"\n(total {time.time() - start:.0f}s with {args.jobs} process(es))\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"multi_objective{args.tag}"
    (args.out / f"{stem}.md").write_text(text)
    np.savez_compressed(args.out / f"{stem}.npz", **keep)
    if curves and plot(curves, names, args.out / f"{stem}.png"):
        print(f"plot: {args.out / f'{stem}.png'}")


def _by_seed(r: tuple[str, str, int, np.ndarray]) -> tuple[str, str, int]:
    return r[0], r[1], r[2]


def _front_size(p: TradeOff) -> int:
    final = p.problem.curves[..., -1]
    # the true front: per (width, depth) the best final loss, then non-dominated among those
    best = final.min(axis=(0, 1, 4))
    pts = sorted(zip(p.params.ravel(), best.ravel(), strict=True))
    count, low = 0, np.inf
    for _params, loss in pts:
        if loss < low and loss < p.reference[0]:
            count, low = count + 1, loss
    return count


if __name__ == "__main__":
    main()
