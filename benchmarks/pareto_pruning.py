"""Pruning a trade-off on a real study (issue 18): epochs the ``pareto`` pruner saves against no
pruning, and the hypervolume each reaches.

Each run is one study as a user makes it: a fresh SQLite file, a spec of two objectives on the
bundled digits table (``val_accuracy`` against ``params``, both exact, so two runs of one config
agree), created by :func:`hpsearch.studies.create_study`, and one real ``hpsearch worker``
process (``--gpus none``) that trains until the trial budget is spent. Side by side, seed by
seed: ``pareto`` (the default pruner of a trade-off) and ``none``. Epochs are counted from the
trials (a pruned trial ran to its last rung; a trial that broke nothing and completed ran them
all); the hypervolume is that of the complete trials' front, against one fixed reference point
for every run (accuracy 0, the space's largest parameter count), as a share of the box.

    python benchmarks/pareto_pruning.py [--seeds 3] [--trials 30] [--epochs 9]
        [--out benchmarks/results/pareto_pruning.md]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import TrialState

from hpsearch import studies
from hpsearch.db.storage import open_storage
from hpsearch.strategy.pareto_pruner import RUNGS_ATTR


def spec(name: str, *, seed: int, trials: int, epochs: int, pruner: str) -> dict:
    return {
        "name": name,
        "space": "demo",
        "task": {"dataset": "digits", "epochs": epochs},
        "objectives": {"val_accuracy": "maximize", "params": "minimize"},
        "budget": {"trials": trials},
        "pruner": pruner,
        "seed": seed,
    }


#: The hypervolume's reference point: accuracy 0, and 2 million parameters, more than any demo
#: MLP has (width 512, depth 4, a GLU activation doubling each layer's outputs: about 1.7 M).
REFERENCE = np.array([0.0, 2_000_000.0])


def hypervolume(trials: list[optuna.trial.FrozenTrial]) -> float:
    points = [
        t.values for t in trials if t.state == TrialState.COMPLETE and t.values[1] <= REFERENCE[1]
    ]
    if not points:
        return 0.0
    losses = np.array([[-a, p] for a, p in points])
    ref = np.array([-REFERENCE[0], REFERENCE[1]])
    box = REFERENCE[1] * 1.0  # accuracy spans [0, 1]
    return float(optuna._hypervolume.compute_hypervolume(losses, ref)) / box


def epochs_spent(trials: list[optuna.trial.FrozenTrial], epochs: int) -> int:
    total = 0
    for t in trials:
        if t.state == TrialState.COMPLETE:
            total += epochs
        elif t.state == TrialState.PRUNED:
            rungs = t.user_attrs.get(RUNGS_ATTR) or {}
            total += max((int(e) for e in rungs), default=0)
    return total


def run(seed: int, pruner: str, args: argparse.Namespace, folder: Path) -> dict:
    url = f"sqlite:///{folder}/{pruner}-{seed}.db"
    name = f"digits-{pruner}-{seed}"
    studies.create_study(
        open_storage(url),
        spec(name, seed=seed, trials=args.trials, epochs=args.epochs, pruner=pruner),
    )
    start = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "hpsearch", "worker", "--storage", url, "--study", name,
         "--gpus", "none"],
        check=True, capture_output=True, env={**os.environ},
    )  # fmt: skip
    seconds = time.monotonic() - start
    trials = optuna.load_study(study_name=name, storage=url).trials
    return {
        "epochs": epochs_spent(trials, args.epochs),
        "hv": hypervolume(trials),
        "seconds": seconds,
        "pruned": sum(t.state == TrialState.PRUNED for t in trials),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=9)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "pareto_pruning.md"
    )
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    results: dict[str, list[dict]] = {"pareto": [], "none": []}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            for pruner in ("pareto", "none") if seed % 2 == 0 else ("none", "pareto"):
                got = run(seed, pruner, args, Path(tmp))
                results[pruner].append(got)
                print(f"seed {seed} {pruner:6s} {got}", flush=True)
    full = args.trials * args.epochs
    lines = [
        f"<!-- python benchmarks/pareto_pruning.py --seeds {args.seeds} --trials {args.trials} "
        f"--epochs {args.epochs} -->",
        "",
        f"Two objectives (val_accuracy, params) on digits, space demo, {args.trials} trials x "
        f"{args.epochs} epochs, 1 worker, {args.seeds} seeds; medians over seeds. Hypervolume "
        "against accuracy 0 and 2,000,000 parameters, as a share of that box (1 = a perfect "
        "model with no parameters).",
        "",
        "| pruner | epochs spent | of the unpruned budget | pruned trials | hypervolume | "
        "seconds |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for pruner, rows in results.items():
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        lines.append(
            f"| {pruner} | {med['epochs']:.0f} | {med['epochs'] / full:.0%} | "
            f"{med['pruned']:.0f} | {med['hv']:.4f} | {med['seconds']:.0f} |"
        )
    per_seed = [
        f"- seed {s}: pareto {p['epochs']} epochs, HV {p['hv']:.4f}; none {n['epochs']} epochs, "
        f"HV {n['hv']:.4f}"
        for s, (p, n) in enumerate(zip(results["pareto"], results["none"], strict=True))
    ]
    text = "\n".join(lines + ["", *per_seed]) + "\n"
    print(text)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
