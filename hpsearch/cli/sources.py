"""Where a verb reads and changes studies: the study database itself, or an hpsearch service.

One rule, :data:`SOURCE_RULE`, decides it for every verb, and this module is its only place:
:func:`pick_source` applies it to the verbs that can ask a service, :func:`database_source` to
those that work on the study database only, and :func:`open_source` opens the client chosen.
Nothing here imports Optuna until a database is opened, so ``--help`` stays quick.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any, Literal

from hpsearch.errors import UsageError

__all__ = ["SOURCE_RULE", "Source", "database_source", "open_source", "pick_source"]

#: The rule of every verb that reads or changes studies, for `hpsearch --help` and the README.
SOURCE_RULE = (
    "Where studies are read and changed: status, best, trials, importance, workers, submit, "
    "stop, resume, extend, delete, prune, enqueue and pruner work either on the study database itself "
    "(--storage URL, as Optuna's CLI does: no service, no token) or through an hpsearch service "
    "(--server URL). One rule picks: a flag on the command line wins (giving both is an error); "
    "else $HPSEARCH_STORAGE if set; else $HPSEARCH_SERVER if set (with both set, the database "
    "wins, and a read's line on stderr says so); else the service at http://127.0.0.1:8000. "
    "Each read says on stderr where it read, e.g. `reading sqlite:///hpsearch.db (--storage)`; "
    "a change that fails names where it was sent. serve, "
    "worker, dashboard, report and token use the database only: --storage, else "
    "$HPSEARCH_STORAGE, else sqlite:///hpsearch.db. Reads never create a database: a URL "
    "naming a file that does not exist is an error."
)


@dataclass(frozen=True, kw_only=True)
class Source:
    """Where a verb works, and why there (the words of the line ``reading URL (why)``)."""

    kind: Literal["storage", "server"]
    url: str
    why: str


def pick_source(*, storage: str | None, server: str | None, verb: str = "read") -> Source:
    """Apply :data:`SOURCE_RULE` to a verb's ``--storage`` and ``--server`` values; ``verb``
    ("read" or "write") is what the default's ``why`` says to do elsewhere.

    Raises :class:`UsageError` when both are given.
    """
    if storage and server:
        raise UsageError(
            f"give --storage or --server, not both (got --storage {storage!r} and --server "
            f"{server!r}): --storage works on the study database itself, --server asks a service"
        )
    if storage:
        return Source(kind="storage", url=storage, why="--storage")
    if server:
        return Source(kind="server", url=server, why="--server")
    from hpsearch.settings import get_settings

    settings = get_settings()
    env_storage = (settings.storage or "").strip()
    env_server = (settings.server or "").strip()
    if env_storage:
        why = "$HPSEARCH_STORAGE" + (
            ", which wins over $HPSEARCH_SERVER; pass --server to ask the service"
            if env_server
            else ""
        )
        return Source(kind="storage", url=env_storage, why=why)
    if env_server:
        return Source(kind="server", url=env_server, why="$HPSEARCH_SERVER")
    from hpsearch.client import DEFAULT_SERVER  # here: the client imports httpx (0.1-0.2 s)

    return Source(
        kind="server",
        url=DEFAULT_SERVER,
        why=f"the default; set --storage or --server to {verb} elsewhere",
    )


def database_source(storage: str | None) -> Source:
    """The study database of a verb that works on it only (serve, worker, dashboard, report,
    token): ``--storage``, else ``$HPSEARCH_STORAGE``, else the SQLite default; ``url`` resolved."""
    from hpsearch.db.storage import resolve_storage_url
    from hpsearch.settings import get_settings

    if storage:
        why = "--storage"
    elif get_settings().storage:
        why = "$HPSEARCH_STORAGE"
    else:
        why = "the default"
    return Source(kind="storage", url=resolve_storage_url(storage), why=why)


def open_source(args: argparse.Namespace, *, doing: str, create: bool = False) -> Any:
    """A :class:`~hpsearch.client.Client` of the service or a
    :class:`~hpsearch.cli.database.DatabaseClient`, as :func:`pick_source` chooses.

    ``doing`` "reading": one line on stderr says where, e.g. ``reading sqlite:///x.db
    (--storage)``. "writing": no extra line (a bad input stays one line), but an error names
    where it was (``args.source_line``, which :func:`hpsearch.cli.main` appends). A database is
    never created unless ``create``.
    """
    verb = "read" if doing == "reading" else "write"
    source = pick_source(storage=args.storage, server=args.server, verb=verb)
    if source.kind == "storage":
        from hpsearch.cli.database import DatabaseClient
        from hpsearch.db.storage import redact, resolve_storage_url

        shown = redact(resolve_storage_url(source.url))
        args.source_line = f"{doing} {shown} ({source.why})"
        client: Any = DatabaseClient(source.url, create=create)  # a missing file: its own line
    else:
        from hpsearch.client import Client, masked_url

        args.source_line = f"{doing} {masked_url(source.url.rstrip('/'))} ({source.why})"
        client = Client(source.url)
    if doing == "reading":
        print(args.source_line, file=sys.stderr, flush=True)
        args.source_line_shown = True
    return client
