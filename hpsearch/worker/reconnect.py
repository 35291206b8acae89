"""Riding out database outages: retry a storage operation with backoff until the database is back.

A restart of PostgreSQL (or a SQLite file locked for long) must cost a worker a pause, not a
result. Every storage call the worker makes goes through :meth:`Reconnect.call`, which retries
the errors a lost connection raises, with exponential backoff, for up to ``give_up_after``
seconds. SQLAlchemy's ``pool_pre_ping`` (set by :func:`hpsearch.db.storage.open_storage`) replaces
dead pooled connections once the server answers again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import optuna
import sqlalchemy

from hpsearch.errors import StorageUnavailable

__all__ = ["Reconnect", "is_transient"]

log = logging.getLogger("hpsearch.worker")

T = TypeVar("T")

_TRANSIENT = (
    sqlalchemy.exc.OperationalError,  # connection refused or lost, server shutting down, locked
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,  # no pooled connection came back in time
    sqlalchemy.exc.PendingRollbackError,
)


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` is the database being unreachable (retry) rather than a real failure."""
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


class Reconnect:
    """Run storage operations through outages; remember when the database last failed.

    ``give_up_after``: seconds of continuous failure before :class:`StorageUnavailable` is
    raised. Thread-safe: the heartbeat thread and the main loop share one.
    """

    def __init__(self, *, give_up_after: float = 600.0, max_delay: float = 10.0) -> None:
        self.give_up_after = give_up_after
        self.max_delay = max_delay
        self._last_trouble: float | None = None

    def call(self, what: str, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        """``fn(*args, **kwargs)``, retried while the database is unreachable."""
        started = time.monotonic()
        delay = 0.25
        failures = 0
        while True:
            try:
                result = fn(*args, **kwargs)
            except (optuna.exceptions.StorageInternalError, sqlalchemy.exc.SQLAlchemyError) as e:
                if not is_transient(e):
                    raise
                failures += 1
                self._last_trouble = time.monotonic()
                waited = time.monotonic() - started
                if waited >= self.give_up_after:
                    raise StorageUnavailable(
                        f"the study database did not answer for {waited:.0f} s ({what}): {e}"
                    ) from e
                if failures == 1:
                    log.warning("study database unreachable (%s); retrying: %s", what, _short(e))
                time.sleep(delay)
                delay = min(delay * 2, self.max_delay)
                continue
            if failures:
                self._last_trouble = time.monotonic()
                log.warning(
                    "study database back after %.1f s (%s)", time.monotonic() - started, what
                )
            return result

    def troubled_within(self, seconds: float) -> bool:
        """Whether the database failed this process in the last ``seconds``."""
        return self._last_trouble is not None and time.monotonic() - self._last_trouble < seconds

    def note_trouble(self) -> None:
        """Record a failure seen outside :meth:`call` (the heartbeat thread's missed beats)."""
        self._last_trouble = time.monotonic()


def _short(error: BaseException) -> str:
    return str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
