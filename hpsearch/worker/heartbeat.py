"""A thread that records a running trial's heartbeat, so a dead worker's trial is detected."""

from __future__ import annotations

import logging
import threading
from types import TracebackType

import optuna

__all__ = ["Heartbeat"]

log = logging.getLogger("hpsearch.worker")


class Heartbeat:
    """Record ``trial_id``'s heartbeat every storage heartbeat interval while in the block."""

    def __init__(self, storage: optuna.storages.RDBStorage, trial_id: int) -> None:
        self._storage = storage
        self._trial_id = trial_id
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, name=f"heartbeat-{trial_id}", daemon=True
        )

    def _beat(self) -> None:
        interval = self._storage.get_heartbeat_interval() or 10
        while True:
            try:
                self._storage.record_heartbeat(self._trial_id)
            except Exception as e:  # noqa: BLE001 - a missed beat is retried; the trial goes on
                log.warning("missed a heartbeat of trial id %d: %s", self._trial_id, e)
            if self._stop.wait(interval):
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
