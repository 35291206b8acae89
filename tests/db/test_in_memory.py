"""An in-memory SQLite storage (``sqlite://``) is one database for every thread of the process,
as the service's request threads need, and a connection one thread made works from another."""

from __future__ import annotations

import threading
import uuid

import optuna
from sqlalchemy.engine import make_url

from hpsearch.db.storage import _open_storage, is_in_memory, open_storage


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


def test_a_connection_made_in_a_thread_works_after_that_thread_is_gone():
    # The service opens its storage in a worker thread; the process closes it at exit, from
    # the main thread, which used to print "SQLite objects created in a thread can only be
    # used in that same thread". A storage of its own, not the process's cached one.
    storage = _open_storage.__wrapped__("sqlite://")
    driver = _in_a_thread(lambda: storage.engine.raw_connection().driver_connection)
    assert driver.execute("SELECT count(*) FROM studies").fetchone() == (0,)
    storage.engine.dispose()


def test_the_uri_forms_of_an_in_memory_database_count_as_one():
    for url in ("sqlite://", "sqlite:///:memory:", "sqlite:///file::memory:?uri=true",
                "sqlite:///file:x?mode=memory&uri=true"):  # fmt: skip
        assert is_in_memory(make_url(url)), url
    assert not is_in_memory(make_url("sqlite:////tmp/studies.db"))
    assert not is_in_memory(make_url("sqlite:///file:studies.db?mode=ro&uri=true"))
