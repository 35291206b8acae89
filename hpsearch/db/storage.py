"""The study database: opening Optuna's RDB storage, the study lock, the marker of edited trials.

Optuna's storage is hpsearch's only source of truth. This module opens it (SQLite by default,
PostgreSQL across machines), checks that its tables have the schema the installed Optuna
expects, and adds a lock that serializes "is there budget left? then ask a trial" across worker
processes and machines. The small SQL reads on Optuna's tables are in :mod:`hpsearch.db.queries`.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import logging
import random
import sqlite3
import time
import warnings
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import optuna
import sqlalchemy
import tenacity
from optuna.distributions import BaseDistribution
from optuna.trial import TrialState
from sqlalchemy.engine import URL, make_url

from hpsearch.errors import StorageUnavailable
from hpsearch.db.tables import create_tables
from hpsearch.db.transient import is_transient
from hpsearch.settings import get_settings, grace_period

__all__ = [
    "DEFAULT_STORAGE",
    "PGBOUNCER_OPTION",
    "RETRY_OF_ATTR",
    "TRIALS_EDITED_ATTR",
    "TrialParam",
    "grace_seconds",
    "heartbeat_interval",
    "is_in_memory",
    "mark_trials_edited",
    "open_storage",
    "open_storage_when_up",
    "redact",
    "resolve_storage_url",
    "set_trial_user_attrs",
    "study_lock",
    "through_pgbouncer",
    "write_running_trial",
]

log = logging.getLogger("hpsearch.db")

#: The embedded default: a SQLite file in the working directory.
DEFAULT_STORAGE = "sqlite:///hpsearch.db"

#: Trial system attribute Optuna's retry callback sets on a retry: the failed trial's number.
RETRY_OF_ATTR = "failed_trial"
#: How many of the latest edits of finished trials the study's marker lists.
_EDITS_KEPT = 1000
#: Study system attribute bumped whenever hpsearch edits rows of a study's FINISHED trials
#: (Optuna itself never does): readers that cache finished trials re-read them when it changes.
TRIALS_EDITED_ATTR = "hpsearch:trials_edited"

#: The query option of a PostgreSQL URL that says it goes through PgBouncer (or another pooler)
#: in transaction pooling mode: ``postgresql://user@pgbouncer:6432/db?pgbouncer=true``. hpsearch
#: takes it out of the URL before connecting; see :func:`through_pgbouncer`.
PGBOUNCER_OPTION = "pgbouncer"
#: Engines opened through a transaction pooler (``?pgbouncer=true``).
_POOLED: weakref.WeakSet[sqlalchemy.Engine] = weakref.WeakSet()
#: Through a pooler, a process that finds the study lock taken tries again this many seconds
#: later (jittered), doubling the pause each time up to the second figure. The lock is held for
#: milliseconds (a claim), so the first tries come soon.
_LOCK_FIRST_PAUSE = 0.002
_LOCK_MAX_PAUSE = 0.05


def resolve_storage_url(url: str | None = None) -> str:
    """The storage URL to use: the argument, else ``$HPSEARCH_STORAGE``, else a SQLite file."""
    url = url or get_settings().storage or DEFAULT_STORAGE
    if url.startswith("postgresql://"):
        # psycopg 3 is the driver hpsearch installs; SQLAlchemy's bare scheme means psycopg2.
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def heartbeat_interval(storage: optuna.storages.RDBStorage) -> int:
    """Seconds between a running trial's heartbeats: the storage's (``$HPSEARCH_HEARTBEAT_SECONDS``
    with :func:`open_storage`), else the setting."""
    return storage.get_heartbeat_interval() or get_settings().heartbeat_seconds


def grace_seconds(storage: optuna.storages.RDBStorage) -> float:
    """How long a running trial (or a worker) may go without a heartbeat before it counts as
    dead: the storage's grace period, else :func:`hpsearch.settings.grace_period` of its
    heartbeat interval (3 heartbeats, the grace :func:`open_storage` gives)."""
    return float(storage.grace_period or grace_period(heartbeat_interval(storage)))


def redact(url: str) -> str:
    """The URL with its password hidden, fit for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a malformed URL is shown as given
        return url


def _on_sqlite_connect(dbapi_connection, _record) -> None:
    # WAL lets readers (the service, the dashboard) work while a worker writes.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def open_storage(url: str | None = None, *, create: bool = True) -> optuna.storages.RDBStorage:
    """Open (and create if needed) the study database at ``url``, with worker heartbeats on.

    One storage object per URL and process: callers share its connection pool. Raises
    :class:`StorageUnavailable` with the URL (password hidden) when it cannot be reached.

    With ``create=False`` (reads, and changes to studies that must exist) nothing is created:
    a SQLite file that does not exist, or a database without Optuna's tables, raises
    :class:`StorageUnavailable` saying so, instead of becoming a new, empty study database.

    A PostgreSQL URL that goes through PgBouncer in transaction pooling mode says so with
    ``?pgbouncer=true`` (:data:`PGBOUNCER_OPTION`): see :func:`through_pgbouncer`.
    """
    url, pooled = _split_pgbouncer_option(resolve_storage_url(url))
    if not create:
        _check_exists(url, pooled=pooled)
    return _open_storage(url, pooled=pooled)


def open_storage_when_up(url: str | None = None, *, within: float) -> optuna.storages.RDBStorage:
    """:func:`open_storage`, waiting up to ``within`` seconds for a PostgreSQL server that is down.

    A worker or the service may start while PostgreSQL is still starting up, or restarting:
    a refused or lost connection (:func:`hpsearch.db.transient.is_transient`) is retried with
    backoff (0.5 s, doubling up to 5 s) and a warning at the first failure. What waiting cannot
    mend fails at once: a malformed or unsupported URL, a missing driver, a schema from another
    Optuna, a database, role or password the server refuses (:func:`_refused`), and any SQLite
    error (there is no server to wait for; a locked file already waits 60 s).
    """

    def first_failure(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        if state.attempt_number == 1 and error is not None:
            log.warning(
                "study database unreachable (opening it); retrying for up to %.0f s: %s",
                within,
                _first_line(error.__cause__ or error),
            )

    def worth_waiting(error: BaseException) -> bool:
        return is_transient(error) and not _refused(error)

    if resolve_storage_url(url).startswith("sqlite"):
        return open_storage(url)
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(worth_waiting),
        stop=tenacity.stop_before_delay(within),
        wait=tenacity.wait_exponential(multiplier=0.5, max=5.0),
        before_sleep=first_failure,
        reraise=True,
    )
    return retrying(open_storage, url)


#: What a PostgreSQL server answers when it is up and refuses the URL's database, role or
#: password: no wait mends these (psycopg gives no SQLSTATE for a refused connection).
_REFUSALS = ("does not exist", "password authentication failed", "no pg_hba.conf entry")


def _refused(error: BaseException) -> bool:
    text = str(error)
    return any(refusal in text for refusal in _REFUSALS)


def through_pgbouncer(storage: optuna.storages.RDBStorage) -> bool:
    """Whether ``storage`` was opened through a transaction pooler (``?pgbouncer=true``).

    Such a pooler gives a client a server connection for one transaction at a time, so nothing
    may rely on the state of a connection between transactions. Through it hpsearch turns off
    psycopg's server-side prepared statements (they live in one server connection; PgBouncer
    1.18 cannot carry them over) and :func:`study_lock` waits without holding a connection.
    """
    return storage.engine in _POOLED


def _split_pgbouncer_option(url: str) -> tuple[str, bool]:
    """The URL without :data:`PGBOUNCER_OPTION`, and whether that option was on."""
    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - _open_storage names what is wrong with the URL
        return url, False
    if PGBOUNCER_OPTION not in parsed.query:
        return url, False
    given = parsed.query[PGBOUNCER_OPTION]
    value = (given if isinstance(given, str) else given[-1]).strip().lower()
    if value not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        raise StorageUnavailable(
            f"{PGBOUNCER_OPTION}={value!r} in the storage URL {redact(url)} is not a yes/no "
            f"value: use {PGBOUNCER_OPTION}=true when the URL goes through PgBouncer in "
            "transaction pooling mode, or leave the option out"
        )
    pooled = value in ("1", "true", "yes", "on")
    if pooled and parsed.get_backend_name() != "postgresql":
        raise StorageUnavailable(
            f"{PGBOUNCER_OPTION}=true is for PostgreSQL URLs, not {redact(url)}: leave the "
            "option out of this URL"
        )
    stripped = parsed.difference_update_query([PGBOUNCER_OPTION])
    return stripped.render_as_string(hide_password=False), pooled


def _pgbouncer_connect_args() -> dict[str, Any]:
    # psycopg 3 prepares a statement on the server after its 5th run on a connection: through a
    # transaction pooler the next run may land on a server connection that never saw it.
    return {"prepare_threshold": None}


def _has_study_tables(engine: sqlalchemy.Engine) -> bool:
    try:
        return sqlalchemy.inspect(engine).has_table("studies")
    finally:
        engine.dispose()


def _check_exists(url: str, *, pooled: bool = False) -> None:
    """Raise StorageUnavailable unless ``url`` names an existing database with Optuna's tables."""
    try:
        parsed = make_url(url)
        backend = parsed.get_backend_name()
    except Exception:  # noqa: BLE001 - _open_storage names what is wrong with the URL
        return
    where = "check --storage or $HPSEARCH_STORAGE; reads never create a database"
    if backend == "sqlite":
        database = parsed.database
        if not database or is_in_memory(parsed) or parsed.query.get("uri"):
            return  # in memory, or a URI form that SQLite itself resolves
        path = Path(database)
        if not path.is_file():
            raise StorageUnavailable(
                f"no study database at {redact(url)}: the file {str(path.absolute())!r} does "
                f"not exist ({where})"
            )
        # Read-only, so that not even a journal is made in a file that is not a database.
        ro_uri = f"file:{quote(str(path.absolute()))}?mode=ro"
        ro = sqlalchemy.create_engine(
            "sqlite://",
            # NullPool: one use each; a connection the garbage collector closes later may be
            # closed from another thread, which SQLite's same-thread check would report.
            creator=lambda: sqlite3.connect(ro_uri, uri=True, check_same_thread=False),
            poolclass=sqlalchemy.pool.NullPool,
        )
    elif backend == "postgresql":
        connect_args = _pgbouncer_connect_args() if pooled else {}
        ro = sqlalchemy.create_engine(
            url, poolclass=sqlalchemy.pool.NullPool, connect_args=connect_args
        )
    else:
        return
    try:
        found = _has_study_tables(ro)
    except (sqlalchemy.exc.SQLAlchemyError, ImportError) as e:
        raise StorageUnavailable(
            f"cannot open the study database {redact(url)}: {_first_line(e)} ({where})"
        ) from e
    if not found:
        raise StorageUnavailable(
            f"{redact(url)} is not a study database yet (it has no Optuna tables): {where}, "
            "or start `hpsearch serve` or a worker on it first"
        )


def _first_line(e: BaseException) -> str:
    # SQLAlchemy wraps the driver's message in several lines and a link; keep the driver's line.
    orig = getattr(e, "orig", None)
    text = str(orig if orig is not None else e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def is_in_memory(url: URL) -> bool:
    """Whether an SQLite URL names a database in this process's memory: ``sqlite://``,
    ``sqlite:///:memory:``, or the URI forms ``file::memory:`` and ``?mode=memory``."""
    database = url.database or ""
    if database in ("", ":memory:"):
        return True
    uri = str(url.query.get("uri", "")).lower() in ("true", "1")
    return uri and (database.startswith("file::memory:") or url.query.get("mode") == "memory")


@functools.cache
def _open_storage(url: str, *, pooled: bool = False) -> optuna.storages.RDBStorage:
    try:
        backend = make_url(url).get_backend_name()
    except Exception as e:
        raise StorageUnavailable(f"not a database URL: {redact(url)!r}") from e
    if backend not in ("sqlite", "postgresql"):
        raise StorageUnavailable(
            f"unsupported storage {redact(url)!r}: use sqlite:///FILE or postgresql://..."
        )
    engine_kwargs: dict = {"pool_pre_ping": True}
    if backend == "sqlite":
        # Several processes share one file: wait for the write lock instead of failing at once.
        engine_kwargs = {"connect_args": {"timeout": 60}}
        if is_in_memory(make_url(url)):
            # In memory: one connection for every thread (the service answers in a thread
            # pool), or each thread would get an empty database of its own; and one not tied
            # to the thread that opened it, which may be gone when it is closed. Its threads
            # share that connection's transaction: for tests and trying things out; a file
            # (or PostgreSQL) for concurrent work.
            engine_kwargs = {
                "connect_args": {"timeout": 60, "check_same_thread": False},
                "poolclass": sqlalchemy.pool.StaticPool,
            }
    elif pooled:
        engine_kwargs["connect_args"] = _pgbouncer_connect_args()
    settings = get_settings()
    interval, max_retries = settings.heartbeat_seconds, settings.max_retries
    storage: optuna.storages.RDBStorage | None = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # A trial whose worker stops beating is failed by the next worker that claims a
            # trial (fail_stale_trials), and this callback queues a copy of it (same params,
            # user attributes and learning curve so far) to run again, up to max_retries times.
            retry = optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=max_retries, inherit_intermediate_values=True
            )
            storage = optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                # _check_schema below does the same check for a fraction of its cost, and says
                # what to do in one line instead of raising a RuntimeError.
                skip_compatibility_check=True,
                heartbeat_interval=interval,
                grace_period=grace_period(interval),
                heartbeat_stale_trial_callback=retry,
            )
        _check_schema(storage, url)
        if backend == "sqlite":
            sqlalchemy.event.listen(storage.engine, "connect", _on_sqlite_connect)
            with storage.engine.connect() as conn:  # switch the file to WAL now, once
                conn.exec_driver_sql("PRAGMA journal_mode=WAL")
        _create_own_tables(storage.engine)
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as e:
        if storage is not None:  # built, then the schema check or our tables failed
            storage.engine.dispose()
        raise StorageUnavailable(
            f"cannot open the study database {redact(url)}: {_first_line(e)} (check "
            "--storage or $HPSEARCH_STORAGE)"
        ) from e
    if pooled:
        _POOLED.add(storage.engine)
    return storage


#: The installed Optuna's head schema revision (from its alembic scripts: the same for every
#: database, so read once per process).
_head_revision: str | None = None


def _check_schema(storage: optuna.storages.RDBStorage, url: str) -> None:
    """Raise StorageUnavailable unless the database's Optuna schema is the one this Optuna
    expects: RDBStorage's own check, once per process and URL (open_storage's cache), with
    the head revision read once per process, and a message that says what to do."""
    global _head_revision
    current = storage.get_current_version()  # one query of alembic_version
    if _head_revision is None:
        _head_revision = storage.get_head_version()
    if current == _head_revision:
        return
    storage.engine.dispose()
    if current in storage.get_all_versions():
        raise StorageUnavailable(
            f"the study database {redact(url)} has Optuna's table schema {current}, older than "
            f"the {_head_revision} that Optuna {optuna.__version__} needs: back it up, then run "
            f"`optuna storage upgrade --storage {redact(url)}`"
        )
    raise StorageUnavailable(
        f"the study database {redact(url)} has Optuna's table schema {current}, which Optuna "
        f"{optuna.__version__} does not know (a newer Optuna made it): upgrade Optuna "
        "(`pip install -U optuna`) on every machine that uses this database"
    )


#: Indexes hpsearch adds to Optuna's ``trials`` table: pages of trials by number, and counts by
#: state, read without visiting the rows (Optuna indexes only ``study_id``).
_TRIAL_INDEXES = (
    "CREATE INDEX IF NOT EXISTS ix_hpsearch_trials_study_number ON trials (study_id, number)",
    "CREATE INDEX IF NOT EXISTS ix_hpsearch_trials_study_state ON trials (study_id, state)",
)


# Processes starting together race to create the tables: the loser finds them made on its
# next try (0.2 s, then 0.4 s later), and a third failure is real.
@tenacity.retry(
    retry=tenacity.retry_if_exception_type(sqlalchemy.exc.SQLAlchemyError),
    stop=tenacity.stop_after_attempt(3),
    wait=tenacity.wait_incrementing(start=0.2, increment=0.2),
    reraise=True,
)
def _create_own_tables(engine: sqlalchemy.Engine) -> None:
    create_tables(engine)
    with engine.begin() as conn:
        for statement in _TRIAL_INDEXES:
            conn.exec_driver_sql(statement)


@contextlib.contextmanager
def study_lock(storage: optuna.storages.RDBStorage, study_id: int) -> Iterator[None]:
    """Hold an exclusive lock on one study across processes and machines.

    PostgreSQL: a transaction-scoped advisory lock (works across machines), held by a
    transaction of its own while the block runs on other pooled connections. SQLite: an OS file
    lock beside the database file (SQLite is one machine by nature). Keep the block short.

    Through PgBouncer in transaction pooling mode (:func:`through_pgbouncer`) a process blocked
    in ``pg_advisory_xact_lock`` would hold one of the pooler's few server connections while it
    waits, and with enough waiters the holder finds none left for its block: every worker
    stalls. There the lock is tried instead (``pg_try_advisory_xact_lock``) and, when taken
    elsewhere, tried again after a short, growing, jittered pause with no transaction open, so
    a waiter holds no server connection. The holder needs two at once: its lock's and its
    block's.
    """
    url = storage.engine.url
    if url.get_backend_name() == "postgresql":
        digest = hashlib.blake2b(f"hpsearch:{study_id}".encode(), digest_size=8).digest()
        key = int.from_bytes(digest, "big", signed=True)
        if not through_pgbouncer(storage):
            with storage.engine.connect() as conn, conn.begin():
                conn.execute(sqlalchemy.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
                yield
            return
        try_lock = sqlalchemy.text("SELECT pg_try_advisory_xact_lock(:key)")
        pause = _LOCK_FIRST_PAUSE
        with storage.engine.connect() as conn:
            while True:
                with conn.begin():
                    if conn.execute(try_lock, {"key": key}).scalar():
                        yield
                        return
                # Not taken: the transaction has ended, so no server connection is held now.
                time.sleep(pause * (0.5 + random.random() / 2))
                pause = min(pause * 2, _LOCK_MAX_PAUSE)
    database = url.database
    if is_in_memory(url):
        yield  # one process owns an in-memory database: nothing to serialize against
        return
    lock_path = Path(f"{database}.lock")
    with open(lock_path, "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def set_trial_user_attrs(
    storage: optuna.storages.RDBStorage, trial_id: int, attrs: dict[str, Any]
) -> None:
    """Set several user attributes of a running trial in one transaction.

    What ``Trial.set_user_attr`` does for one key (a transaction each, with a read of the
    trial), done once for all: see :func:`write_running_trial`.
    """
    write_running_trial(storage, trial_id, user_attrs=attrs)


#: A parameter as ``Trial.suggest_*`` hands it to the storage: name, internal value, distribution.
TrialParam = tuple[str, float, BaseDistribution]


def write_running_trial(
    storage: optuna.storages.RDBStorage,
    trial_id: int,
    *,
    params: Sequence[TrialParam] = (),
    user_attrs: Mapping[str, Any] | None = None,
    known: dict[str, BaseDistribution] | None = None,
) -> None:
    """Write a running trial's ``params`` and ``user_attrs`` in one transaction.

    ``Trial.suggest_*`` writes each parameter as a transaction of its own, with a read of the
    trial (twelve commits for the demo space), and ``set_user_attr`` each attribute likewise.
    Here the row of the trial is locked, its state checked (Optuna's
    ``UpdateFinishedTrialError`` when it has finished), each parameter's distribution checked
    against the study's earlier trials as Optuna checks it (``known``: the distributions already
    checked, by name, a cache kept by the caller and filled here), and the rows replaced, so a
    retry after a lost reply writes the same rows again.
    """
    from optuna.storages._rdb import models

    trials = models.TrialModel.__table__
    param_rows = models.TrialParamModel.__table__
    attr_rows = models.TrialUserAttributeModel.__table__
    known = {} if known is None else known
    state_q = sqlalchemy.select(trials.c.state, trials.c.study_id).where(
        trials.c.trial_id == trial_id
    )
    if storage.engine.dialect.name == "postgresql":
        state_q = state_q.with_for_update()
    with storage.engine.begin() as conn:
        state, study_id = conn.execute(state_q).one()
        storage.check_trial_is_updatable(trial_id, TrialState(state))
        for name, _, distribution in params:
            if name not in known:
                earlier = conn.execute(
                    sqlalchemy.select(param_rows.c.distribution_json)
                    .join(trials, trials.c.trial_id == param_rows.c.trial_id)
                    .where(trials.c.study_id == study_id, param_rows.c.param_name == name)
                    .limit(1)
                ).scalar()
                if earlier is not None:
                    known[name] = optuna.distributions.json_to_distribution(earlier)
            if name in known:
                optuna.distributions.check_distribution_compatibility(known[name], distribution)
            known.setdefault(name, distribution)
        if params:
            names = [name for name, _, _ in params]
            conn.execute(
                param_rows.delete().where(
                    param_rows.c.trial_id == trial_id, param_rows.c.param_name.in_(names)
                )
            )
            conn.execute(
                param_rows.insert(),
                [
                    {
                        "trial_id": trial_id,
                        "param_name": name,
                        "param_value": value,
                        "distribution_json": optuna.distributions.distribution_to_json(dist),
                    }
                    for name, value, dist in params
                ],
            )
        if user_attrs:
            conn.execute(
                attr_rows.delete().where(
                    attr_rows.c.trial_id == trial_id, attr_rows.c.key.in_(list(user_attrs))
                )
            )
            conn.execute(
                attr_rows.insert(),
                [
                    {"trial_id": trial_id, "key": k, "value_json": json.dumps(v)}
                    for k, v in user_attrs.items()
                ],
            )


def mark_trials_edited(
    storage: optuna.storages.BaseStorage, study_id: int, trial_ids: Iterable[int]
) -> None:
    """Tell every cache of finished trials that these finished trials' rows were edited.

    Call it under :func:`study_lock`, after committing an edit of finished trials' rows with
    SQL (Optuna's API refuses such edits). The study's marker is a sequence number and the
    latest edits; caches (:mod:`hpsearch.db.cache`) compare it on every read and re-read
    exactly the trials edited since, or the whole study when they missed too many.
    """
    marker = storage.get_study_system_attrs(study_id).get(TRIALS_EDITED_ATTR) or {}
    seq = int(marker.get("seq", 0))
    recent = list(marker.get("recent", []))
    for trial_id in trial_ids:
        seq += 1
        recent.append([seq, int(trial_id)])
    del recent[:-_EDITS_KEPT]
    storage.set_study_system_attr(study_id, TRIALS_EDITED_ATTR, {"seq": seq, "recent": recent})
