"""A study database whose Optuna schema is not the installed Optuna's is refused in one line.

The database is a real SQLite file made by Optuna; its ``alembic_version`` row is then set to
the revision before head (whose one migration, an index, applies cleanly again), or to one this
Optuna does not know. Opening it says what to do; doing that makes it open.
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import optuna
import pytest
import sqlalchemy

from hpsearch.db.storage import open_storage
from hpsearch.errors import StorageUnavailable

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def _set_revision(url: str, revision: str) -> str:
    """Make the database at ``url`` look as if Optuna last set it up at ``revision``; returns
    the head revision it had."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        made = optuna.storages.RDBStorage(url)
    head = made.get_head_version()
    with made.engine.begin() as conn:
        conn.execute(
            sqlalchemy.text("UPDATE alembic_version SET version_num = :r"), {"r": revision}
        )
    made.engine.dispose()
    return head


def test_an_old_schema_says_to_upgrade_and_opens_once_upgraded(sqlite_url: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        previous = optuna.storages.RDBStorage(sqlite_url).get_all_versions()[1]
    head = _set_revision(sqlite_url, previous)
    for create in (True, False):
        with pytest.raises(StorageUnavailable) as caught:
            open_storage(sqlite_url, create=create)
        message = str(caught.value)
        assert "\n" not in message
        assert f"`optuna storage upgrade --storage {sqlite_url}`" in message
        assert previous in message and head in message
    # What `optuna storage upgrade` does; then the same process opens the database.
    optuna.storages.RDBStorage(sqlite_url, skip_compatibility_check=True).upgrade()
    storage = open_storage(sqlite_url)
    assert storage.get_current_version() == head
    optuna.create_study(storage=storage, study_name="after-upgrade")


def test_a_schema_from_a_newer_optuna_says_to_upgrade_optuna(sqlite_url: str) -> None:
    _set_revision(sqlite_url, "v99.0.0.a")
    with pytest.raises(StorageUnavailable, match=r"upgrade Optuna \(`pip install -U optuna`\)"):
        open_storage(sqlite_url)


def test_the_cli_prints_the_one_line_not_a_traceback(sqlite_url: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        previous = optuna.storages.RDBStorage(sqlite_url).get_all_versions()[1]
    _set_revision(sqlite_url, previous)
    done = subprocess.run(
        [sys.executable, "-m", "hpsearch", "status", "--storage", sqlite_url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert f"optuna storage upgrade --storage {sqlite_url}" in done.stderr
