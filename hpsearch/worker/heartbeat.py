"""A thread that records a running trial's heartbeat, so a dead worker's trial is detected."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import TracebackType

import optuna

from hpsearch.db.storage import heartbeat_interval

__all__ = ["Heartbeat"]

log = logging.getLogger("hpsearch.worker")

#: Seconds between attempts while beats fail (the database is down): beat as soon as it is back.
_RETRY_SECONDS = 1.0


class Heartbeat:
    """Record ``trial_id``'s heartbeat every storage heartbeat interval while in the block.

    ``also`` runs with each beat (the worker's own heartbeat in the fleet table). With
    ``beaten`` both were just recorded (a worker's claim writes them): the first beat is one
    interval on.
    ``on_failure`` is told when a beat fails, so the worker knows the database was away.
    """

    def __init__(
        self,
        storage: optuna.storages.RDBStorage,
        trial_id: int,
        *,
        also: Callable[[], None] | None = None,
        on_failure: Callable[[], None] | None = None,
        beaten: bool = False,
    ) -> None:
        self._storage = storage
        self._trial_id = trial_id
        self._also = also
        self._on_failure = on_failure
        self._beaten = beaten
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, name=f"heartbeat-{trial_id}", daemon=True
        )

    def _beat(self) -> None:
        interval = heartbeat_interval(self._storage)
        failing = False
        if self._beaten and self._stop.wait(interval):
            return
        while True:
            try:
                self._storage.record_heartbeat(self._trial_id)
                if self._also is not None:
                    self._also()
                if failing:
                    log.info("heartbeat of trial id %d recorded again", self._trial_id)
                failing = False
            except Exception as e:  # noqa: BLE001 - a missed beat is retried; the trial goes on
                if not failing:
                    log.warning("missed a heartbeat of trial id %d: %s", self._trial_id, e)
                failing = True
                if self._on_failure is not None:
                    self._on_failure()
            if self._stop.wait(_RETRY_SECONDS if failing else interval):
                return

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
