"""The cost of the service path (BENCHMARKS.md §2): a worker's per-trial overhead on a no-op
objective against plain Optuna on the same storage, and throughput with 1, 2, 4, 8 workers.

    python benchmarks/worker_overhead.py [--trials 200] [--repeat 3]
        [--postgres postgresql://USER@HOST:PORT/DB] [--workers 1,2,4,8] [--out FILE]

Overhead: the same search space (hpsearch's demo space, RandomSampler on both sides so the
sampler costs the same), the same database, a no-op objective that reports 3 steps:

- plain Optuna: ``study.optimize`` over ``RDBStorage(url)`` (no heartbeat);
- hpsearch: ``run_worker`` on an hpsearch study: the budget check under the study lock, the
  stale-trial check, heartbeats, the fleet row, prune-request checks, the recorded config.

Throughput (PostgreSQL only): N processes on one study of no-op trials, trials per second
between the first trial's start and the last trial's end (process start-up is not counted):
plain Optuna ``study.optimize`` processes with the random sampler against ``hpsearch worker``
processes with the random strategy, and plain Optuna with its default sampler (TPE) against
``hpsearch worker`` with its default (impact) strategy. Medians over ``--repeat`` runs. Each figure is a ratio or comparison within one
run, on one machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import optuna

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from hpsearch import studies
from hpsearch.spaces import load_space, suggest_config
from hpsearch.db.storage import open_storage, resolve_storage_url
from hpsearch.worker import run_worker

optuna.logging.set_verbosity(optuna.logging.WARNING)


def noop(config: dict, report) -> float:
    """The objective both sides run: three reports and a value, no work."""
    for step in range(1, 4):
        report(0.5, step)
    return 0.5


def _spec(name: str, trials: int, strategy: str = "random") -> dict:
    return {
        "name": name,
        "space": "demo",
        "budget": {"trials": trials},
        "strategy": strategy,
        "pruner": {"name": "none"},
        "seed": 0,
    }


def plain_optuna_seconds(url: str, trials: int) -> float:
    space = load_space("demo")
    study = optuna.create_study(
        study_name=f"plain-{uuid.uuid4().hex[:8]}",
        storage=optuna.storages.RDBStorage(resolve_storage_url(url)),
        sampler=optuna.samplers.RandomSampler(seed=0),
        direction="maximize",
    )

    def objective(trial: optuna.Trial) -> float:
        config = suggest_config(trial, space)
        return noop(config, trial.report)

    start = time.perf_counter()
    study.optimize(objective, n_trials=trials)
    return time.perf_counter() - start


def worker_seconds(url: str, trials: int) -> float:
    name = f"worker-{uuid.uuid4().hex[:8]}"
    studies.create_study(open_storage(url), _spec(name, trials))
    start = time.perf_counter()
    ran = run_worker(url, study=name, objective="worker_overhead:noop", poll_seconds=0.05)
    elapsed = time.perf_counter() - start
    assert ran == trials, f"the worker ran {ran} of {trials} trials"
    return elapsed


_PLAIN_PROCESS = """
import sys, optuna
sys.path.insert(0, {here!r})
import worker_overhead as w
from hpsearch.spaces import load_space, suggest_config
optuna.logging.set_verbosity(optuna.logging.WARNING)
space = load_space("demo")
study = optuna.load_study(study_name={name!r}, storage={url!r}, sampler={sampler})
study.optimize(lambda t: w.noop(suggest_config(t, space), t.report),
               callbacks=[optuna.study.MaxTrialsCallback({trials})])
"""


#: The plain Optuna anchors: their sampler, as the process's code writes it.
_PLAIN_SAMPLERS = {
    "plain": "optuna.samplers.RandomSampler()",
    "plain-tpe": "None",  # Optuna's default, TPE
}


def throughput(url: str, n_workers: int, trials: int, *, strategy: str = "random") -> float:
    """Trials per second of ``n_workers`` processes on one study: hpsearch workers with
    ``strategy``, or plain Optuna ``study.optimize`` processes with a MaxTrialsCallback, the
    anchors: ``strategy="plain"`` with the random sampler, ``"plain-tpe"`` with Optuna's default
    sampler (TPE)."""
    name = f"tput-{strategy}-{n_workers}-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    if strategy in _PLAIN_SAMPLERS:
        url = resolve_storage_url(url)
        optuna.create_study(study_name=name, storage=url, direction="maximize")
        code = _PLAIN_PROCESS.format(
            here=str(HERE), name=name, url=url, trials=trials, sampler=_PLAIN_SAMPLERS[strategy]
        )
        cmd = [sys.executable, "-c", code]
    else:
        studies.create_study(open_storage(url), _spec(name, trials, strategy))
        cmd = [sys.executable, "-m", "hpsearch", "worker", "--storage", url, "--study", name,
               "--gpus", "none", "--objective", "worker_overhead:noop", "-q"]  # fmt: skip
    procs = [subprocess.Popen(cmd, env=env) for _ in range(n_workers)]
    for p in procs:
        if p.wait(timeout=600) != 0:
            raise SystemExit(f"a worker exited with {p.returncode}")
    done = optuna.load_study(study_name=name, storage=resolve_storage_url(url)).get_trials(
        deepcopy=False
    )
    first = min(t.datetime_start for t in done)
    last = max(t.datetime_complete for t in done)
    return len(done) / (last - first).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200, help="no-op trials per measurement")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--postgres", help="a PostgreSQL URL to measure on as well")
    parser.add_argument("--workers", default="1,2,4,8", help="worker counts for throughput")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "worker_overhead.md")
    args = parser.parse_args()

    backends = []
    with tempfile.TemporaryDirectory() as tmp:
        backends.append(("SQLite", f"sqlite:///{tmp}/bench.db"))
        if args.postgres:
            backends.append(("PostgreSQL", args.postgres))
        lines = [
            "## Per-trial overhead on a no-op objective (ms per trial, median of "
            f"{args.repeat} runs of {args.trials} trials)",
            "",
            "| storage | plain Optuna | hpsearch worker | overhead | ratio |",
            "|---|---:|---:|---:|---:|",
        ]
        for label, url in backends:
            plain = statistics.median(
                plain_optuna_seconds(url, args.trials) for _ in range(args.repeat)
            )
            worker = statistics.median(worker_seconds(url, args.trials) for _ in range(args.repeat))
            p_ms, w_ms = 1000 * plain / args.trials, 1000 * worker / args.trials
            lines.append(
                f"| {label} | {p_ms:.1f} | {w_ms:.1f} | {w_ms - p_ms:+.1f} | {w_ms / p_ms:.2f}x |"
            )
            print(lines[-1], flush=True)
        if args.postgres:
            lines += [
                "",
                f"## Throughput on one PostgreSQL study ({args.trials} no-op trials, median of "
                f"{args.repeat})",
                "",
                "| processes | plain Optuna, random | hpsearch, random | ratio | plain Optuna, "
                "default (TPE) | hpsearch, default (impact) | ratio |",
                "|---:|---:|---:|---:|---:|---:|---:|",
            ]
            for n in (int(x) for x in args.workers.split(",")):
                cells = [
                    statistics.median(
                        throughput(args.postgres, n, args.trials, strategy=strategy)
                        for _ in range(args.repeat)
                    )
                    for strategy in ("plain", "random", "plain-tpe", "impact")
                ]
                pr, hr, pt, hi = cells
                lines.append(
                    f"| {n} | {pr:.1f} | {hr:.1f} | {hr / pr:.2f}x | {pt:.1f} | {hi:.1f} | "
                    f"{hi / pt:.2f}x |"
                )
                print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
