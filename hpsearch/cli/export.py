"""The verb that takes a trained model home: ``hpsearch export NAME [--trial N] OUT/``."""

from __future__ import annotations

import argparse
import sys

from hpsearch.cli import options
from hpsearch.cli.command import Command
from hpsearch.cli.sources import pick_source
from hpsearch.errors import UsageError

__all__ = ["Export"]


class Export(Command, name="export", options=(options.STUDY, options.SOURCE, options.ARTIFACTS)):
    """write a trial's trained model into a folder: weights, config, spec, load.py, README

    Writes into OUT (created when missing) the final weights the trial's worker kept
    (model.safetensors), every knob the trainer ran with (config.json), the study's spec
    (spec.json), load.py (rebuilds the model, loads the weights and prints the validation
    metric it recomputes: `python OUT/load.py`), and README.md with the `hpsearch try` command
    that trains the run again. The best trial by default. Only complete trials run by the
    built-in trainer, with an artifact store, and among the best kept (--keep-artifacts on the
    workers) have weights; for another, one line says why. With --storage it reads the study
    database and the artifact store (--artifacts) directly; with --server the service's.
    """

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("out", metavar="OUT", help="folder to write the files into")
        parser.add_argument(
            "--trial", type=int, help="trial number (default: the study's best trial)"
        )

    def run(self, args: argparse.Namespace) -> int:
        from hpsearch.analysis.export_model import ModelExport

        source = pick_source(storage=args.storage, server=args.server)
        if source.kind == "storage":
            from hpsearch.analysis.artifacts import open_artifact_store
            from hpsearch.analysis.export_model import export_model
            from hpsearch.db.storage import open_storage, redact, resolve_storage_url

            url = resolve_storage_url(source.url)
            _say_where(args, f"reading {redact(url)} ({source.why})")
            storage = open_storage(url, create=False)  # a missing file: one line of its own
            store = open_artifact_store(args.artifacts, storage_url=url)
            exported = export_model(storage, store, args.name, args.trial)
        else:
            if args.artifacts is not None:
                raise UsageError(
                    "--artifacts names a store to read directly, with --storage; through a "
                    "service (--server) the service reads its own store: drop --artifacts"
                )
            from hpsearch.client import Client, masked_url

            _say_where(args, f"reading {masked_url(source.url.rstrip('/'))} ({source.why})")
            with Client(source.url) as client:
                number, data = client.export(args.name, trial=args.trial)
            exported = ModelExport.from_zip(data, study=args.name, trial=number)
        paths = exported.write(args.out)
        print(f"trial {exported.trial} of {args.name} exported to {args.out}:")
        for path in paths:
            print(f"  {path.name}")
        load = next(p for p in paths if p.name == "load.py")
        print(f"check it: python {load}")
        return 0


def _say_where(args: argparse.Namespace, line: str) -> None:
    print(line, file=sys.stderr, flush=True)
    args.source_line = line
    args.source_line_shown = True
