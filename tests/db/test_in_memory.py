"""An in-memory SQLite storage (``sqlite://``) is one database for every thread of the process,
as the service's request threads need, and closing it from another thread is quiet."""

from __future__ import annotations

import logging
import threading
import uuid

import optuna

from hpsearch.db.storage import open_storage


def _in_a_thread(fn):
    out: list = []
    thread = threading.Thread(target=lambda: out.append(fn()))
    thread.start()
    thread.join()
    assert out, "the thread raised (its traceback is above)"
    return out[0]


def test_a_study_made_in_one_thread_is_seen_from_another():
    storage = open_storage("sqlite://")
    mine, theirs = f"main-{uuid.uuid4().hex}", f"thread-{uuid.uuid4().hex}"
    optuna.create_study(storage=storage, study_name=mine)

    def make_and_list():
        optuna.create_study(storage=storage, study_name=theirs)
        return {s.study_name for s in storage.get_all_studies()}

    assert {mine, theirs} <= _in_a_thread(make_and_list)  # each thread had its own, empty one
    assert {mine, theirs} <= {s.study_name for s in storage.get_all_studies()}


def test_closing_it_after_the_thread_that_opened_it_is_gone_logs_no_error(caplog):
    # The service opens its storage in a worker thread; the process closes it at exit.
    storage = _in_a_thread(lambda: open_storage("sqlite:///:memory:"))
    optuna.create_study(storage=storage)
    with caplog.at_level(logging.ERROR, logger="sqlalchemy.pool"):
        storage.engine.dispose()
    # It was "SQLite objects created in a thread can only be used in that same thread".
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
