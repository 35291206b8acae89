"""How long the ``hpsearch`` command takes to start, and what a worker costs before it trains
(issue 17's start-up figures, issue 16 §4 "Heavy workers" and "Slow image defaults on a CPU").

    python benchmarks/startup.py [--runs 5] [--skip-workers] [--skip-try] [--out FILE]

Every figure is a fresh process, as a user starts it. Wall seconds grow with the machine's load;
the CPU seconds (user + system of the process) much less so, and the table starts with the load
average:

- the verbs that do not train (``--help``, ``status`` on an empty study database, ``best``,
  ``submit`` of a spec to a ``--storage`` SQLite URL, ``spaces``, and importing the REST app as
  ``hpsearch serve`` does): wall seconds, the median of ``--runs`` runs, and whether torch, timm,
  torchvision or sklearn got imported (read from the process itself, ``sys.modules`` at exit);
- a worker (``hpsearch worker --max-trials 1 --gpus none``) on a one-trial, one-epoch study of
  the bundled tabular (digits) and audio (tones) data: seconds from the process's start to its
  first trial being claimed (the trial's ``datetime_start``), to the trial's end, and the
  process's peak RSS (``ru_maxrss``);
- ``hpsearch try image --epochs 2`` (the CPU defaults of
  :data:`hpsearch.train.core.family_knobs.CPU_DEFAULTS` on the bundled digits): wall seconds.

The figures depend on the machine and its load; compare rows of one run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
HEAVY = ("torch", "timm", "torchvision", "sklearn")

# Runs argv[1:] as `python -m hpsearch ...` in this process (so sys.modules can be read at the
# end) and prints the heavy packages that got imported on stderr's last line.
_PROBE = r"""
import atexit, json, sys
def _report():
    heavy = [m for m in %r if m in sys.modules]
    sys.stderr.write("\nIMPORTED " + json.dumps(heavy) + "\n")
atexit.register(_report)
if sys.argv[1] == "-c":
    exec(sys.argv[2])
else:
    from hpsearch.cli import main
    try:
        code = main(sys.argv[1:])
    except SystemExit as e:  # --help
        code = e.code
    sys.stdout.flush()
    raise SystemExit(code)
""" % (HEAVY,)

# Runs argv[1:] as a child and prints its peak RSS (KiB) as the last line of stderr.
_RSS = r"""
import resource, subprocess, sys
code = subprocess.call(sys.argv[1:])
sys.stderr.write("\nMAXRSS %d\n" % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
raise SystemExit(code)
"""


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(args: list[str], *, env: dict[str, str]) -> tuple[float, float, list[str], int]:
    """Wall and CPU seconds of ``python -c _PROBE args``, the heavy modules it imported, and
    its exit code."""
    start, cpu = time.perf_counter(), _child_cpu()
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, env=env
    )
    seconds, cpu = time.perf_counter() - start, _child_cpu() - cpu
    imported: list[str] = []
    for line in done.stderr.splitlines():
        if line.startswith("IMPORTED "):
            imported = json.loads(line.removeprefix("IMPORTED "))
    return seconds, cpu, imported, done.returncode


def _optuna_cli(*argv: str) -> str:
    """Code for ``python -c`` that runs plain Optuna's CLI with ``argv``."""
    return (
        f"import sys; sys.argv = ['optuna', *{list(argv)!r}]; from optuna.cli import main; main()"
    )


def _verb_rows(
    runs: int, workdir: Path, env: dict[str, str]
) -> list[tuple[str, float, float, str]]:
    import optuna

    empty = workdir / "empty.db"
    optuna.storages.RDBStorage(f"sqlite:///{empty}")  # Optuna's tables, no study
    url = f"sqlite:///{empty}"
    spec = workdir / "study.yaml"
    submit_db = workdir / "submit.db"
    cases: list[tuple[str, list[str]]] = [
        ("hpsearch --help", ["--help"]),
        ("hpsearch status (empty database)", ["status", "--storage", url]),
        ("hpsearch best NAME (no such study)", ["best", "nosuch", "--storage", url]),
        ("hpsearch spaces", ["spaces"]),
        ("hpsearch submit STUDY.yaml --storage", ["submit", str(spec), "--storage", ""]),
        ("import hpsearch.service.app (serve)", ["-c", "import hpsearch.service.app"]),
        ("import hpsearch.worker (worker)", ["-c", "import hpsearch.worker"]),
        # Plain Optuna's own CLI beside them, in the same run: the floor hpsearch stands on.
        ("optuna --help", ["-c", _optuna_cli("--help")]),
        (
            "optuna studies --storage (empty database)",
            ["-c", _optuna_cli("studies", "--storage", url)],
        ),
        (
            "optuna create-study --storage (a new SQLite file)",
            ["-c", _optuna_cli("create-study", "--study-name", "bench", "--storage", "FRESH")],
        ),
    ]
    rows = []
    for label, args in cases:
        times, cpus, imported = [], [], []
        for i in range(runs):
            if "create-study" in args[-1]:  # optuna create-study into a new file each run
                submit_db.unlink(missing_ok=True)
                args = [args[0], args[1].replace("FRESH", f"sqlite:///{submit_db}")]
            elif args[0] == "submit":
                submit_db.unlink(missing_ok=True)
                spec.write_text(f"name: bench-{i}\nspace: demo\nbudget: {{trials: 5}}\nseed: 0\n")
                args = [*args[:-1], f"sqlite:///{submit_db}"]
            seconds, cpu, imported, code = _timed(args, env=env)
            if code not in (0, 1):  # `best nosuch` answers 1 by design
                raise SystemExit(f"{label}: exit code {code}")
            times.append(seconds)
            cpus.append(cpu)
        rows.append(
            (
                label,
                statistics.median(times),
                statistics.median(cpus),
                ", ".join(imported) or "none",
            )
        )
    return rows


def _worker_row(
    family: str, space: str, dataset: str, workdir: Path, env: dict[str, str]
) -> tuple[str, float, float, float, float]:
    """(family, s to claim, s to the trial's end, s of the whole process, peak RSS MiB)."""
    import optuna

    from hpsearch.cli.database import DatabaseClient

    db = workdir / f"worker-{family}.db"
    db.unlink(missing_ok=True)
    url = f"sqlite:///{db}"
    name = f"startup-{family}"
    DatabaseClient(url, create=True).create_study(
        {
            "name": name,
            "space": space,
            "task": {"dataset": dataset, "epochs": 1},
            "budget": {"trials": 1},
            "pruner": {"name": "none"},
            "seed": 0,
        }
    )
    cmd = [sys.executable, "-m", "hpsearch", "worker", "--storage", url, "--study", name]
    cmd += ["--gpus", "none", "--max-trials", "1", "--quiet"]
    started = dt.datetime.now()
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _RSS, *cmd], capture_output=True, text=True, env=env
    )
    total = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"worker ({family}) failed:\n{done.stderr[-2000:]}")
    rss_kib = int(done.stderr.strip().splitlines()[-1].split()[1])
    trial = optuna.load_study(study_name=name, storage=url).trials[0]
    if trial.state != optuna.trial.TrialState.COMPLETE:
        raise SystemExit(f"worker ({family}): the trial ended {trial.state.name}")
    claim = (trial.datetime_start - started).total_seconds()
    end = (trial.datetime_complete - started).total_seconds()
    return family, claim, end, total, rss_kib / 1024


def _try_image(workdir: Path, env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "hpsearch", "try", "image", "--epochs", "2"],
        capture_output=True,
        text=True,
        env=env,
        cwd=workdir,
    )
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"try image failed:\n{done.stderr[-2000:]}")
    last = [line for line in done.stdout.splitlines() if line.strip()][-1]
    return seconds, last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per verb (the median is shown)")
    parser.add_argument("--skip-workers", action="store_true", help="no worker rows")
    parser.add_argument("--skip-try", action="store_true", help="no `try image` row")
    parser.add_argument("--out", help="also write the tables (markdown) to this file")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("HPSEARCH_STORAGE", None)
    env.pop("HPSEARCH_SERVER", None)
    lines: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        env["HOME"] = str(workdir)  # no user config or caches of the caller's are read
        load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
        lines += [
            f"{os.cpu_count()} CPUs, load average {load} at the start",
            "",
            f"| verb | wall s (median of {args.runs}) | CPU s (median) | heavy packages imported |",
            "|---|---:|---:|---|",
        ]
        for label, seconds, cpu, imported in _verb_rows(args.runs, workdir, env):
            lines.append(f"| `{label}` | {seconds:.2f} | {cpu:.2f} | {imported} |")
        print("\n".join(lines), flush=True)  # the rest takes minutes
        shown = len(lines)
        if not args.skip_workers:
            lines += [
                "",
                "| worker (1 trial, 1 epoch, CPU) | s to claim | s to trial end | s process "
                "| peak RSS MiB |",
                "|---|---:|---:|---:|---:|",
            ]
            for family, space, dataset in (
                ("tabular", "tabular", "digits"),
                ("audio", "audio", "tones"),
            ):
                row = _worker_row(family, space, dataset, workdir, env)
                lines.append(
                    f"| {row[0]} | {row[1]:.1f} | {row[2]:.1f} | {row[3]:.1f} | {row[4]:.0f} |"
                )
        if not args.skip_try:
            seconds, last = _try_image(workdir, env)
            lines += [
                "",
                "| `hpsearch try image --epochs 2` (CPU defaults, digits) | wall s |",
                "|---|---:|",
                f"| {last.strip()} | {seconds:.1f} |",
            ]
    text = "\n".join(lines)
    print("\n".join(lines[shown:]))
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
