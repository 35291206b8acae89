"""The verb that writes a Slurm job of workers: ``hpsearch slurm [OPTIONS] [-- WORKER OPTIONS]``.

The job is an sbatch array: each array task is one allocation of ``--nodes`` nodes with
``--gpus-per-node`` GPUs each, and ``srun`` starts one ``hpsearch worker --gpus all`` per node,
which starts one worker process per GPU Slurm gave it (``--per-gpu N``: N per GPU), each pinned
to its GPU, as on any machine. Nothing secret is written into the script: the workers read
the study database URL from ``$HPSEARCH_STORAGE`` at job time (the environment sbatch passes
on, or ``--env-file``), and need no API token.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import hpsearch
from hpsearch.cli.command import Command
from hpsearch.errors import UsageError

__all__ = ["Slurm", "sbatch_script"]

# What sbatch accepts, closely enough to catch a typo here rather than in the queue.
_ARRAY = re.compile(r"\d+(-\d+(:\d+)?)?(,\d+(-\d+(:\d+)?)?)*(%\d+)?")
_TIME = re.compile(r"\d+(-\d+)?(:\d+){0,2}|UNLIMITED|INFINITE", re.IGNORECASE)
_NAME = re.compile(r"[\w.,:+@-]+")  # partition, account, job name, GPU type
_MEM = re.compile(r"\d+[KMGT]?", re.IGNORECASE)
_PATH = re.compile(r"[^\s'\"\\]+")  # the log file pattern: sbatch reads no quotes here


def _checked(option: str, value: str | None, pattern: re.Pattern[str], example: str) -> None:
    if value is not None and not pattern.fullmatch(value):
        raise UsageError(f"{option} {value!r} is not what sbatch takes; e.g. {option} {example}")


def _one_line(option: str, value: str) -> None:
    if not value.strip() or any(c in value for c in "\r\n\0"):
        raise UsageError(f"{option} takes one non-empty line; got {value!r} (repeat {option})")


def sbatch_script(
    *,
    worker_args: Sequence[str],
    array: str = "0",
    nodes: int = 1,
    gpus_per_node: int = 1,
    gpu_type: str | None = None,
    time: str | None = None,
    partition: str | None = None,
    account: str | None = None,
    job_name: str = "hpsearch",
    cpus_per_task: int | None = None,
    mem: str | None = None,
    output: str = "hpsearch-%A_%a.out",
    sbatch_options: Sequence[str] = (),
    setup: Sequence[str] = (),
    env_file: str | None = None,
) -> str:
    """The text of an sbatch array job that runs ``hpsearch worker WORKER_ARGS`` on every node.

    ``worker_args`` are the worker's options (``--gpus all`` and the rest), written quoted;
    they must hold no secret (no ``--storage``): the script reads ``$HPSEARCH_STORAGE`` when
    the job runs. The other arguments are sbatch's options of the same names; ``setup`` lines
    (``module load ...``, ``source venv/bin/activate``) run before the workers, after
    ``env_file`` (a file of ``NAME=value`` lines, sourced) if given. Values are checked
    (:class:`UsageError` for one sbatch would refuse or that would break the script).
    """
    _checked("--array", array, _ARRAY, "0-7%2")
    _checked("--time", time, _TIME, "1-00:00:00")
    for option, value in (
        ("--partition", partition), ("--account", account), ("--job-name", job_name),
        ("--gpu-type", gpu_type),
    ):  # fmt: skip
        _checked(option, value, _NAME, "gpu")
    _checked("--mem", mem, _MEM, "64G")
    _checked("--output", output, _PATH, "logs/hpsearch-%A_%a.out")
    for option, count in (("--nodes", nodes), ("--gpus-per-node", gpus_per_node)):
        if count < 1:
            raise UsageError(f"{option} takes a number of at least 1; got {count}")
    if cpus_per_task is not None and cpus_per_task < 1:
        raise UsageError(f"--cpus-per-task takes a number of at least 1; got {cpus_per_task}")
    for line in sbatch_options:
        _one_line("--sbatch", line)
        if not line.startswith("-"):
            raise UsageError(
                f"--sbatch takes an sbatch option like --sbatch=--qos=high; got {line!r}"
            )
    for line in setup:
        _one_line("--setup", line)
    if env_file is not None:
        _one_line("--env-file", env_file)

    gres = f"gpu:{gpu_type}:{gpus_per_node}" if gpu_type else f"gpu:{gpus_per_node}"
    directives = [
        f"--job-name={job_name}",
        f"--array={array}",
        f"--nodes={nodes}",
        "--ntasks-per-node=1",
        f"--gres={gres}",
    ]
    directives += [f"--cpus-per-task={cpus_per_task}"] * (cpus_per_task is not None)
    directives += [f"--mem={mem}"] * (mem is not None)
    directives += [f"--time={time}"] * (time is not None)
    directives += [f"--partition={partition}"] * (partition is not None)
    directives += [f"--account={account}"] * (account is not None)
    directives += [f"--output={output}", *sbatch_options]

    fail = 'echo "hpsearch slurm job: $1" >&2; exit 1'
    lines = [
        "#!/bin/bash",
        f"# hpsearch workers on Slurm, written by `hpsearch slurm` ({hpsearch.__version__}).",
        "# Submit it with: sbatch THIS_FILE",
        "#",
        f"# Each array task is one allocation of {nodes} node(s) with {gpus_per_node} GPU(s) each;",
        "# srun starts one `hpsearch worker --gpus all` per node, which starts one worker process",
        "# per GPU (N with --per-gpu N), each pinned to its GPU. No secret is written here: at job",
        "# time the workers read the environment sbatch passes on (by default the submitting",
        "# shell's, sbatch --export=ALL)" + (" and the --env-file below:" if env_file else ":"),
        "#   HPSEARCH_STORAGE    the study database URL (PostgreSQL the nodes reach); required",
        "#   HPSEARCH_ARTIFACTS, HPSEARCH_DATA_ROOTS, HPSEARCH_CHECKPOINT_DIR: as for the worker",
        "# Workers need no HPSEARCH_API_TOKEN: they talk to the database, never to the service.",
        *(f"#SBATCH {d}" for d in directives),
        "",
        "set -eo pipefail",  # not -u: `module load` and some activate scripts trip on it
        f"fail() {{ {fail}; }}",
    ]
    if env_file is not None:
        quoted = shlex.quote(env_file)
        lines += [
            f"[ -r {quoted} ] || fail {shlex.quote(f'cannot read --env-file {env_file}')}",
            f"set -a; . {quoted}; set +a",
        ]
    lines += list(setup)
    lines += [
        '[ -n "${HPSEARCH_STORAGE:-}" ] || fail "HPSEARCH_STORAGE is not set: export the study '
        'database URL before sbatch (or use hpsearch slurm --env-file FILE)"',
        'case "$HPSEARCH_STORAGE" in sqlite:*)',
        '  if [ "${SLURM_JOB_NUM_NODES:-1}" -gt 1 ] || [ "${SLURM_ARRAY_TASK_COUNT:-1}" -gt 1 ]',
        "  then",
        '    fail "HPSEARCH_STORAGE is a SQLite file; workers on several nodes need PostgreSQL"',
        "  fi;;",
        "esac",
        "# One task per node; it sees the node's GPUs (CUDA_VISIBLE_DEVICES, set by Slurm).",
        'exec srun --nodes="${SLURM_JOB_NUM_NODES:-1}" --ntasks-per-node=1 --label'
        ' ${SLURM_CPUS_PER_TASK:+--cpus-per-task="$SLURM_CPUS_PER_TASK"}'
        f" hpsearch worker {shlex.join(worker_args)}",
    ]
    return "\n".join(lines) + "\n"


def _worker_options(
    extra: Sequence[str], *, study: str | None, per_gpu: int, wait: bool
) -> list[str]:
    """The worker's argv in the script, checked against ``hpsearch worker``'s own parser."""
    from hpsearch.cli import build_parser  # here: hpsearch.cli imports this module
    from hpsearch.worker.gpus import MAX_PER_GPU

    argv = ["--gpus", "all"]
    argv += ["--per-gpu", str(per_gpu)] if per_gpu != 1 else []
    argv += ["--study", study] if study else []
    argv += ["--wait"] if wait else []
    argv += list(extra)
    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said), contextlib.redirect_stdout(said):
            parsed = build_parser().parse_args(["worker", *argv])
    except SystemExit as e:
        last = (said.getvalue().strip().splitlines() or [""])[-1]
        reason = "drop --help" if e.code == 0 else last.partition("error: ")[2] or last
        raise UsageError(
            f"the options after -- go to `hpsearch worker`, which refused them: {reason} (see "
            "`hpsearch worker --help`)"
        ) from None
    if parsed.storage is not None:
        raise UsageError(
            "--storage after --: the script must not hold the database URL (it may hold a "
            "password); export HPSEARCH_STORAGE before sbatch, or use --env-file FILE"
        )
    if parsed.gpus != "all":
        raise UsageError(
            f"--gpus {parsed.gpus} after --: the job runs `--gpus all`, the GPUs Slurm gives "
            "each node; ask for them with --gpus-per-node K (and --gpu-type)"
        )
    if not 1 <= parsed.per_gpu <= MAX_PER_GPU:
        raise UsageError(f"--per-gpu takes a number from 1 to {MAX_PER_GPU}; got {parsed.per_gpu}")
    return argv


class Slurm(Command, name="slurm"):
    """write an sbatch array job that starts one worker per GPU on every node

    Writes (to stdout, or to --out FILE) a Slurm batch script: each array task (--array) is an
    allocation of --nodes nodes with --gpus-per-node GPUs each, and starts one `hpsearch worker
    --gpus all` per node, which runs one worker process per GPU (N with --per-gpu N), each
    pinned to its GPU. The study database URL is never written into it: the workers read
    $HPSEARCH_STORAGE (PostgreSQL) at job time, from the environment sbatch passes on or from
    --env-file. Options after -- go to `hpsearch worker` as they are (checked here), e.g.
    `hpsearch slurm --nodes 2 --gpus-per-node 4 -- --data-root /scratch/data`. Submit with
    `sbatch FILE`.
    """

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "worker_options", nargs="*", metavar="-- WORKER OPTIONS",
            help="`hpsearch worker` options for every worker, after -- (not --storage, --gpus)",
        )  # fmt: skip
        parser.add_argument("--out", metavar="FILE", help="write the script here (default: stdout)")
        parser.add_argument(
            "--study", help="the workers serve only this study (default: every open study)"
        )
        parser.add_argument(
            "--per-gpu", type=int, default=1, metavar="N",
            help="worker processes per GPU, passed to `hpsearch worker --per-gpu` (default 1)",
        )  # fmt: skip
        parser.add_argument(
            "--wait", action="store_true",
            help="workers wait for new studies until the time limit instead of ending the job "
            "when no study has budget left",
        )  # fmt: skip
        job = parser.add_argument_group("sbatch options, written as #SBATCH lines")
        job.add_argument(
            "--array", default="0", metavar="SPEC",
            help="array task indices, as sbatch takes them: 0-7 for 8 allocations, 0-7%%2 to "
            "run at most 2 at once (default 0: one)",
        )  # fmt: skip
        job.add_argument("--nodes", type=int, default=1, help="nodes per array task (default 1)")
        job.add_argument(
            "--gpus-per-node", type=int, default=1, metavar="K",
            help="GPUs per node, as --gres=gpu:K; one worker each (default 1)",
        )  # fmt: skip
        job.add_argument("--gpu-type", metavar="TYPE", help="GPU type: --gres=gpu:TYPE:K")
        job.add_argument("--time", help="time limit, e.g. 04:00:00 or 1-00:00:00")
        job.add_argument("--partition", help="partition (queue)")
        job.add_argument("--account", help="account to charge")
        job.add_argument("--job-name", default="hpsearch", help="job name (default hpsearch)")
        job.add_argument("--cpus-per-task", type=int, help="CPUs per node, for all its workers")
        job.add_argument("--mem", help="memory per node, e.g. 64G")
        job.add_argument(
            "--output", default="hpsearch-%A_%a.out", metavar="PATTERN",
            help="log file pattern (default hpsearch-%%A_%%a.out: job id, array index)",
        )  # fmt: skip
        job.add_argument(
            "--sbatch", action="append", default=[], metavar="OPTION",
            help="any other sbatch option, repeatable, written with =: --sbatch=--qos=high",
        )  # fmt: skip
        job.add_argument(
            "--setup", action="append", default=[], metavar="LINE",
            help="a shell line to run before the workers, repeatable: --setup 'module load "
            "cuda' --setup 'source ~/venv/bin/activate' (hpsearch must be on PATH after them)",
        )  # fmt: skip
        job.add_argument(
            "--env-file", metavar="FILE",
            help="a file of NAME=value lines the job sources, e.g. HPSEARCH_STORAGE=... (keep "
            "it private: chmod 600); its path, not its contents, goes into the script",
        )  # fmt: skip

    def run(self, args: argparse.Namespace) -> int:
        worker_args = _worker_options(
            args.worker_options, study=args.study, per_gpu=args.per_gpu, wait=args.wait
        )
        script = sbatch_script(
            worker_args=worker_args,
            array=args.array,
            nodes=args.nodes,
            gpus_per_node=args.gpus_per_node,
            gpu_type=args.gpu_type,
            time=args.time,
            partition=args.partition,
            account=args.account,
            job_name=args.job_name,
            cpus_per_task=args.cpus_per_task,
            mem=args.mem,
            output=args.output,
            sbatch_options=args.sbatch,
            setup=args.setup,
            env_file=args.env_file,
        )
        if args.out is None:
            sys.stdout.write(script)
            return 0
        out = Path(args.out)
        try:
            out.write_text(script)
            out.chmod(0o755)
        except OSError as e:
            raise UsageError(f"--out {args.out}: cannot write it ({e.strerror})") from None
        print(f"wrote {out}: submit it with `sbatch {out}`")
        return 0
