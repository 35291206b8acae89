"""Shared fixtures: study-database URLs for SQLite and for a real, throwaway PostgreSQL.

The session starts one PostgreSQL cluster the first time a test asks for it (tests that use
only SQLite never start it), and every test that wants PostgreSQL gets its own empty database
on that server. Environment:

- ``HPSEARCH_TEST_POSTGRES_URL``: use this existing server instead of starting one
  (an SQLAlchemy URL; its user must be allowed to create and drop databases).
- ``HPSEARCH_TEST_PG_BINDIR``: take ``initdb``/``pg_ctl``/``postgres`` from this folder
  instead of looking for them.
- ``CI``: when set, a missing PostgreSQL fails the tests instead of skipping them, so that CI
  never passes without having run them.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import psycopg
import pytest
import uvicorn
from psycopg import sql
from sqlalchemy.engine import URL, make_url

# Starlette's TestClient sends `Host: testserver`, and the service answers only to allowed host
# names (hpsearch.service.hosts): allow that one too. Tests of the host check pass their own lists.
os.environ["HPSEARCH_ALLOWED_HOSTS"] = ",".join(
    filter(None, [os.environ.get("HPSEARCH_ALLOWED_HOSTS"), "testserver"])
)

_PG_PROGRAMS = ("initdb", "pg_ctl", "postgres")
_PG_OS_USER = "postgres"
_PG_ROLE = "postgres"
_SESSION_DATABASE = "hpsearch_test"
_START_TIMEOUT_S = 60.0
# A unix socket path must fit in sockaddr_un.sun_path (108 bytes with the NUL).
_MAX_SOCKET_DIR_LEN = 107 - len("/.s.PGSQL.65535")


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _unavailable(reason: str) -> NoReturn:
    """Skip locally; fail under CI, where PostgreSQL tests must never be skipped silently."""
    if _in_ci():
        pytest.fail(
            f"PostgreSQL is required under CI but {reason}. Install it "
            "(`apt-get install -y postgresql`, as .ci/run does) or set "
            "HPSEARCH_TEST_POSTGRES_URL to an existing server.",
            pytrace=False,
        )
    pytest.skip(f"PostgreSQL not available: {reason}")


def _has_server_programs(bindir: Path) -> bool:
    return all(os.access(bindir / name, os.X_OK) for name in _PG_PROGRAMS)


def _find_pg_bindir() -> Path | None:
    """The folder holding initdb/pg_ctl/postgres: $HPSEARCH_TEST_PG_BINDIR, else
    `pg_config --bindir`, else the newest /usr/lib/postgresql/*/bin, else $PATH."""
    override = os.environ.get("HPSEARCH_TEST_PG_BINDIR")
    if override:
        return Path(override) if _has_server_programs(Path(override)) else None

    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"],
                capture_output=True,
                text=True,
                timeout=10,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired):
            out = None
        if out is not None and out.returncode == 0 and out.stdout.strip():
            candidates.append(Path(out.stdout.strip()))

    def version_key(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path.parent.name)) or (0,)

    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version_key, reverse=True)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).parent)

    return next((c for c in candidates if _has_server_programs(c)), None)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _world_traversable(path: Path) -> bool:
    return all(p.stat().st_mode & stat.S_IXOTH for p in [path, *path.parents])


class _PostgresCluster:
    """One initdb'd cluster in a temp dir, run as the `postgres` OS user when we are root."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self._as_root = os.geteuid() == 0
        if self._as_root:
            try:
                owner = pwd.getpwnam(_PG_OS_USER)
            except KeyError:
                _unavailable(
                    f"PostgreSQL refuses to run as root and there is no {_PG_OS_USER!r} OS user"
                )
            self._uid, self._gid = owner.pw_uid, owner.pw_gid

        parent = Path(tempfile.gettempdir()).resolve()
        if len(str(parent)) > _MAX_SOCKET_DIR_LEN - 30 or (
            self._as_root and not _world_traversable(parent)
        ):
            parent = Path("/tmp")
        self.root = Path(tempfile.mkdtemp(prefix="hpsearch-pg-", dir=parent))
        if self._as_root:
            os.chown(self.root, self._uid, self._gid)
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = 0
        self._running = False

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        # Output goes to a file, never a pipe: `pg_ctl start` leaves a server behind that
        # would keep a pipe open and hang the read.
        with tempfile.TemporaryFile(mode="w+") as out:
            kwargs = {}
            if self._as_root:
                kwargs = {"user": self._uid, "group": self._gid, "extra_groups": []}
            done = subprocess.run(
                [str(self.bindir / args[0]), *args[1:]],
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=timeout,
                env={**os.environ, "LC_ALL": "C", "LANG": "C"},
                **kwargs,
            )
            out.seek(0)
            done.stdout = out.read()
        return done

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])
        except OSError:
            return "(no server log)"

    def start(self) -> None:
        done = self._run(
            "initdb",
            "--pgdata", str(self.data),
            "--username", _PG_ROLE,
            "--auth", "trust",
            "--encoding", "UTF8",
            "--no-locale",
            "--no-sync",
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed (exit {done.returncode}):\n{done.stdout}")

        for _attempt in range(5):
            self.port = _free_port()
            settings = {
                "listen_addresses": "'127.0.0.1'",
                "port": str(self.port),
                "unix_socket_directories": f"'{self.root}'",
                "fsync": "off",
                "synchronous_commit": "off",
                "full_page_writes": "off",
                "max_connections": "200",
            }
            # Appending as root keeps the file's owner; the last setting of a name wins.
            with (self.data / "postgresql.conf").open("a") as conf:
                conf.write("\n# hpsearch tests\n")
                conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
            done = self._pg_ctl_start()
            if done.returncode == 0:
                self._running = True
                return
            if "already in use" not in self._log_tail():  # lost a race for the port: retry
                break
        raise RuntimeError(
            f"pg_ctl start failed (exit {done.returncode}):\n{done.stdout}\n"
            f"--- {self.log} ---\n{self._log_tail()}"
        )

    def _pg_ctl_start(self) -> subprocess.CompletedProcess[str]:
        return self._run(
            "pg_ctl", "start",
            "--pgdata", str(self.data),
            "--log", str(self.log),
            "--wait", "--timeout", str(int(_START_TIMEOUT_S)),
            timeout=_START_TIMEOUT_S + 30,
        )  # fmt: skip

    def restart(self, *, down_seconds: float) -> None:
        """Shut the server down (fast mode: clients are cut off), stay down, start it again on
        the same port with the same data, as an operator's restart of PostgreSQL does."""
        done = self._run("pg_ctl", "stop", "--pgdata", str(self.data), "--mode", "fast",
                         "--wait", timeout=60)  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl stop failed:\n{done.stdout}")
        time.sleep(down_seconds)
        done = self._pg_ctl_start()
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed:\n{done.stdout}\n{self._log_tail()}")

    def stop(self) -> None:
        """Stop the server (immediately: the data is thrown away) and remove its folder."""
        if self._running:
            self._running = False
            try:
                self._run("pg_ctl", "stop", "--pgdata", str(self.data), "--mode", "immediate",
                          timeout=60)  # fmt: skip
            except (OSError, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(self.root, ignore_errors=True)


def _libpq_params(url: URL) -> dict[str, str]:
    """Connection keywords for psycopg from an SQLAlchemy URL."""
    args = url.translate_connect_args(username="user", database="dbname")
    params = {k: str(v) for k, v in args.items()}
    params.update({k: v if isinstance(v, str) else v[-1] for k, v in url.query.items()})
    return params


def _connect_admin(url: URL) -> psycopg.Connection:
    return psycopg.connect(**_libpq_params(url), autocommit=True, connect_timeout=10)


def _wait_until_accepting(url: URL, timeout: float = _START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with _connect_admin(url) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _as_psycopg_url(raw: str) -> URL:
    url = make_url(raw)
    if url.drivername == "postgresql":  # SQLAlchemy's default driver is psycopg2: not ours
        url = url.set(drivername="postgresql+psycopg")
    return url


def _url_string(url: URL) -> str:
    return url.render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """An SQLAlchemy URL of a PostgreSQL database for the whole test session.

    Starts a throwaway cluster (trust auth, 127.0.0.1 on a free port, fsync off) and yields
    ``postgresql+psycopg://postgres@127.0.0.1:PORT/hpsearch_test``; or yields
    ``$HPSEARCH_TEST_POSTGRES_URL`` as is. Tests that must not see each other's studies
    want ``fresh_postgres_url`` instead.
    """
    existing = os.environ.get("HPSEARCH_TEST_POSTGRES_URL")
    if existing:
        url = _as_psycopg_url(existing)
        _wait_until_accepting(url, timeout=10)
        yield _url_string(url)
        return

    cluster = _new_cluster()
    atexit.register(cluster.stop)  # also when the session dies before fixture teardown
    try:
        yield _start_with_database(cluster, _SESSION_DATABASE)
    finally:
        cluster.stop()


def _new_cluster() -> _PostgresCluster:
    bindir = _find_pg_bindir()
    if bindir is None:
        _unavailable(
            "no initdb/pg_ctl/postgres found (looked at $HPSEARCH_TEST_PG_BINDIR, "
            "`pg_config --bindir`, /usr/lib/postgresql/*/bin and $PATH)"
        )
    return _PostgresCluster(bindir)


def _start_with_database(cluster: _PostgresCluster, database: str) -> str:
    """Start ``cluster``, create ``database`` in it, and return that database's URL."""
    cluster.start()
    server = URL.create(
        "postgresql+psycopg", username=_PG_ROLE, host="127.0.0.1", port=cluster.port,
        database="postgres",
    )  # fmt: skip
    _wait_until_accepting(server)
    with _connect_admin(server) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    return _url_string(server.set(database=database))


def _drop_database(admin: URL, name: str) -> None:
    with _connect_admin(admin) as conn:
        # Tests may leave pooled connections open (an RDBStorage engine, say): end them first.
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        # DROP DATABASE waits up to 5 s for terminated backends to go; retry past that.
        for attempt in range(5):
            try:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
                return
            except psycopg.errors.ObjectInUse:
                if attempt == 4:
                    raise
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    (name,),
                )


@pytest.fixture
def postgres_database_factory(postgres_url: str) -> Iterator[Callable[[], str]]:
    """A callable that creates a new empty database on the session's server and returns its
    URL; every database it made is dropped after the test (its connections terminated)."""
    admin = make_url(postgres_url)
    created: list[str] = []

    def create() -> str:
        name = f"hpsearch_t_{uuid.uuid4().hex[:16]}"
        with _connect_admin(admin) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        created.append(name)
        return _url_string(admin.set(database=name))

    yield create
    for name in reversed(created):
        _drop_database(admin, name)


@pytest.fixture
def fresh_postgres_url(postgres_database_factory: Callable[[], str]) -> str:
    """The URL of a new, empty PostgreSQL database for this test only (dropped after it)."""
    return postgres_database_factory()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """The URL of a new SQLite study database in this test's tmp_path."""
    return f"sqlite:///{tmp_path}/study.db"


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def storage_url(request: pytest.FixtureRequest) -> str:
    """An empty study database on every storage backend in turn: SQLite, then PostgreSQL.

    A test that takes this fixture is the contract test for both; PostgreSQL is only
    started when the postgres case runs.
    """
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("fresh_postgres_url")


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    return _free_port()


@pytest.fixture
def make_api_token() -> Callable[..., str]:
    """A callable ``(url, scope="write") -> secret``: creates an API token in the study database
    at ``url`` (a new name each call) and returns its secret, for requests to the service."""

    def make(url: str, scope: str = "write") -> str:
        from hpsearch.db.storage import open_storage
        from hpsearch.db.tokens import create_token

        name = f"test-{scope}-{uuid.uuid4().hex[:8]}"
        _info, secret = create_token(open_storage(url), name, scopes=scope)
        return secret

    return make


@pytest.fixture
def restartable_postgres() -> Iterator[tuple[str, _PostgresCluster]]:
    """A PostgreSQL server of this test's own, with its cluster, so the test can restart it."""
    if os.environ.get("HPSEARCH_TEST_POSTGRES_URL"):
        pytest.skip("cannot restart an external server ($HPSEARCH_TEST_POSTGRES_URL)")
    cluster = _new_cluster()
    try:
        yield _start_with_database(cluster, "restartable"), cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Torch on one thread for a test module (``pytestmark = usefixtures(...)``).

    The training tests' models are tiny: one thread is faster than several, and it keeps them
    quick when other processes compete for the cores (spinning intra-op threads slow down badly).
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@contextlib.contextmanager
def serve_app(app: object, port: int) -> Iterator[str]:
    """Serve an ASGI app over real HTTP with uvicorn on a thread; yields its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the service did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def live_service(sqlite_url: str, free_port: int) -> Iterator[str]:
    """The hpsearch app over ``sqlite_url``, served over real HTTP; yields its base URL."""
    from hpsearch.service.app import create_app
    from hpsearch.service.settings import Settings

    with serve_app(create_app(Settings(storage=sqlite_url)), free_port) as url:
        yield url
