"""``?pgbouncer=true`` on a PostgreSQL URL: what hpsearch does differently through a pooler.

On a real PostgreSQL without a pooler in between, so that what changes can be seen on the
server: no server-side prepared statements, and a study lock whose waiters never block inside
the server (each would hold one of the pooler's few server connections while it waits). The
test through a real PgBouncer is tests/integration/test_pgbouncer.py.
"""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy

from hpsearch.cli import main
from hpsearch.db.storage import open_storage, study_lock, through_pgbouncer
from hpsearch.errors import StorageUnavailable


def _prepared_after_repeats(storage) -> int:
    """Run one query 10 times on one connection; the server's count of prepared statements."""
    with storage.engine.connect() as conn:
        for _ in range(10):
            conn.execute(sqlalchemy.text("SELECT count(*) FROM studies"))
        return conn.execute(sqlalchemy.text("SELECT count(*) FROM pg_prepared_statements")).scalar()


@pytest.mark.postgres
def test_through_pgbouncer_no_statement_is_prepared_on_the_server(fresh_postgres_url):
    direct = open_storage(fresh_postgres_url)
    pooled = open_storage(fresh_postgres_url + "?pgbouncer=true")
    assert not through_pgbouncer(direct) and through_pgbouncer(pooled)
    assert pooled is not direct and "pgbouncer" not in str(pooled.url)
    assert _prepared_after_repeats(direct) > 0  # psycopg prepares a query after its 5th run
    assert _prepared_after_repeats(pooled) == 0


def _blocked_in_server(url: str) -> int:
    """Backends of other connections waiting for a lock inside PostgreSQL right now."""
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as conn:
            return conn.execute(
                sqlalchemy.text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid() "
                    "AND datname = current_database()"
                )
            ).scalar()
    finally:
        engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("pooled", [False, True], ids=["direct", "pgbouncer"])
def test_study_lock_waiters_block_in_the_server_only_without_a_pooler(fresh_postgres_url, pooled):
    url = fresh_postgres_url + ("?pgbouncer=true" if pooled else "")
    storage = open_storage(url)
    order: list[str] = []
    held = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with study_lock(storage, 1):
            order.append("holder in")
            held.set()
            release.wait(10)
            order.append("holder out")

    def waiter(i: int) -> None:
        with study_lock(storage, 1):
            order.append(f"waiter {i} in")
            order.append(f"waiter {i} out")

    threads = [threading.Thread(target=holder)]
    threads[0].start()
    assert held.wait(10)
    threads += [threading.Thread(target=waiter, args=(i,)) for i in range(3)]
    for t in threads[1:]:
        t.start()
    time.sleep(0.5)  # the waiters are waiting by now
    blocked = _blocked_in_server(fresh_postgres_url)
    release.set()
    for t in threads:
        t.join(10)
    assert blocked == (0 if pooled else 3)
    # The lock excluded: every section ran alone, the holder's first.
    assert order[:2] == ["holder in", "holder out"] and len(order) == 8
    for i in range(2, 8, 2):
        assert order[i].endswith(" in") and order[i + 1] == order[i].replace(" in", " out")


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgresql://u@127.0.0.1:1/db?pgbouncer=maybe", "pgbouncer='maybe' in the storage URL"),
        ("sqlite:///x.db?pgbouncer=true", "pgbouncer=true is for PostgreSQL URLs"),
    ],
)
def test_a_wrong_pgbouncer_option_is_one_line_saying_what_to_write(url, says, capsys):
    with pytest.raises(StorageUnavailable, match="leave the option out"):
        open_storage(url)
    assert main(["status", "--storage", url]) == 1
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1 and "Traceback" not in err
