"""The ``hpsearch`` command: one verb per job, ``--help`` on each.

Each verb is a :class:`~hpsearch.cli.command.Command` beside its own options, in the module of
its group: :mod:`~hpsearch.cli.local` (demo, spaces, try, lr-find), :mod:`~hpsearch.cli.serve`,
:mod:`~hpsearch.cli.worker` (worker, workers), :mod:`~hpsearch.cli.results` (status, best,
trials, importance, report), :mod:`~hpsearch.cli.studies` (submit and the verbs that change a
study), :mod:`~hpsearch.cli.export` (export) and :mod:`~hpsearch.cli.tokens`. The options
they share are defined once in :mod:`~hpsearch.cli.options`; where studies are read is decided
in :mod:`~hpsearch.cli.sources`; tables are drawn by :func:`hpsearch.cli.output.render_table`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from hpsearch import __version__
from hpsearch.cli.command import Command, add_command
from hpsearch.cli.export import Export
from hpsearch.cli.local import Demo, LrFind, Spaces, Try
from hpsearch.cli.results import Best, Importance, Pareto, Report, Status, Trials
from hpsearch.cli.serve import Dashboard, Serve
from hpsearch.cli.slurm import Slurm
from hpsearch.cli.sources import SOURCE_RULE
from hpsearch.cli.studies import Delete, Enqueue, Extend, Prune, Pruner, Resume, Stop, Submit
from hpsearch.cli.tokens import Token
from hpsearch.cli.worker import Worker, Workers
from hpsearch.errors import HpsearchError

__all__ = ["COMMANDS", "SOURCE_RULE", "build_parser", "main"]

#: Every verb, in the order of ``hpsearch --help``.
COMMANDS: tuple[type[Command], ...] = (
    Demo, Serve, Dashboard, Worker, Slurm, Submit, Status, Workers, Best, Pareto, Importance,
    Report, Export, Stop, Resume, Extend, Delete, Prune, Trials, Enqueue, Pruner, Spaces, Try,
    LrFind, Token,
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every verb."""
    parser = argparse.ArgumentParser(
        prog="hpsearch",
        description=(
            "Hyperparameter search for neural-network training. Search spaces come from a "
            "training checklist, weighted by impact; workers on any number of machines pull "
            "trials from one shared study database. Start with `hpsearch demo`."
        ),
        epilog=SOURCE_RULE,
    )
    parser.add_argument("--version", action="version", version=f"hpsearch {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for command in COMMANDS:
        add_command(verbs, command())
    return parser


def _fast_exit() -> None:
    """At interpreter exit, freeze the garbage collector before Python tears the modules down.

    Once torch and timm are imported, the collector's passes over their objects at exit take
    seconds (3 s after a worker's trial, measured in benchmarks/startup.py); the process is
    ending and the OS frees its memory. atexit handlers, ``finally`` blocks and buffer flushes
    still run. Only at exit: a process that calls :func:`main` and goes on is not affected.
    """
    import atexit

    atexit.unregister(_freeze_at_exit)  # once, however often main runs in one process
    atexit.register(_freeze_at_exit)


def _freeze_at_exit() -> None:
    import contextlib
    import gc

    engine_cls = getattr(sys.modules.get("sqlalchemy.engine"), "Engine", None)
    if engine_cls is not None:
        # Close the database connections first, as the collector would have: a SQLite file in
        # WAL mode is checkpointed and its -wal and -shm files removed when the last one closes.
        # type(), not isinstance(): some objects (torch.distributed.reduce_op) warn on
        # __class__. A connection that cannot close now (a SQLite one opened by another
        # thread) is left to the OS, as before, without the pool logging its refusal.
        logging.getLogger("sqlalchemy.pool").disabled = True
        for obj in gc.get_objects():
            if issubclass(type(obj), engine_cls):
                with contextlib.suppress(Exception):
                    obj.dispose()
    gc.freeze()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``hpsearch`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    _fast_exit()
    logging.basicConfig(
        level=logging.WARNING if getattr(args, "quiet", False) else logging.INFO,
        format="%(asctime)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise here
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # hpsearch logs each trial itself
    try:
        code: int = args.func(args)
        sys.stdout.flush()  # here, so that a reader gone (`| head`) is caught below
        return code
    except BrokenPipeError:
        # The reader of stdout left (`hpsearch best NAME | head`): it has what it wanted. Point
        # stdout at /dev/null so that the interpreter's last flush does not complain.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 0
    except HpsearchError as e:
        where = getattr(args, "source_line", "")
        shown = getattr(args, "source_line_shown", False)
        suffix = f" [{where}]" if where and not shown else ""  # reads said it already
        print(f"hpsearch {args.verb}: error: {e}{suffix}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
