"""Multi-fidelity search quality per epoch spent (BENCHMARKS.md §1): the MLP grid's learning
curves, with epochs as the resource and Hyperband as the pruner.

Each study trains configs epoch by epoch on the MLP grid's stored curves (``mlp_grid.py``:
real Adam trainings of an MLP, 27 epochs), reports every epoch's validation log loss to its
trial and obeys the pruner, until it has spent ``--budget`` full trainings' worth of epochs.
The incumbent is the best trial that trained all its epochs; its regret is normalized by the
table's ``median - optimum`` and shown as log10.

Methods, in one run: ``random+hb``, ``tpe+hb`` (Optuna's TPE with its HyperbandPruner),
``tpe+defaults+hb`` (the defaults enqueued first), ``impact+hb`` (the default strategy,
the soft prior, with the same pruner), ``impact-reversed+hb`` (a wrong checklist), and, to see
what pruning buys, ``tpe`` and ``impact`` without a pruner. ``--workers 4`` runs four workers on
one study, each advancing its trial by one epoch per tick (asynchronous, as real workers are).

    python benchmarks/multi_fidelity.py [--seeds 5] [--first-seed 0] [--budget 50] [--workers 1]
        [--datasets all] [--methods all] [--jobs 2] [--out benchmarks/results] [--tag _X]
        [--prior-kw JSON]

Prints (and writes to ``OUT/multi_fidelity.md``) the median log10 normalized regret at 10 and 30
(and 50) full-training equivalents per dataset and pooled, and the epochs each method needs for
its median to reach TPE + Hyperband's median at 30 full trainings.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlp_table
import numpy as np
import optuna

from hpsearch.spaces import SearchSpace, default_config, suggest_config
from hpsearch.strategy import PriorSampler

BUDGETS = (10, 30, 50)  # full-training equivalents

Factory = Callable[[int, SearchSpace], optuna.samplers.BaseSampler]


def _tpe(seed: int, space: SearchSpace) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(seed=seed)


PRIOR_KW: dict[str, Any] = {}  # --prior-kw: PriorSampler arguments to try


def _impact(seed: int, space: SearchSpace) -> optuna.samplers.BaseSampler:
    return PriorSampler(space, seed=seed, **PRIOR_KW)


def _random(seed: int, space: SearchSpace) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed)


#: name -> (sampler factory, reverse the tiers, enqueue the defaults, Hyperband)
METHODS: dict[str, tuple[Factory, bool, bool, bool]] = {
    "random+hb": (_random, False, False, True),
    "tpe+hb": (_tpe, False, False, True),
    "tpe+defaults+hb": (_tpe, False, True, True),
    "impact+hb": (_impact, False, False, True),
    "impact-reversed+hb": (_impact, True, False, True),
    "tpe": (_tpe, False, False, False),
    "impact": (_impact, False, False, False),
}


def run_one(task: tuple[str, str, int, int, int]) -> tuple[str, str, int, np.ndarray]:
    """One study: the incumbent's log10 regret after each epoch spent."""
    dataset, method, seed, budget, workers = task
    prob = mlp_table.MLPGridProblem(dataset)
    factory, reverse, enqueue, hyperband = METHODS[method]
    space = prob.space(reverse_tiers=reverse)
    epochs = prob.epochs
    pruner: optuna.pruners.BasePruner = (
        optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs, reduction_factor=3)
        if hyperband
        else optuna.pruners.NopPruner()
    )
    storage = optuna.storages.InMemoryStorage()
    name = f"{dataset}/{method}/{seed}"
    studies = [
        optuna.create_study(
            study_name=name, storage=storage, sampler=factory(seed, space), pruner=pruner
        )
    ]
    # Worker k samples with seed + k, as hpsearch workers do (`open_study`'s seed_offset is
    # the order they joined): with one seed for all, random search and TPE's start-up would
    # draw the same configs in every worker.
    for k in range(1, workers):
        studies.append(
            optuna.load_study(
                study_name=name, storage=storage, sampler=factory(seed + k, space), pruner=pruner
            )
        )
    if enqueue:
        studies[0].enqueue_trial(default_config(space))
    total = budget * epochs
    curve = np.full(total, np.nan)
    best = np.inf
    spent = 0
    running: list[list[Any] | None] = [None] * workers  # [trial, curve, epoch] per worker
    while spent < total:
        for w, study in enumerate(studies):
            if spent >= total:
                break
            if running[w] is None:
                trial = study.ask()
                running[w] = [trial, prob.curve(suggest_config(trial, space)), 0]
            trial, values, done = running[w]
            value = float(values[done])
            trial.report(value, done + 1)
            done += 1
            running[w][2] = done
            spent += 1
            if done == epochs:
                study.tell(trial, value)
                best = min(best, value)
                running[w] = None
            elif trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                running[w] = None
            curve[spent - 1] = prob.log_regret(best) if np.isfinite(best) else np.nan
    # Before the first complete trial there is no incumbent: count it as the median config.
    return dataset, method, seed, np.nan_to_num(curve, nan=0.0)


def report(curves: dict[str, dict[str, np.ndarray]], datasets: list[str], epochs: int) -> str:
    methods = list(curves)
    n = next(iter(next(iter(curves.values())).values())).shape[1] // epochs
    budgets = [b for b in BUDGETS if b <= n]
    groups = [*datasets, "pooled"] if len(datasets) > 1 else datasets

    def runs(m: str, g: str) -> np.ndarray:
        return np.concatenate([curves[m][d] for d in datasets]) if g == "pooled" else curves[m][g]

    lines = [
        "### Median log10 normalized regret at equal epoch budgets (lower is better)",
        "",
        "Budgets in full trainings' worth of epochs; rows per dataset, then pooled.",
        "",
    ]
    for b in budgets:
        lines += [
            f"**{b} full trainings ({b * epochs} epochs)**",
            "",
            "| method | " + " | ".join(groups) + " |",
            "|---|" + "---:|" * len(groups),
        ]
        for m in methods:
            cells = [f"{np.median(runs(m, g), axis=0)[b * epochs - 1]:.2f}" for g in groups]
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines.append("")
    ref = "tpe+hb" if "tpe+hb" in curves else methods[0]
    target_b = 30 if n >= 30 else budgets[-1]
    lines += [
        f"### Epochs for the median to reach {ref}'s median at {target_b} full trainings",
        "",
        "| method | " + " | ".join(groups) + " |",
        "|---|" + "---:|" * len(groups),
    ]
    for m in methods:
        cells = []
        for g in groups:
            target = float(np.median(runs(ref, g), axis=0)[target_b * epochs - 1])
            med = np.median(runs(m, g), axis=0)
            hit = np.nonzero(med <= target + 1e-12)[0]
            cells.append(f"{hit[0] + 1}" if hit.size else f">{n * epochs}")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(curves: dict[str, dict[str, np.ndarray]], datasets: list[str], path: Path, epochs: int):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for m, per in curves.items():
        pooled = np.concatenate([per[d] for d in datasets])
        x = np.arange(1, pooled.shape[1] + 1) / epochs
        ax.plot(x, np.median(pooled, axis=0), label=m)
    ax.set_xlabel("full trainings' worth of epochs")
    ax.set_ylabel("median log10 normalized regret")
    ax.set_title("MLP grid, Hyperband over epochs (pooled over datasets and seeds)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _quiet() -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.simplefilter("ignore")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="all", help="comma-separated, or all")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument(
        "--first-seed", type=int, default=0, help="seeds first..first+seeds-1 (more seeds later)"
    )
    parser.add_argument("--budget", type=int, default=50, help="full trainings' worth of epochs")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--methods", default="all", help=f"comma-separated of {list(METHODS)}")
    parser.add_argument("--jobs", type=int, default=1, help="processes")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--tag", default="")
    parser.add_argument("--prior-kw", default="{}", help="JSON of PriorSampler arguments")
    args = parser.parse_args(argv)
    if args.budget < BUDGETS[0]:
        parser.error(f"--budget must be at least {BUDGETS[0]} full trainings, got {args.budget}")
    names = mlp_table.datasets() if args.datasets == "all" else args.datasets.split(",")
    try:  # a bad --prior-kw says so here, not in every worker of the pool
        PRIOR_KW.update(json.loads(args.prior_kw))
        _impact(0, mlp_table.MLPGridProblem(names[0]).space(reverse_tiers=False))
    except (ValueError, TypeError) as e:
        parser.error(f"--prior-kw: {e}")
    methods = list(METHODS) if args.methods == "all" else args.methods.split(",")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown method(s) {unknown}; choose from {list(METHODS)}")
    tasks = [
        (d, m, s, args.budget, args.workers)
        for d in names
        for s in range(args.first_seed, args.first_seed + args.seeds)
        for m in methods
    ]
    _quiet()
    curves: dict[str, dict[str, list[np.ndarray]]] = {m: {d: [] for d in names} for m in methods}
    start = time.time()
    if args.jobs == 1:
        results: Any = map(run_one, tasks)
    else:
        pool = multiprocessing.get_context("fork").Pool(args.jobs, initializer=_quiet)
        results = pool.imap_unordered(run_one, tasks)
    done: dict[tuple[str, str, int], np.ndarray] = {}
    for k, (d, m, s, curve) in enumerate(results, 1):
        done[d, m, s] = curve
        if k % max(1, len(tasks) // 10) == 0 or k == len(tasks):
            print(f"  {k}/{len(tasks)} studies, {time.time() - start:.0f}s", file=sys.stderr)
    for d, m, s, *_ in tasks:  # in seed order, whichever order the pool finished them in
        curves[m][d].append(done[d, m, s])
    arrays = {m: {d: np.stack(v) for d, v in per.items()} for m, per in curves.items()}
    epochs = mlp_table.MLPGridProblem(names[0]).epochs
    text = report(arrays, names, epochs)
    header = (
        f"multi-fidelity, MLP grid: {len(names)} datasets x {args.seeds} seeds "
        f"(from {args.first_seed}), budget "
        f"{args.budget} full trainings of {epochs} epochs, {args.workers} worker(s) per study, "
        + (f"PriorSampler {args.prior_kw}, " if PRIOR_KW else "")
        + f"{time.time() - start:.0f}s with {args.jobs} process(es)\n\n"
    )
    print(header + text)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"multi_fidelity{args.tag}"
    (args.out / f"{stem}.md").write_text(header + text)
    np.savez_compressed(
        args.out / f"{stem}.npz",
        **{f"{m}|{d}": v for m, per in arrays.items() for d, v in per.items()},
    )
    if plot(arrays, names, args.out / f"{stem}.png", epochs):
        print(f"plot: {args.out / f'{stem}.png'}")


if __name__ == "__main__":
    main()
