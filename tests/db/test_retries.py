"""Retries through database outages: a worker's storage call waits out a PostgreSQL restart, a
real failure is never retried, an outage longer than the limit ends in one clear error, and the
service and a worker wait for their database at start-up but not for a URL that can never
work."""

from __future__ import annotations

import logging
import re
import threading
import time

import pytest
import sqlalchemy
from fastapi.testclient import TestClient

from hpsearch.db.storage import open_storage_when_up
from hpsearch.errors import StorageUnavailable
from hpsearch.service import Settings, create_app
from hpsearch.worker.reconnect import Reconnect


def _select_one(url: str) -> int:
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    with engine.connect() as conn:
        return conn.execute(sqlalchemy.text("SELECT 1")).scalar_one()


def _restart_in_background(cluster, url: str, *, down_seconds: float) -> threading.Thread:
    """Restart the server on a thread; return once it is down (connections are refused)."""
    thread = threading.Thread(target=cluster.restart, kwargs={"down_seconds": down_seconds})
    thread.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            _select_one(url)
        except sqlalchemy.exc.OperationalError:
            return thread
        time.sleep(0.05)
    raise AssertionError("the server did not go down")


@pytest.mark.postgres
def test_a_storage_call_waits_out_a_postgres_restart(restartable_postgres, caplog):
    url, cluster = restartable_postgres
    restart = _restart_in_background(cluster, url, down_seconds=2)
    with caplog.at_level(logging.WARNING, logger="hpsearch.worker"):
        assert Reconnect().call("reading", _select_one, url) == 1
    restart.join()
    # It waited for the server (one warning, then "back after"), it did not fail.
    said = [r.getMessage() for r in caplog.records]
    assert sum("study database unreachable (reading); retrying" in m for m in said) == 1, said
    assert any("study database back after" in m and "(reading)" in m for m in said), said


def test_a_real_failure_is_not_retried(tmp_path, caplog):
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY)")
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
    calls = []

    def insert_twice() -> None:
        calls.append(1)
        with engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")

    with caplog.at_level(logging.WARNING, logger="hpsearch.worker"):
        with pytest.raises(sqlalchemy.exc.IntegrityError):
            Reconnect().call("writing", insert_twice)
    assert len(calls) == 1 and not caplog.records


def test_an_outage_past_the_limit_is_one_clear_error(free_port):
    url = f"postgresql+psycopg://nobody@127.0.0.1:{free_port}/none"  # nothing listens there
    with pytest.raises(sqlalchemy.exc.OperationalError):
        _select_one(url)  # refused (and the driver is imported before the retries start)
    attempts = []

    def select_one() -> int:
        attempts.append(1)
        return _select_one(url)

    with pytest.raises(StorageUnavailable, match=r"did not answer for (\d+) s \(reading\)") as e:
        Reconnect(give_up_after=1.0).call("reading", select_one)
    assert int(re.search(r"for (\d+) s", str(e.value)).group(1)) >= 1  # the limit, then it said so
    # Waits of 0.25, 0.5 then 1 s: it gives up by the 4th attempt after 1 s of failures.
    assert 2 <= len(attempts) <= 4, attempts


def _count_connects(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The URLs the service's or a worker's start-up opens, one per try (the real open_storage
    runs)."""
    import hpsearch.db.storage as storage_module

    tries: list[str] = []
    real = storage_module.open_storage

    def counted(url, *args, **kwargs):
        tries.append(url)
        return real(url, *args, **kwargs)

    monkeypatch.setattr(storage_module, "open_storage", counted)
    return tries


@pytest.mark.postgres
def test_the_service_waits_for_its_database_at_start_up(restartable_postgres, monkeypatch):
    url, cluster = restartable_postgres
    restart = _restart_in_background(cluster, url, down_seconds=2)
    app = create_app(Settings(storage=url, startup_retry_seconds=60))
    tries = _count_connects(monkeypatch)
    with TestClient(app) as client:  # start-up (the lifespan) waits for the database
        assert len(tries) > 1, tries  # refused at first, then connected
        assert client.get("/readyz").status_code == 200
    restart.join()


@pytest.mark.postgres
def test_a_worker_started_while_postgres_restarts_waits_for_it(
    restartable_postgres, monkeypatch, caplog
):
    # What a worker does first (hpsearch.worker.loop.run_worker): a worker started in a job
    # array or by compose while the server restarts must wait for it, not exit 1.
    url, cluster = restartable_postgres
    restart = _restart_in_background(cluster, url, down_seconds=2)
    tries = _count_connects(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="hpsearch.db"):
        storage = open_storage_when_up(url, within=60)
    restart.join()
    assert len(tries) > 1, tries  # refused at first, then opened
    assert storage.get_all_studies() == []  # a working storage on the restarted server
    said = [r.getMessage() for r in caplog.records]
    assert sum("study database unreachable (opening it)" in m for m in said) == 1, said


def test_a_url_that_cannot_work_fails_start_up_at_once(monkeypatch):
    app = create_app(Settings(storage="mysql://user@localhost/db", startup_retry_seconds=60))
    tries = _count_connects(monkeypatch)
    with pytest.raises(StorageUnavailable, match="unsupported storage"):
        with TestClient(app):
            pass
    assert tries == ["mysql://user@localhost/db"]  # one try: no outage to wait out


@pytest.mark.postgres
def test_a_database_the_server_refuses_is_not_waited_for(postgres_url, monkeypatch):
    # The server is up and says the database does not exist: no wait mends that.
    missing = str(sqlalchemy.engine.make_url(postgres_url).set(database="no_such_database"))
    tries = _count_connects(monkeypatch)
    with pytest.raises(StorageUnavailable, match="does not exist"):
        open_storage_when_up(missing, within=60)
    assert len(tries) == 1, tries


def test_a_sqlite_file_that_cannot_be_made_is_not_waited_for(tmp_path, monkeypatch):
    tries = _count_connects(monkeypatch)
    with pytest.raises(StorageUnavailable, match="unable to open database file"):
        open_storage_when_up(f"sqlite:///{tmp_path / 'no_such_dir' / 'x.db'}", within=60)
    assert len(tries) == 1, tries
