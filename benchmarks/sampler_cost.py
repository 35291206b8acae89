"""The sampler's own time per trial, against Optuna's TPE, as a study grows to 10,000 trials.

    python benchmarks/sampler_cost.py [--sizes 100,1000,10000] [--next 20] [--trials 1000]
                                      [--seed 0] [--repeats 5] [--out FILE.md]

Two tables, both on the HPOLib space of ``hpolib_impact.py`` with a cheap synthetic objective
(no table needed), in-memory storage, timing ask + suggest + tell of one trial:

1. **Grown study** (``--sizes``): for each size, a study already holding that many finished
   trials (configs drawn by ``RandomSampler`` over the same space, scored by the same objective,
   then copied into a fresh study per sampler with ``Study.add_trials``), and the time of the
   NEXT ``--next`` trials with each sampler, built by ``hpsearch.strategy.make_sampler`` as a
   worker builds it. The impact sampler's budget is ``size + next`` (the study's
   ``budget.trials``, so the timed trials are its last ones); one more row gives it a budget of
   10 x size, where only the high tier is searched by budget. Median and p95 ms per trial, the
   first trial apart (a fresh sampler in a worker pays it once), and the ratio of medians to
   TPE at that size.
2. **Whole run** (``--trials``, 0 skips it): each sampler runs a study from empty to ``--trials``
   trials, with the median ms per trial in windows of 100 trials near the start, middle and end.
   The runs advance one trial each in turn, so that the machine's slow spells fall on every
   sampler alike. One run's ratio to TPE at 1,000 trials moves by 0.3 or more from seed to seed
   (TPE's cost depends on the past trials it is fitted to, and each sampler makes its own), so
   ``--repeats`` runs (default 5) with seeds from ``--seed`` on give the median ratio and each
   run's.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

sys.path.insert(0, str(Path(__file__).parent))
from hpolib_impact import hpolib_space

from hpsearch.spaces import SearchSpace, suggest_config
from hpsearch.strategy import ImpactSampler, make_sampler


def objective(config: dict) -> float:
    """A cheap smooth stand-in for HPOLib's validation loss (lower is better)."""
    return (
        (math.log10(config["init_lr"]) + 2.5) ** 2
        + 0.3 * (math.log2(config["n_units_1"]) - 8) ** 2 / 9
        + config["dropout_1"]
        + 0.5 * config["dropout_2"]
        + 0.1 * (config["lr_schedule"] == "const")
        + 0.05 * (config["activation_fn_1"] == "tanh")
        + 0.02 * math.log2(config["batch_size"])
    )


def history(space: SearchSpace, size: int, *, seed: int) -> list[FrozenTrial]:
    """``size`` finished trials of ``space`` with random configs, scored by ``objective``."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    for _ in range(size):
        trial = study.ask()
        study.tell(trial, objective(suggest_config(trial, space)))
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def _timed_trial(study: optuna.Study, space: SearchSpace) -> tuple[float, optuna.trial.Trial]:
    """One trial (ask + suggest + tell) and its seconds."""
    start = time.perf_counter()
    trial = study.ask()
    study.tell(trial, objective(suggest_config(trial, space)))
    return time.perf_counter() - start, trial


def time_next(
    sampler: optuna.samplers.BaseSampler,
    space: SearchSpace,
    past: list[FrozenTrial],
    n_next: int,
) -> tuple[np.ndarray, set[tuple[str, ...]]]:
    """Seconds per trial of the next ``n_next`` trials after ``past``, and the impact tiers
    searched at those trials (empty for other samplers; computed outside the timed region)."""
    study = optuna.create_study(sampler=sampler)
    study.add_trials(past)
    out = np.empty(n_next)
    tiers: set[tuple[str, ...]] = set()
    for i in range(n_next):
        out[i], trial = _timed_trial(study, space)
        if isinstance(sampler, ImpactSampler):
            tiers.add(sampler.searched_tiers(trial.number, study))
    return out, tiers


def growth_table(sizes: list[int], *, n_next: int, seed: int) -> str:
    space = hpolib_space()
    variants = {
        "random": lambda size: make_sampler("random", space, seed=seed),
        "tpe": lambda size: make_sampler("tpe", space, seed=seed),
        "impact": lambda size: make_sampler("impact", space, seed=seed, n_trials=size + n_next),
        "tiers": lambda size: make_sampler("tiers", space, seed=seed, n_trials=size + n_next),
        "tiers, budget 10 x size": lambda size: make_sampler(
            "tiers", space, seed=seed, n_trials=10 * size
        ),
    }
    rows = []
    for size in sizes:
        start = time.time()
        past = history(space, size, seed=seed)
        print(f"  {size} trials filled in {time.time() - start:.0f}s", file=sys.stderr, flush=True)
        results = {}
        for name, make in variants.items():
            start = time.time()
            results[name] = time_next(make(size), space, past, n_next)
            print(f"    {name}: {time.time() - start:.1f}s", file=sys.stderr, flush=True)
        tpe_median = float(np.median(results["tpe"][0][1:]))
        for name, (t, tiers) in results.items():
            rest = t[1:]
            median = float(np.median(rest))
            tier_text = " / ".join("+".join(x) or "defaults" for x in sorted(tiers)) or "–"
            rows.append(
                f"| {size:,} | {name} | {t[0] * 1e3:.1f} | {median * 1e3:.1f} "
                f"| {float(np.percentile(rest, 95)) * 1e3:.1f} | {median / tpe_median:.2f} "
                f"| {tier_text} |"
            )
    return (
        f"Sampler time per trial (ask + suggest + tell) for the next {n_next} trials of a study "
        "that already holds N finished trials\n\n"
        f"| N | sampler | first trial ms | median ms (trials 2-{n_next}) | p95 ms "
        "| median / TPE | impact tiers searched |\n"
        "|---:|---|---:|---:|---:|---:|---|\n" + "\n".join(rows) + "\n"
    )


def interleaved_runs(
    samplers: dict[str, optuna.samplers.BaseSampler], n_trials: int, *, name: str
) -> dict[str, np.ndarray]:
    """Seconds per trial of a whole ``n_trials`` run from an empty study per sampler, the runs
    advanced one trial each in turn (the order rotating every trial), so that a slow spell of
    a shared machine falls on every sampler alike. Every study is called ``name`` (the prior's
    draws depend on it), so a run is repeatable."""
    space = hpolib_space()
    studies = {k: optuna.create_study(sampler=s, study_name=name) for k, s in samplers.items()}
    out = {k: np.empty(n_trials) for k in samplers}
    names = list(samplers)
    for i in range(n_trials):
        k = i % len(names)
        for key in names[k:] + names[:k]:
            out[key][i] = _timed_trial(studies[key], space)[0]
        if (i + 1) % max(1, n_trials // 10) == 0:
            print(
                f"  {name}: {i + 1}/{n_trials} trials of each sampler", file=sys.stderr, flush=True
            )
    return out


def windows_table(n: int, *, seed: int, repeats: int) -> str:
    """The whole-run table: ``repeats`` runs (seeds ``seed``, ``seed + 1``, ...), each sampler's
    median ms per window pooled over them (the median of the runs' medians), and the ratio to
    TPE at the end per run. A sampler's cost per ask depends on the trials it made (TPE's
    Parzen estimators cost more on some sets of past trials than on others), so one run's
    ratio says little: it moved between 0.80 and 1.61 over single runs."""
    space = hpolib_space()
    w = min(100, n)
    windows = sorted({0, max(0, n // 2 - w), n - w})
    meds: dict[str, list[list[float]]] = {}
    for r in range(repeats):
        samplers = {
            "random": make_sampler("random", space, seed=seed + r),
            "tpe": make_sampler("tpe", space, seed=seed + r),
            "impact": make_sampler("impact", space, seed=seed + r, n_trials=n),
            "tiers": make_sampler("tiers", space, seed=seed + r, n_trials=n),
        }
        times = interleaved_runs(samplers, n, name=f"cost-{seed + r}")
        for key, t in times.items():
            meds.setdefault(key, []).append([float(np.median(t[a : a + w])) for a in windows])
    lines = [
        f"Whole run from an empty study to {n} trials, the samplers' runs interleaved trial by "
        f"trial, {repeats} runs (seeds {seed}-{seed + repeats - 1}): median ms per trial over "
        f"{w}-trial windows (the median of the runs'), and each run's ratio to TPE at the end\n",
        "| sampler | "
        + " | ".join(f"trials {a + 1}-{a + w}" for a in windows)
        + " | ratio to TPE at the end: median (each run) |",
        "|---|" + "---:|" * (len(windows) + 1),
    ]
    tpe_end = np.array([m[-1] for m in meds["tpe"]])
    for key, runs in meds.items():
        pooled = np.median(np.array(runs), axis=0)
        ratios = np.array([m[-1] for m in runs]) / tpe_end
        each = ", ".join(f"{x:.2f}" for x in ratios)
        lines.append(
            f"| {key} | "
            + " | ".join(f"{m * 1e3:.1f}" for m in pooled)
            + f" | {float(np.median(ratios)):.2f} ({each}) |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100,1000,10000", help="study sizes, comma-separated")
    parser.add_argument("--next", type=int, default=20, help="trials timed after each size")
    parser.add_argument("--trials", type=int, default=1000, help="whole-run length; 0 skips it")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--repeats", type=int, default=5, help="whole runs, with seeds from --seed on (default 5)"
    )
    parser.add_argument("--out", default=None, help="also write the tables to this file")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if any(s < 1 for s in sizes) or args.next < 2 or args.repeats < 1:
        parser.error(
            "--sizes must be positive, --next >= 2 and --repeats >= 1, got "
            f"{args.sizes=} {args.next=} {args.repeats=}"
        )
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    parts = [growth_table(sizes, n_next=args.next, seed=args.seed)] if sizes else []
    if args.trials > 0:
        parts.append(windows_table(args.trials, seed=args.seed, repeats=args.repeats))
    result = "\n".join(parts)
    print(result)
    if args.out:
        header = (
            f"<!-- python benchmarks/sampler_cost.py --sizes {args.sizes} --next {args.next} "
            f"--trials {args.trials} --seed {args.seed} --repeats {args.repeats}; optuna {optuna.__version__}, "
            f"python {platform.python_version()}, {os.cpu_count()} CPUs -->\n\n"
        )
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(header + result)
        print(f"written to {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
