"""Compare sampler variants of separate ``search_quality.py`` runs against one run's baselines.

Each run keeps its curves in ``search_quality_SUITE[TAG].npz``; a variant (``--prior-kw``) is
run under its own ``--tag``. This prints, pooled over the suite's benchmarks, the median log10
normalized regret at 10/25/50/100 trials, the trials for the pooled median to reach TPE's
100-trial median, and per benchmark: how many are worse than TPE at some checkpoint, how many
do not beat TPE with the defaults at 25 or 50 trials, and how many need more than 33 trials to
reach TPE's 100-trial median (the targets of BENCHMARKS.md and issue 15). A second table gives
each pooled median's 90% bootstrap interval (seeds resampled within each benchmark, 2,000
times): two rows whose intervals do not overlap differ by more than the seed noise; rows whose
intervals overlap may or may not differ.

    python benchmarks/compare_runs.py BASE.npz LABEL=RUN.npz[:METHOD] ...

``BASE.npz`` must hold ``tpe`` and ``tpe+defaults``; METHOD defaults to ``impact``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from hpolib_impact import BUDGETS as CHECKPOINTS
from hpolib_impact import trials_to_reach


def _curves(path: str, method: str) -> dict[str, np.ndarray]:
    if not Path(path).is_file():
        sys.exit(f"no file {path}: give the .npz a search_quality.py run wrote")
    with np.load(path) as data:
        # One precision for every run: on the MLP grid regrets tie exactly, and float64 and
        # float32 copies of one run would break those ties differently.
        return {
            k.split("|", 1)[1]: data[k].astype(np.float32)
            for k in data.files
            if k.split("|", 1)[0] == method
        }


def _median(runs: np.ndarray, trials: int) -> float:
    return float(np.median(runs[:, trials - 1]))


def _reach(runs: np.ndarray, target: float) -> int | None:
    return trials_to_reach(np.median(runs, axis=0), target)


def main(argv: list[str]) -> None:
    if len(argv) < 1 or any("=" not in a for a in argv[1:]):
        sys.exit(__doc__.split("\n\n")[-2].strip())
    tpe, tpd = _curves(argv[0], "tpe"), _curves(argv[0], "tpe+defaults")
    if not tpe or not tpd:
        sys.exit(f"{argv[0]} has no 'tpe' and 'tpe+defaults' curves: run them in the base run")
    rows = [("tpe", tpe), ("tpe+defaults", tpd)]
    for arg in argv[1:]:
        label, spec = arg.split("=", 1)
        path, _, method = spec.partition(":")
        curves = _curves(path, method or "impact")
        if not curves:
            sys.exit(f"{path} has no {method or 'impact'!r} curves: name the method after ':'")
        rows.append((label, curves))
    benches = list(tpe)
    last = CHECKPOINTS[-1]
    pooled_target = _median(np.concatenate([tpe[b] for b in benches]), last)
    print(
        "| method | "
        + " | ".join(f"{c} trials" for c in CHECKPOINTS)
        + " | trials to TPE's 100 (pooled) | worse than TPE | not beating TPE+defaults at 25/50"
        " | over 33 trials to TPE's 100 |"
    )
    print("|---|" + "---:|" * (len(CHECKPOINTS) + 4))
    for label, curves in rows:
        pooled = np.concatenate([curves[b] for b in benches])
        worse = sum(
            any(_median(curves[b], t) > _median(tpe[b], t) for t in CHECKPOINTS) for b in benches
        )
        not_beat = sum(
            any(_median(curves[b], t) >= _median(tpd[b], t) for t in (25, 50)) for b in benches
        )
        slow = sum(
            (r := _reach(curves[b], _median(tpe[b], last))) is None or r > 33 for b in benches
        )
        reach = _reach(pooled, pooled_target)
        print(
            f"| {label} | "
            + " | ".join(f"{_median(pooled, t):.2f}" for t in CHECKPOINTS)
            + f" | {'>100' if reach is None else reach} | {worse}/{len(benches)}"
            f" | {not_beat}/{len(benches)} | {slow}/{len(benches)} |"
        )
    print("\n| method (90% bootstrap interval) | " + " | ".join(f"{c}" for c in CHECKPOINTS) + " |")
    print("|---|" + "---:|" * len(CHECKPOINTS))
    for label, curves in rows:
        cells = []
        for t in CHECKPOINTS:
            lo, hi = _bootstrap_interval([curves[b][:, t - 1] for b in benches])
            cells.append(f"{lo:.2f} .. {hi:.2f}")
        print(f"| {label} | " + " | ".join(cells) + " |")


def _bootstrap_interval(
    per_bench: list[np.ndarray], draws: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """The 5th and 95th percentiles of the pooled median when each benchmark's seeds are
    resampled with replacement."""
    rng = np.random.default_rng(seed)
    medians = np.empty(draws)
    for i in range(draws):
        medians[i] = np.median(
            np.concatenate([v[rng.integers(len(v), size=len(v))] for v in per_bench])
        )
    lo, hi = np.percentile(medians, [5, 95])
    return float(lo), float(hi)


if __name__ == "__main__":
    main(sys.argv[1:])
