"""Real training on the bundled tasks (issue 15): time to target and final best, in wall time.

Each run is one study as a user would make it: a fresh SQLite file, the study created by
hpsearch's own code (:func:`hpsearch.studies.create_study`, what ``hpsearch submit --storage``
calls), the median pruner for every method, and two real ``hpsearch worker`` processes
(``--gpus none --threads 1``: one core each) that train until the trial budget is spent.
Then the trials are read back (``datetime_start``, ``datetime_complete``, values) and the
best-so-far value is followed over wall time since the first trial started.

Tasks: ``digits`` (space ``tabular``, 30 trials x 10 epochs), ``tones`` (space ``audio``, 12
x 5, with ``model.width: 16`` and ``input.n_mels: 32`` pinned for every method so that an epoch
costs ~1 s on one core; ``--unpinned`` searches its whole space) and ``diabetes`` (space
``tabular_regression``, metric val_rmse, 30 x 10). Methods, side by side in one run: ``impact`` (the
default strategy), ``tpe``, ``tpe+defaults`` (strategy ``tpe`` with the space's defaults
enqueued first, through :func:`hpsearch.studies.enqueue_configs`, what ``hpsearch enqueue``
calls) and ``random``. Runs go seed by seed, task by task, the method order rotating with the
seed, so that a change in the machine's load falls on every method alike.

Each task has a wall-clock horizon (``--cap``): once that many seconds have passed since a
study's first trial started, the study is stopped (``hpsearch stop``: running trials finish)
and its workers are ended ``--grace`` seconds later; a trial that completes after the horizon
does not count. Every method gets the same horizon, so ">budget" means "not within the trial
budget nor the horizon".

The target of a task, decided after all its runs:

1. the stricter of the median final best over all runs of all methods, and TPE's median final
   best (the higher one for val_accuracy, the lower one for val_rmse);
2. if that does not strictly beat the defaults-trial value (the best value the defaults trial
   reached in any run: the first trial of ``impact``, the enqueued one of ``tpe+defaults``),
   the target is the least good final best that does beat it;
3. if no run beat the defaults, there is no target (every time to target is "-").

Time to target: seconds from the study's first trial start to the completion of the first
trial that reaches the target. Trials to target: how many trials had finished (complete or
pruned) by then. Medians over seeds; a run that never reaches the target counts as infinite.

    python benchmarks/real_training.py                  # 3 seeds: 36 studies, ~10 min
    python benchmarks/real_training.py --quick          # 1 seed, few trials: ~4-5 min
    python benchmarks/real_training.py [--tasks digits,tones,diabetes]
        [--methods impact,tpe,tpe+defaults,random] [--seeds 3] [--trials N] [--epochs N]
        [--cap SECONDS] [--grace SECONDS] [--out benchmarks/results/real_training.md]

Writes the tables as markdown to ``--out`` (``real_training_quick.md`` with ``--quick``) and
every run's trials as JSON beside it (same stem, ``.json``). Wall time depends on the machine's
load: compare methods within one run only. Each study also pays ~10-20 s that no figure counts
(two workers importing torch, and tearing down); a worker's first trial includes the trainer's
lazy imports (~5 s), alike for every method.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from hpsearch.spaces import default_config
from hpsearch.db.storage import open_storage
from hpsearch.studies import create_study, enqueue_configs, stop_study

optuna.logging.set_verbosity(optuna.logging.WARNING)

RESULTS = Path(__file__).parent / "results"
WORKERS = 2
METHODS: dict[str, str] = {  # method -> the spec's strategy
    "impact": "impact",
    "tpe": "tpe",
    "tpe+defaults": "tpe",
    "random": "random",
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Task:
    """One bundled task: its space and dataset, and the per-study budget of the default run."""

    name: str
    space: str
    dataset: str
    metric: str
    direction: str
    trials: int
    epochs: int
    cap: float  # wall seconds after a study's first trial starts
    fixed: dict[str, Any] = dataclasses.field(default_factory=dict)  # the spec's `fixed`

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"


#: The default run. The audio space is by far the dearest: with its defaults (a 64-channel CNN
#: on 64-band mel spectrograms) an epoch of tones costs ~10-20 s on one core, and its widest
#: configs 10x that. So tones pins two input/size knobs for every method (the spec's `fixed`:
#: `model.width: 16`, `input.n_mels: 32`, ~0.7 s an epoch) and searches the rest of the space;
#: `--unpinned` searches the whole space (then give it a longer --cap). The horizon bounds what
#: any config can cost.
TASKS: dict[str, Task] = {
    "digits": Task(
        name="digits", space="tabular", dataset="digits", metric="val_accuracy",
        direction="maximize", trials=30, epochs=10, cap=150,
    ),
    "tones": Task(
        name="tones", space="audio", dataset="tones", metric="val_accuracy",
        direction="maximize", trials=12, epochs=5, cap=75,
        fixed={"model.width": 16, "input.n_mels": 32},
    ),
    "diabetes": Task(
        name="diabetes", space="tabular_regression", dataset="diabetes", metric="val_rmse",
        direction="minimize", trials=30, epochs=10, cap=120,
    ),
}  # fmt: skip
#: --quick: per task (trials, epochs, cap).
QUICK: dict[str, tuple[int, int, float]] = {
    "digits": (5, 3, 30),
    "tones": (4, 2, 30),
    "diabetes": (5, 3, 30),
}


# --- one run ------------------------------------------------------------------------------------


def _worker_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPSEARCH_")}
    # One core per worker: --threads sets torch's pool; these keep BLAS and OpenMP to one too.
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    return env


def _spec(task: Task, method: str, seed: int, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "space": task.space,
        "task": {"dataset": task.dataset, "epochs": task.epochs},
        "metric": task.metric,
        "budget": {"trials": task.trials},
        "strategy": METHODS[method],
        "pruner": {"name": "median"},
        "fixed": dict(task.fixed),
        "seed": seed,
    }


def _first_start(storage: optuna.storages.BaseStorage, name: str) -> dt.datetime | None:
    study_id = storage.get_study_id_from_name(name)
    starts = [
        t.datetime_start
        for t in storage.get_all_trials(study_id, deepcopy=False)
        if t.datetime_start is not None
    ]
    return min(starts) if starts else None


def _budget_spent(storage: optuna.storages.BaseStorage, name: str, trials: int) -> bool:
    """Whether ``trials`` trials have finished and none runs or waits."""
    study_id = storage.get_study_id_from_name(name)
    states = [t.state for t in storage.get_all_trials(study_id, deepcopy=False)]
    finished = sum(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states)
    busy = any(s in (TrialState.RUNNING, TrialState.WAITING) for s in states)
    return finished >= trials and not busy


def _same_config(params: dict[str, Any], defaults: dict[str, Any]) -> bool:
    if params.keys() != defaults.keys():
        return False
    for key, value in defaults.items():
        got = params[key]
        if isinstance(value, float) or isinstance(got, float):
            if not isinstance(got, int | float) or not math.isclose(got, value, rel_tol=1e-9):
                return False
        elif got != value:
            return False
    return True


def run_study(task: Task, method: str, seed: int, *, folder: Path, grace: float) -> dict[str, Any]:
    """One study of ``task`` with ``method`` and ``seed``, run to its budget by two workers.

    Returns the run: its trials as seconds since the first trial started, the defaults trial,
    and the worker start-up time (not counted in any figure).
    """
    tag = f"{task.name}-{method.replace('+', '-')}-{seed}"
    url = f"sqlite:///{folder / f'{tag}.db'}"
    storage = open_storage(url)
    name = f"rt-{tag}"
    spec = create_study(storage, _spec(task, method, seed, name))
    defaults = default_config(spec.search_space, spec.fixed)
    if method == "tpe+defaults":
        enqueue_configs(storage, name, [defaults])
    searched = {k: v for k, v in defaults.items() if k not in spec.fixed}  # what trials record
    command = [
        sys.executable, "-m", "hpsearch", "worker", "--storage", url, "--study", name,
        "--gpus", "none", "--threads", "1", "-q",
    ]  # fmt: skip
    launched = time.monotonic()
    logs = [folder / f"{tag}-worker-{i + 1}.log" for i in range(WORKERS)]
    workers = []
    for log_path in logs:
        with open(log_path, "wb") as log:
            workers.append(
                subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=_worker_env())
            )
    first: dt.datetime | None = None
    startup: float | None = None
    spent: float | None = None
    stopped = ended = False
    try:
        while any(w.poll() is None for w in workers):
            time.sleep(0.5)
            if first is None:
                first = _first_start(storage, name)
                if first is not None:
                    startup = time.monotonic() - launched
                continue
            if spent is None and _budget_spent(storage, name, task.trials):
                spent = time.monotonic()
            if spent is not None and time.monotonic() - spent > 1:
                for w in workers:  # the budget is spent and nothing runs: they only tear down
                    if w.poll() is None:
                        w.terminate()
                ended = True
            # Optuna stamps trials with the local time of the process (naive datetimes).
            elapsed = (dt.datetime.now() - first).total_seconds()
            if not stopped and elapsed > task.cap:
                stop_study(storage, name)
                stopped = True
            if not ended and elapsed > task.cap + grace:
                for w in workers:
                    if w.poll() is None:
                        w.terminate()
                ended = True
    finally:
        for w in workers:
            if w.poll() is None:
                w.terminate()
        for w in workers:
            try:
                w.wait(timeout=30)
            except subprocess.TimeoutExpired:
                w.kill()
                w.wait()
    failed_workers = [
        (log_path, w.returncode)
        for log_path, w in zip(logs, workers, strict=True)
        if w.returncode not in (0, -15) and not ended
    ]
    for log_path, code in failed_workers:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
        print(f"  worker exited with {code}; {log_path}:\n{tail}", file=sys.stderr)
    trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    first = first or _first_start(storage, name)
    rows = []
    for t in sorted(trials, key=lambda t: t.number):
        if t.datetime_start is None or first is None:
            continue
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                "start_s": (t.datetime_start - first).total_seconds(),
                "end_s": (
                    (t.datetime_complete - first).total_seconds()
                    if t.datetime_complete is not None
                    else None
                ),
                "value": t.value if t.state == optuna.trial.TrialState.COMPLETE else None,
                "epochs": len(t.intermediate_values),
                "defaults": _same_config(t.params, searched),
            }
        )
    return {
        "task": task.name,
        "method": method,
        "seed": seed,
        "startup_s": startup,
        "stopped_at_cap": stopped,
        "trials": rows,
    }


# --- figures ------------------------------------------------------------------------------------


def _better(task: Task, a: float, b: float) -> bool:
    return a > b if task.maximize else a < b


def _reaches(task: Task, value: float, target: float) -> bool:
    return value >= target if task.maximize else value <= target


def _counted(task: Task, run: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's finished trials within the horizon, in order of completion."""
    done = [
        t
        for t in run["trials"]
        if t["state"] in ("COMPLETE", "PRUNED") and t["end_s"] is not None
        and t["end_s"] <= task.cap
    ]  # fmt: skip
    return sorted(done, key=lambda t: t["end_s"])


def final_best(task: Task, run: dict[str, Any]) -> float | None:
    values = [t["value"] for t in _counted(task, run) if t["value"] is not None]
    if not values:
        return None
    return max(values) if task.maximize else min(values)


def defaults_value(task: Task, run: dict[str, Any]) -> float | None:
    for t in _counted(task, run):
        if t["defaults"] and t["value"] is not None:
            return t["value"]
    return None


def span(task: Task, run: dict[str, Any]) -> float:
    done = _counted(task, run)
    return done[-1]["end_s"] if done else 0.0


def to_target(task: Task, run: dict[str, Any], target: float) -> tuple[float, float]:
    """(seconds, trials) until a trial reaches ``target``; (inf, inf) if none did."""
    for k, t in enumerate(_counted(task, run), 1):
        if t["value"] is not None and _reaches(task, t["value"], target):
            return t["end_s"], float(k)
    return math.inf, math.inf


def pick_target(task: Task, runs: list[dict[str, Any]]) -> tuple[float | None, str]:
    """The task's target by the module docstring's rule, and which step of it decided."""
    bests = [b for r in runs if (b := final_best(task, r)) is not None]
    if not bests:
        return None, "no run completed a trial"
    tpe = [b for r in runs if r["method"] == "tpe" and (b := final_best(task, r)) is not None]
    candidates = [statistics.median(bests), *([statistics.median(tpe)] if tpe else [])]
    target = max(candidates) if task.maximize else min(candidates)
    why = "stricter of the median final best (all runs) and TPE's median final best"
    seen = [v for r in runs if (v := defaults_value(task, r)) is not None]
    if seen:
        best_default = max(seen) if task.maximize else min(seen)
        if not _better(task, target, best_default):
            beating = [b for b in bests if _better(task, b, best_default)]
            if not beating:
                return None, f"no run beat the defaults ({best_default:.4f})"
            target = min(beating) if task.maximize else max(beating)
            why = "least good final best that beats the defaults trial"
    return target, why


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def _seconds(x: float) -> str:
    if math.isnan(x):
        return "-"
    return ">budget" if math.isinf(x) else f"{x:.1f}"


def _trials(x: float) -> str:
    if math.isnan(x):
        return "-"
    return ">budget" if math.isinf(x) else f"{x:.0f}"


def _value(x: float | None) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:.4f}"


def _speedup(fast: list[float], slow: list[float], slow_spans: list[float]) -> str:
    """median(slow) / median(fast) as "N.Nx"; a lower bound when the slow one never got there."""
    if not fast or not slow:
        return "-"
    a, b = _median(fast), _median(slow)
    if math.isinf(a):
        return "not reached" if math.isinf(b) else f"< {b / _median(slow_spans or [b]):.2f}x"
    if a <= 0:
        return "-"
    if math.isinf(b):
        return f"> {_median(slow_spans) / a:.1f}x"
    return f"{b / a:.1f}x"


def report(tasks: list[Task], methods: list[str], runs: list[dict[str, Any]]) -> str:
    """The markdown tables of a run."""
    lines: list[str] = []
    summary = [
        (
            "| task | target | rule | impact s | tpe s | speed-up impact vs tpe "
            "| tpe+defaults s | speed-up impact vs tpe+defaults |"
        ),
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for task in tasks:
        mine = [r for r in runs if r["task"] == task.name]
        if not mine:
            continue
        target, why = pick_target(task, mine)
        better = "higher" if task.maximize else "lower"
        lines += [
            f"### {task.name} (space {task.space}, {task.metric}, {better} is better)",
            "",
            (
                f"{task.trials} trials x {task.epochs} epochs, horizon {task.cap:g} s"
                + (f", fixed {task.fixed}" if task.fixed else "")
                + "; target "
                f"{_value(target)} ({why})."
            ),
            "",
            (
                "| method | runs | median s to target | median trials to target | reached "
                "| median final best | defaults-trial value | median s used | worker start-up s |"
            ),
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        ttt: dict[str, list[float]] = {}
        spans: dict[str, list[float]] = {}
        for method in methods:
            rs = [r for r in mine if r["method"] == method]
            if not rs:
                continue
            hits = [to_target(task, r, target) for r in rs] if target is not None else []
            ttt[method] = [h[0] for h in hits]
            spans[method] = [span(task, r) for r in rs]
            bests = [b for r in rs if (b := final_best(task, r)) is not None]
            dvals = [v for r in rs if (v := defaults_value(task, r)) is not None]
            startups = [r["startup_s"] for r in rs if r["startup_s"] is not None]
            reached = sum(1 for h in hits if not math.isinf(h[0]))
            lines.append(
                f"| {method} | {len(rs)} | {_seconds(_median([h[0] for h in hits]))} "
                f"| {_trials(_median([h[1] for h in hits]))} "
                f"| {f'{reached}/{len(rs)}' if target is not None else '-'} "
                f"| {_value(_median(bests))} | {_value(_median(dvals)) if dvals else '-'} "
                f"| {_median(spans[method]):.1f} | {_median(startups):.1f} |"
            )
        lines.append("")
        impact = ttt.get("impact", [])
        cells = [task.name, _value(target), why, _seconds(_median(impact))]
        for other in ("tpe", "tpe+defaults"):
            cells += [
                _seconds(_median(ttt.get(other, []))),
                _speedup(impact, ttt.get(other, []), spans.get(other, [])),
            ]
        summary.append("| " + " | ".join(cells) + " |")
    return "\n".join(["### Time to target, impact against TPE", "", *summary, "", *lines])


# --- main ---------------------------------------------------------------------------------------


def _names(given: str, known: list[str], what: str, parser: argparse.ArgumentParser) -> list[str]:
    names = known if given == "all" else [n.strip() for n in given.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        parser.error(f"unknown {what} {unknown or given!r}; choose from {', '.join(known)} or all")
    return names


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default="all", help=f"comma-separated of {list(TASKS)}, or all")
    parser.add_argument(
        "--methods", default="all", help=f"comma-separated of {list(METHODS)}, or all"
    )
    parser.add_argument("--seeds", type=int, help="seeds 0..N-1 (default 3; 1 with --quick)")
    parser.add_argument("--trials", type=int, help="trial budget of every study (default per task)")
    parser.add_argument("--epochs", type=int, help="epochs per trial (default per task)")
    parser.add_argument("--cap", type=float, help="horizon in seconds (default per task)")
    parser.add_argument(
        "--grace", type=float, default=20.0,
        help="seconds past the horizon before the workers are ended (default 20)",
    )  # fmt: skip
    parser.add_argument(
        "--unpinned", action="store_true", help="search tones' whole space (no `fixed` knobs)"
    )
    parser.add_argument("--quick", action="store_true", help="1 seed, few trials: a smoke run")
    parser.add_argument("--out", type=Path, help="markdown file (default benchmarks/results/)")
    parser.add_argument("--keep", action="store_true", help="keep the study databases and logs")
    args = parser.parse_args(argv)
    for flag in ("seeds", "trials", "epochs"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            parser.error(f"--{flag} must be at least 1, got {getattr(args, flag)}")
    if args.cap is not None and args.cap <= 0:
        parser.error(f"--cap must be > 0 seconds, got {args.cap}")
    names = _names(args.tasks, list(TASKS), "task(s)", parser)
    methods = _names(args.methods, list(METHODS), "method(s)", parser)
    seeds = args.seeds or (1 if args.quick else 3)
    tasks = []
    for n in names:
        task = TASKS[n]
        if args.quick:
            trials, epochs, cap = QUICK[n]
            task = dataclasses.replace(task, trials=trials, epochs=epochs, cap=cap)
        task = dataclasses.replace(
            task,
            trials=args.trials or task.trials,
            epochs=args.epochs or task.epochs,
            cap=args.cap or task.cap,
            fixed={} if args.unpinned else task.fixed,
        )
        tasks.append(task)
    out = args.out or RESULTS / ("real_training_quick.md" if args.quick else "real_training.md")
    plan = [
        (task, methods[(i + seed) % len(methods)], seed)
        for seed in range(seeds)
        for task in tasks
        for i in range(len(methods))
    ]
    folder = Path(tempfile.mkdtemp(prefix="hpsearch-real-training-"))
    load_before = os.getloadavg()
    started = time.monotonic()
    runs: list[dict[str, Any]] = []
    print(f"{len(plan)} studies, {WORKERS} workers each; databases and logs in {folder}",
          file=sys.stderr)  # fmt: skip
    for k, (task, method, seed) in enumerate(plan, 1):
        run = run_study(task, method, seed, folder=folder, grace=args.grace)
        run["space"] = task.space
        runs.append(run)
        best = final_best(task, run)
        finished = len(_counted(task, run))
        print(
            f"[{k}/{len(plan)}] {task.name} {method} seed {seed}: best {_value(best)}, "
            f"{finished} trials in {span(task, run):.0f} s (+{run['startup_s'] or 0:.0f} s "
            f"start-up){', stopped at the horizon' if run['stopped_at_cap'] else ''}; "
            f"{time.monotonic() - started:.0f} s so far",
            file=sys.stderr,
            flush=True,
        )
    elapsed = time.monotonic() - started
    load_after = os.getloadavg()
    header = (
        f"## Real training: time to target and final best\n\n"
        f"`python benchmarks/real_training.py {shlex.join(argv if argv is not None else sys.argv[1:])}`"
        f" on {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC: {len(tasks)} task(s) x "
        f"{len(methods)} method(s) x {seeds} seed(s), {WORKERS} `hpsearch worker` processes "
        f"(`--threads 1`) per study, median pruner, {elapsed / 60:.1f} min in all; 1-minute load "
        f"average {load_before[0]:.1f} before, {load_after[0]:.1f} after, on {os.cpu_count()} "
        f"CPUs. Seconds are wall time since the study's first trial started (worker start-up "
        f"not counted); the target rule is in the script's docstring.\n\n"
    )
    text = header + report(tasks, methods, runs)
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    out.with_suffix(".json").write_text(
        json.dumps({"tasks": [dataclasses.asdict(t) for t in tasks], "runs": runs}, indent=1)
    )
    print(f"\nwrote {out} and {out.with_suffix('.json')}", file=sys.stderr)
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
