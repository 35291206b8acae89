"""One lock per study for the samplers' decisions that only one worker may make at a time."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import optuna
from optuna.study import Study

__all__ = ["sampler_lock"]

_thread_lock = threading.Lock()


@contextlib.contextmanager
def sampler_lock(study: Study) -> Iterator[None]:
    """The study's lock across processes for a database storage
    (:func:`hpsearch.db.storage.study_lock`); a thread lock otherwise."""
    storage = study._storage
    while hasattr(storage, "_backend"):  # Optuna's cache, hpsearch's (hpsearch.db.cache)
        storage = storage._backend
    if isinstance(storage, optuna.storages.RDBStorage):
        from hpsearch.db.storage import study_lock

        with _thread_lock, study_lock(storage, study._study_id):
            yield
    else:
        with _thread_lock:
            yield
