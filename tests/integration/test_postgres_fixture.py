"""The storage fixtures give real, working, isolated study databases."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import optuna
import psycopg
import pytest
from sqlalchemy.engine import make_url

CONFTEST = Path(__file__).parents[1] / "conftest.py"

_DIALECT_OF_PARAM = {"sqlite": "sqlite", "postgres": "postgresql"}


def _close(*storages: optuna.storages.RDBStorage) -> None:
    for storage in storages:
        storage.remove_session()
        storage.engine.dispose()


def test_a_trial_written_through_one_storage_is_read_back_through_another(
    storage_url: str, request: pytest.FixtureRequest
) -> None:
    writer = optuna.storages.RDBStorage(storage_url)
    backend = request.node.callspec.params["storage_url"]
    assert writer.engine.dialect.name == _DIALECT_OF_PARAM[backend]
    assert writer.get_all_studies() == []  # every test starts from an empty database

    study = optuna.create_study(storage=writer, study_name="round-trip", direction="maximize")
    trial = study.ask()
    lr = trial.suggest_float("lr", 1e-5, 1e-1, log=True)
    trial.report(0.25, step=1)
    study.tell(trial, 0.75)

    reader = optuna.storages.RDBStorage(storage_url)
    try:
        loaded = optuna.load_study(study_name="round-trip", storage=reader)
        [got] = loaded.get_trials(deepcopy=False)
        assert got.state == optuna.trial.TrialState.COMPLETE
        assert got.params == {"lr": lr}
        assert got.value == 0.75
        assert got.intermediate_values == {1: 0.25}
        assert loaded.direction == optuna.study.StudyDirection.MAXIMIZE
    finally:
        _close(writer, reader)


@pytest.mark.parametrize("run", [1, 2])
def test_tests_do_not_see_each_others_studies(storage_url: str, run: int) -> None:
    # Both runs create the same study name: the second would fail if it shared the first's
    # database.
    storage = optuna.storages.RDBStorage(storage_url)
    try:
        assert storage.get_all_studies() == []
        optuna.create_study(storage=storage, study_name="same-name-in-every-test")
    finally:
        _close(storage)


@pytest.mark.postgres
def test_two_fresh_postgres_databases_are_independent(
    postgres_url: str, postgres_database_factory: Callable[[], str]
) -> None:
    first, second = postgres_database_factory(), postgres_database_factory()
    names = {make_url(u).database for u in (postgres_url, first, second)}
    assert len(names) == 3

    a = optuna.storages.RDBStorage(first)
    b = optuna.storages.RDBStorage(second)
    try:
        optuna.create_study(storage=a, study_name="only-in-first")
        assert [s.study_name for s in a.get_all_studies()] == ["only-in-first"]
        assert b.get_all_studies() == []
    finally:
        _close(a, b)


@pytest.mark.postgres
def test_the_session_server_is_postgresql_on_loopback(postgres_url: str) -> None:
    url = make_url(postgres_url)
    assert url.drivername == "postgresql+psycopg"
    params = url.translate_connect_args(username="user", database="dbname")
    with psycopg.connect(**params) as conn:
        version = conn.execute("SHOW server_version_num").fetchone()[0]
        listen = conn.execute("SHOW listen_addresses").fetchone()[0]
    assert int(version) >= 130000
    if "HPSEARCH_TEST_POSTGRES_URL" not in os.environ:
        assert url.host == "127.0.0.1" and url.username == "postgres"
        assert listen == "127.0.0.1"


def _run_inner_pytest(
    tmp_path: Path, test_source: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """Run one test file with our conftest in a separate pytest process."""
    (tmp_path / "conftest.py").write_text(CONFTEST.read_text())
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(test_source))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "test_inner.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.postgres
def test_a_fresh_database_is_dropped_after_its_test_even_with_connections_open(
    postgres_url: str, tmp_path: Path
) -> None:
    name_file = tmp_path / "db_name.txt"
    done = _run_inner_pytest(
        tmp_path,
        f"""
        import optuna
        from sqlalchemy.engine import make_url

        KEEP = []

        def test_leaves_a_connection_open(fresh_postgres_url):
            storage = optuna.storages.RDBStorage(fresh_postgres_url)
            optuna.create_study(storage=storage, study_name="left-open")
            KEEP.append(storage)  # its pooled connection outlives the test
            open({str(name_file)!r}, "w").write(make_url(fresh_postgres_url).database)
        """,
        {**os.environ, "HPSEARCH_TEST_POSTGRES_URL": postgres_url},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    dropped = name_file.read_text()

    params = make_url(postgres_url).translate_connect_args(username="user", database="dbname")
    with psycopg.connect(**params) as conn:
        left = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dropped,)).fetchall()
    assert left == []


@pytest.mark.parametrize(
    ("ci", "outcome"), [("", "1 skipped"), ("true", "1 error")], ids=["local", "ci"]
)
def test_missing_postgresql_skips_locally_but_fails_under_ci(
    tmp_path: Path, ci: str, outcome: str
) -> None:
    empty_bindir = tmp_path / "no-postgres-here"
    empty_bindir.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "HPSEARCH_TEST_POSTGRES_URL"}
    env.update(HPSEARCH_TEST_PG_BINDIR=str(empty_bindir), CI=ci)
    done = _run_inner_pytest(
        tmp_path,
        """
        def test_wants_postgres(postgres_url):
            pass
        """,
        env,
    )
    assert outcome in done.stdout, done.stdout + done.stderr
    assert "no initdb/pg_ctl/postgres found" in done.stdout
    assert done.returncode == (0 if not ci else 1)
