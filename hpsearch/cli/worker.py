"""The verbs of the workers: ``worker`` runs trials, ``workers`` lists who runs them."""

from __future__ import annotations

import argparse
import json
import os

from hpsearch.cli import options
from hpsearch.cli.command import Command
from hpsearch.cli.output import Column, render_table
from hpsearch.cli.sources import open_source

__all__ = ["Worker", "Workers"]


class Worker(Command, name="worker", options=(options.STORAGE, options.ARTIFACTS)):
    """pull trials from the study database and run them until no budget is left

    Run trials of hpsearch studies from the shared study database. Needs only the database URL,
    never the service. Without --study, serves every open study. Whoever holds a write token
    writes the specs, so the built-in trainer reads only bundled datasets (digits, diabetes,
    tones) and files under the folders given with --data-root (or $HPSEARCH_DATA_ROOTS); with
    none, bundled datasets only. A path outside them (symlinks followed) fails its trial with a
    one-line reason. `hpsearch try` and `lr-find` are not confined: they read the path you name
    on your own command line.
    """

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--study", help="serve only this study (default: every open study, neediest first)"
        )
        parser.add_argument(
            "--gpus",
            default="auto",
            help="auto (every GPU if there are any, else CPU), all, none (CPU), or indices like "
            "0,1: one worker process per GPU, each seeing only its own",
        )
        parser.add_argument(
            "--per-gpu", type=int, default=1, metavar="N",
            help="start N worker processes on each GPU of --gpus, each pinned to it, so that "
            "small trials share a big GPU (N trials at once per GPU, each with its own memory; "
            "default 1). Needs a GPU: with --gpus none, or none visible, it is an error. "
            "`hpsearch workers` lists them per GPU",
        )  # fmt: skip
        parser.add_argument(
            "--objective",
            help="your own training function, package.module:function(config, report) -> metric "
            "(its trials get no error-analysis reports nor exports: only the built-in trainer "
            "hands over predictions and weights)",
        )
        parser.add_argument(
            "--wait",
            action="store_true",
            help="when no study has budget left, wait for new ones instead of exiting",
        )
        parser.add_argument(
            "--threads",
            type=int,
            help="torch CPU threads per worker (default: torch's choice); on a CPU trials train "
            "in fp32, train.amp included, unless HPSEARCH_CPU_AMP=1 (bf16 autocast)",
        )
        parser.add_argument("--max-trials", type=int, help="exit after running this many trials")
        parser.add_argument(
            "--data-root", action="append", metavar="DIR",
            help="a folder whose files (datasets, pretrained weights) studies may name; repeat "
            "for more (default: $HPSEARCH_DATA_ROOTS, folders separated by "
            f"'{os.pathsep}'; with neither, bundled datasets only)",
        )  # fmt: skip
        parser.add_argument(
            "--checkpoint-dir",
            help="save a checkpoint after every epoch here (a local or shared directory), so a "
            "trial retried after its worker was killed or stopped resumes from its last epoch; "
            "one folder per study, study-<id> (default: $HPSEARCH_CHECKPOINT_DIR, else no "
            "checkpoints)",
        )
        parser.add_argument(
            "--keep-artifacts",
            help="whose predictions are kept for reports: best:N (the N best complete trials; "
            "the rest are removed as better ones come) or all (default: "
            "$HPSEARCH_KEEP_ARTIFACTS, else best:3)",
        )
        parser.add_argument("-q", "--quiet", action="store_true", help="log warnings only")

    def run(self, args: argparse.Namespace) -> int:
        from hpsearch.settings import get_settings
        from hpsearch.worker.gpus import run_workers  # the trainer comes with it, lazily

        return run_workers(
            args.storage,
            gpus=args.gpus,
            per_gpu=args.per_gpu,
            study=args.study,
            objective=args.objective,
            wait=args.wait,
            threads=args.threads,
            max_trials=args.max_trials,
            checkpoint_dir=args.checkpoint_dir or get_settings().checkpoint_dir,
            artifacts=args.artifacts,
            keep_artifacts=args.keep_artifacts,
            data_roots=args.data_root,
        )


def _ago(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 86400:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} d ago"


class Workers(Command, name="workers", options=(options.SOURCE, options.JSON)):
    """list the live workers: host, device, study and trial, last heartbeat

    Every worker process records itself in the study database and beats while it runs; a worker
    is live while its heartbeat is within the grace period. Lists host, pid, device (cuda:GPU
    and the GPU's name; workers started with --per-gpu share one), the study and trial it runs,
    its last heartbeat and how many trials it has run. Rows go by host, then GPU.
    """

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--all", action="store_true", help="also list stopped and dead workers")
        parser.add_argument("--study", help="only workers running a trial of this study now")

    def run(self, args: argparse.Namespace) -> int:
        with open_source(args, doing="reading") as reader:
            listing = reader.workers(all=args.all, study=args.study)
        if args.json:
            print(json.dumps(listing, indent=2))
            return 0
        if not listing["data"]:
            which = "workers" if args.all else "live workers"
            where = f" on study {args.study!r}" if args.study else ""
            print(f"no {which}{where}: start one with `hpsearch worker --storage URL`")
            return 0
        # Grouped by machine and GPU, so that the workers sharing a GPU (--per-gpu) sit together.
        listing["data"].sort(key=lambda w: (w["host"], (w.get("gpu") or "").zfill(8), w["pid"]))
        rows: list[tuple[str, ...]] = [
            (
                w["host"],
                str(w["pid"]),
                w["device"]
                + (f":{w['gpu']}" if w.get("gpu") else "")
                + (f" ({w['gpu_name']})" if w["gpu_name"] else ""),
                w["study"] or "-",
                "-" if w["trial_number"] is None else str(w["trial_number"]),
                _ago(w["seconds_since_seen"]),
                str(w["trials_run"]),
                "live" if w["live"] else "gone",
            )
            for w in listing["data"]
        ]
        header: tuple[str, ...] = (
            "host",
            "pid",
            "device",
            "study",
            "trial",
            "heartbeat",
            "trials",
            "state",
        )
        if not args.all:  # every row is live
            header, rows = header[:-1], [row[:-1] for row in rows]
        print("\n".join(render_table([Column(title=h) for h in header], rows)))
        return 0
