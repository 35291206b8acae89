"""Riding out database outages: retry a storage operation with backoff until the database is back.

A restart of PostgreSQL (or a SQLite file locked for long) must cost a worker a pause, not a
result. Every storage call the worker makes goes through :meth:`Reconnect.call`, which retries
the errors a lost connection raises (:func:`hpsearch.db.transient.is_transient`, tenacity's retry
predicate here), with exponential backoff from 0.25 s to ``max_delay``, for up to
``give_up_after`` seconds. SQLAlchemy's ``pool_pre_ping`` (set by
:func:`hpsearch.db.storage.open_storage`) replaces dead pooled connections once the server
answers again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import NoReturn, TypeVar

import optuna
import sqlalchemy
import tenacity

from hpsearch.db.transient import is_transient
from hpsearch.errors import StorageUnavailable

__all__ = ["Reconnect", "is_transient"]

log = logging.getLogger("hpsearch.worker")

T = TypeVar("T")

#: The first wait after a failed call, doubled after each further failure up to ``max_delay``.
_FIRST_DELAY = 0.25


def _storage_outage(error: BaseException) -> bool:
    # The retry predicate: a storage error (Optuna's or SQLAlchemy's) that is an outage.
    storage_error = (optuna.exceptions.StorageInternalError, sqlalchemy.exc.SQLAlchemyError)
    return isinstance(error, storage_error) and is_transient(error)


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
        """``fn(*args, **kwargs)``, retried while the database is unreachable.

        Other errors propagate at once; after ``give_up_after`` seconds of failures,
        :class:`StorageUnavailable` says for how long and doing what (``what``).
        """
        started = time.monotonic()

        def note_failure(_state: tenacity.RetryCallState) -> None:
            self._last_trouble = time.monotonic()

        def first_failure(state: tenacity.RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome is not None else None
            if state.attempt_number == 1 and error is not None:
                log.warning("study database unreachable (%s); retrying: %s", what, _short(error))

        def give_up(state: tenacity.RetryCallState) -> NoReturn:
            error = state.outcome.exception() if state.outcome is not None else None
            waited = time.monotonic() - started
            raise StorageUnavailable(
                f"the study database did not answer for {waited:.0f} s ({what}): {error}"
            ) from error

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(_storage_outage),
            stop=tenacity.stop_after_delay(self.give_up_after),
            wait=tenacity.wait_exponential(multiplier=_FIRST_DELAY, max=self.max_delay),
            after=note_failure,
            before_sleep=first_failure,
            retry_error_callback=give_up,
        )
        result = retrying(fn, *args, **kwargs)
        if retrying.statistics.get("attempt_number", 1) > 1:
            self._last_trouble = time.monotonic()
            log.warning("study database back after %.1f s (%s)", time.monotonic() - started, what)
        return result

    def troubled_within(self, seconds: float) -> bool:
        """Whether the database failed this process in the last ``seconds``."""
        return self._last_trouble is not None and time.monotonic() - self._last_trouble < seconds

    def note_trouble(self) -> None:
        """Record a failure seen outside :meth:`call` (the heartbeat thread's missed beats)."""
        self._last_trouble = time.monotonic()


def _short(error: BaseException) -> str:
    return str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
