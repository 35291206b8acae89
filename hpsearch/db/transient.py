"""Which database errors are an outage to wait out, and which are real failures.

A lost connection, a server restarting or still starting up, a lock held too long: the same
call may succeed a moment later, so the worker (:mod:`hpsearch.worker.reconnect`) and the
start-up wait of workers and servers (:func:`hpsearch.db.storage.open_storage_when_up`) retry
them. Anything else (a bad URL, a constraint violated, a bug) fails at once:
:func:`is_transient` is that test.
"""

from __future__ import annotations

import sqlalchemy

__all__ = ["is_transient"]

_TRANSIENT = (
    sqlalchemy.exc.OperationalError,  # connection refused or lost, server shutting down, locked
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,  # no pooled connection came back in time
    sqlalchemy.exc.PendingRollbackError,
)


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` is the database being unreachable (retry) rather than a real failure.

    Looks through the chain of causes, so an error hpsearch or Optuna raised from a lost
    connection (:class:`~hpsearch.errors.StorageUnavailable`, Optuna's
    ``StorageInternalError``) counts as transient too.
    """
    seen: set[int] = set()
    e: BaseException | None = error
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, _TRANSIENT):
            return True
        if isinstance(e, sqlalchemy.exc.DBAPIError) and e.connection_invalidated:
            return True
        e = e.__cause__ or e.__context__
    return False
