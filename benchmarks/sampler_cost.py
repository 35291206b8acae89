"""The sampler's own time per trial, against Optuna's TPE, as a study grows to 1,000 trials.

    python benchmarks/sampler_cost.py [--trials 1000] [--seed 0]

Each sampler runs one in-memory study on the HPOLib space of ``hpolib_impact.py`` with a cheap
synthetic objective (no table needed), and the time of ask + suggest + tell is measured per
trial. Prints the median milliseconds per trial in windows of 100 trials near the start,
middle and end, and the ratio to default TPE in the same window (same run, same machine).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import optuna

sys.path.insert(0, str(Path(__file__).parent))
from hpolib_impact import hpolib_space

from hpsearch.spaces import suggest_config
from hpsearch.strategy import ImpactSampler


def objective(config: dict) -> float:
    return (
        (math.log10(config["init_lr"]) + 2.5) ** 2
        + 0.3 * (math.log2(config["n_units_1"]) - 8) ** 2 / 9
        + config["dropout_1"]
        + 0.5 * config["dropout_2"]
        + 0.1 * (config["lr_schedule"] == "const")
        + 0.05 * (config["activation_fn_1"] == "tanh")
        + 0.02 * math.log2(config["batch_size"])
    )


def per_trial_seconds(sampler: optuna.samplers.BaseSampler, n_trials: int) -> np.ndarray:
    space = hpolib_space()
    study = optuna.create_study(sampler=sampler)
    out = np.empty(n_trials)
    for i in range(n_trials):
        start = time.perf_counter()
        trial = study.ask()
        config = suggest_config(trial, space)
        study.tell(trial, objective(config))
        out[i] = time.perf_counter() - start
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    n = args.trials
    samplers = {
        "random": lambda: optuna.samplers.RandomSampler(seed=args.seed),
        "tpe": lambda: optuna.samplers.TPESampler(seed=args.seed),
        "impact": lambda: ImpactSampler(hpolib_space(), seed=args.seed, n_trials=n),
    }
    times = {}
    for name, make in samplers.items():
        start = time.time()
        times[name] = per_trial_seconds(make(), n)
        print(f"  {name}: {n} trials in {time.time() - start:.0f}s", file=sys.stderr, flush=True)
    w = min(100, n)
    windows = sorted({0, max(0, n // 2 - w), n - w})
    print(f"Sampler time per trial (ask + suggest + tell), median ms over {w}-trial windows\n")
    print(
        "| sampler | "
        + " | ".join(f"trials {a + 1}-{a + w}" for a in windows)
        + " | ratio to TPE at the end |"
    )
    print("|---|" + "---:|" * (len(windows) + 1))
    for name, t in times.items():
        meds = [float(np.median(t[a : a + w])) for a in windows]
        ratio = meds[-1] / float(np.median(times["tpe"][windows[-1] : windows[-1] + w]))
        print(f"| {name} | " + " | ".join(f"{m * 1e3:.1f}" for m in meds) + f" | {ratio:.2f} |")


if __name__ == "__main__":
    main()
