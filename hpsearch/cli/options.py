"""The options several verbs share, each defined once, on a parent parser.

A verb names the ones it takes in :attr:`hpsearch.cli.command.Command.options`. ``--storage``
means the same everywhere: the study database, worked on directly. The verbs that can also ask a
service take :data:`SOURCE` (``--storage`` and ``--server``); those that work on the database
only take :data:`STORAGE`. Which one is used is decided in :mod:`hpsearch.cli.sources`.
"""

from __future__ import annotations

import argparse

__all__ = ["ARTIFACTS", "JSON", "LISTEN", "SOURCE", "STORAGE", "STUDY", "TRAINING_INPUT"]


def _parent() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(add_help=False)


#: --storage: the study database, used directly.
STORAGE = _parent()
STORAGE.add_argument(
    "--storage", metavar="URL",
    help="the study database URL, worked on directly as Optuna's CLI does: no service, no "
    "token (default: $HPSEARCH_STORAGE; else a verb that also takes --server asks the service, "
    "the others use sqlite:///hpsearch.db). Reads never create a database",
)  # fmt: skip

#: --storage and --server: where a verb reads or changes studies (see
#: :data:`~hpsearch.cli.sources.SOURCE_RULE`).
SOURCE = argparse.ArgumentParser(add_help=False, parents=[STORAGE])
SOURCE.add_argument(
    "--server", metavar="URL",
    help="ask this hpsearch service (default: $HPSEARCH_SERVER unless $HPSEARCH_STORAGE is "
    "set, else http://127.0.0.1:8000)",
)  # fmt: skip

#: --json: print what the API returns instead of a table.
JSON = _parent()
JSON.add_argument("--json", action="store_true", help="print JSON")

#: NAME: the study a verb works on.
STUDY = _parent()
STUDY.add_argument("name", help="study name")

#: --artifacts: where the trials' kept predictions and weights are.
ARTIFACTS = _parent()
ARTIFACTS.add_argument(
    "--artifacts",
    help="artifact store of the trials' kept predictions and weights (report, export): a "
    "directory or s3://bucket/prefix, the same for every worker and reader; 'off' for none "
    "(default: $HPSEARCH_ARTIFACTS, else the folder hpsearch-artifacts beside a SQLite study "
    "database; for PostgreSQL reports are off unless set)",
)

#: --host and --allowed-host: what a server listens on and the host names it answers to.
LISTEN = _parent()
LISTEN.add_argument(
    "--host",
    default="127.0.0.1",
    help="interface to listen on (default 127.0.0.1; 0.0.0.0 for all)",
)
LISTEN.add_argument(
    "--allowed-host", action="append", default=[], metavar="HOST",
    help="a host name clients use to reach this server (its Host header), repeatable or "
    "comma-separated; requests naming another host get 400, against DNS rebinding. Always "
    "allowed: localhost, 127.0.0.1, ::1 and --host unless 0.0.0.0; '*.example.com' allows "
    "subdomains, '*' any (default: also $HPSEARCH_ALLOWED_HOSTS)",
)  # fmt: skip

#: SPACE, --set, --dataset, --target, --seed, --device: what `try` and `lr-find` train.
TRAINING_INPUT = _parent()
TRAINING_INPUT.add_argument("space", help="space name (see `hpsearch spaces`) or YAML path")
TRAINING_INPUT.add_argument(
    "--set", action="append", default=[], metavar="KEY=VALUE",
    help="pin a parameter, e.g. --set optim.name=sgd --set optim.weight_decay=0.01 (values "
    "read as YAML scalars, checked against the space)",
)  # fmt: skip
TRAINING_INPUT.add_argument(
    "--dataset", help="bundled dataset name or a path (default: the family's bundled one)"
)
TRAINING_INPUT.add_argument(
    "--target",
    help="the label column of a CSV or Parquet --dataset (default: the column named 'target', "
    "else the last column; the one used is printed)",
)
TRAINING_INPUT.add_argument(
    "--seed", type=int, default=0,
    help="seed of training (the model, the batches) and of --random's configs (default 0)",
)  # fmt: skip
TRAINING_INPUT.add_argument(
    "--device", choices=["cpu", "cuda"], help="where to train (default: CUDA if present)"
)
