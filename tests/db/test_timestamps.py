"""Times leave hpsearch in UTC whatever the time zone of the database server or of the process."""

from __future__ import annotations

import datetime as dt
import os
import time

import pytest
import sqlalchemy

from hpsearch.db import fleet, tokens
from hpsearch.db.storage import open_storage


@pytest.fixture
def far_time_zone(monkeypatch):
    """This process in UTC+9 (no daylight saving), as a worker on a host in Tokyo."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def _near_now(moment: dt.datetime) -> bool:
    assert moment.tzinfo is not None
    return abs((moment - dt.datetime.now(dt.UTC)).total_seconds()) < 120


def test_worker_and_token_times_are_utc_whatever_the_zones(storage_url, far_time_zone):
    storage = open_storage(storage_url)
    if storage.engine.dialect.name == "postgresql":
        # A server whose sessions run in another zone than this process and than UTC.
        with storage.engine.connect() as conn:
            database = conn.execute(sqlalchemy.text("SELECT current_database()")).scalar_one()
            conn.execute(sqlalchemy.text(f'ALTER DATABASE "{database}" SET timezone = '
                                         "'America/Los_Angeles'"))  # fmt: skip
            conn.commit()
        storage.engine.dispose()
    fleet.register_worker(storage, "host:1", device="cpu")
    (worker,) = fleet.list_workers(storage)
    assert _near_now(worker.started_at) and _near_now(worker.last_seen)
    assert worker.model_dump(mode="json")["last_seen"].endswith("Z")
    info, secret = tokens.create_token(storage, "t", scopes="read")
    created = info.created_at.replace(tzinfo=dt.UTC)  # naive UTC, the database's clock
    assert _near_now(created)
    assert tokens.authenticate(storage, secret) is not None  # last-used arithmetic on one clock
    assert os.environ["TZ"] == "Asia/Tokyo"
