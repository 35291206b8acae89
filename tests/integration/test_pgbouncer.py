"""Workers through PgBouncer in transaction pooling mode, with a small server pool.

A real ``pgbouncer`` (Debian's package) runs in front of the test's own PostgreSQL: transaction
pooling, 4 server connections for any number of clients. Eight worker processes share one study
through it, PostgreSQL is restarted under them, and the study must still end with exactly its
budget. Without PgBouncer installed the test is skipped, except under CI, where it fails (as
tests/conftest.py treats a missing PostgreSQL); .ci/run installs it.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import psycopg
import pytest
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from hpsearch import studies
from hpsearch.db.storage import open_storage

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

TESTS = Path(__file__).parents[1]  # the objectives modules beside conftest.py
POOL_SIZE = 4
BUDGET = 120
WORKERS = 8

_SPACE = {
    "name": "pooled",
    "task": "custom",
    "params": {
        "optim.lr": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True, "default": 1e-3,
                     "impact": "high", "checklist": "Learning Rate (LR)"},
    },
}  # fmt: skip


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _find_pgbouncer() -> str:
    found = shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if os.access(p, os.X_OK)), None
    )
    if found:
        return found
    if _in_ci():
        pytest.fail(
            "PgBouncer is required under CI but no `pgbouncer` program was found. Install it "
            "(`apt-get install -y pgbouncer`, as .ci/run does).",
            pytrace=False,
        )
    pytest.skip("PgBouncer not available: no `pgbouncer` program (apt-get install -y pgbouncer)")


@pytest.fixture
def pgbouncer(request: pytest.FixtureRequest, free_port: int) -> Iterator[tuple[str, object]]:
    """PgBouncer (transaction pooling, a pool of 4) in front of this test's own PostgreSQL.

    Yields the hpsearch URL through the pooler (``?pgbouncer=true``) and the cluster, which the
    test may restart. PgBouncer refuses to run as root: as root it runs as ``postgres``.
    """
    program = _find_pgbouncer()  # before starting PostgreSQL for nothing
    direct, cluster = request.getfixturevalue("restartable_postgres")
    server = make_url(direct)
    root = Path(tempfile.mkdtemp(prefix="hpsearch-pgbouncer-", dir="/tmp"))
    as_user: dict = {}
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(root, owner.pw_uid, owner.pw_gid)
        as_user = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}
    port = free_port
    (root / "userlist.txt").write_text('"postgres" ""\n')
    (root / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host=127.0.0.1 port={server.port}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {root}/userlist.txt\n"
        "pool_mode = transaction\n"
        f"default_pool_size = {POOL_SIZE}\nreserve_pool_size = 0\nmin_pool_size = 0\n"
        "max_client_conn = 1000\nmax_db_connections = 0\n"
        # After a failed login to the restarted server, try again in 1 s, not the default 15 s.
        "server_login_retry = 1\n"
        # A client queued for a server connection this long gets an error: a stall (every
        # server connection held by a waiting client) fails the test in seconds, not minutes.
        "query_wait_timeout = 30\n"
        f"logfile = {root}/pgbouncer.log\npidfile = {root}/pgbouncer.pid\n"
    )
    for path in root.iterdir():
        if as_user:
            os.chown(path, as_user["user"], as_user["group"])
    bouncer = subprocess.Popen(
        [program, str(root / "pgbouncer.ini")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        **as_user,
    )
    through = server.set(port=port, query={"pgbouncer": "true"})
    deadline = time.monotonic() + 30
    while True:
        try:
            with psycopg.connect(
                host="127.0.0.1", port=port, user="postgres", dbname=server.database,
                prepare_threshold=None, connect_timeout=5,
            ) as conn:  # fmt: skip
                conn.execute("SELECT 1")
            break
        except psycopg.OperationalError:
            if bouncer.poll() is not None or time.monotonic() > deadline:
                log = (
                    (root / "pgbouncer.log").read_text(errors="replace")
                    if (root / "pgbouncer.log").exists()
                    else "(no log)"
                )
                bouncer.kill()
                raise RuntimeError(f"pgbouncer did not start (exit {bouncer.poll()}):\n{log}")
            time.sleep(0.1)
    try:
        yield through.render_as_string(hide_password=False), cluster
    finally:
        bouncer.terminate()
        try:
            bouncer.wait(timeout=10)
        except subprocess.TimeoutExpired:
            bouncer.kill()
        shutil.rmtree(root, ignore_errors=True)


def _without_pool_records(output: str) -> str:
    """A worker's log without SQLAlchemy's pool records: when the server cuts a connection in
    the middle of a batch, the pool logs the driver's traceback of the reset it could not do
    (the restart itself, not a fault of the worker's)."""
    records = re.split(r"\n(?=\d\d:\d\d:\d\d )", output)
    return "\n".join(r for r in records if not r[9:].startswith("sqlalchemy.pool"))


def _worker(url: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
        "HPSEARCH_HEARTBEAT_SECONDS": "1",  # a trial cut by the restart is retried in seconds
    }
    cmd = [sys.executable, "-m", "hpsearch", "worker", "--storage", url, "--gpus", "none",
           "--study", "p", "--objective", "instant_objectives:instant"]  # fmt: skip
    return subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def test_eight_workers_through_pgbouncer_survive_a_restart_with_exactly_the_budget(pgbouncer):
    url, cluster = pgbouncer
    spec = {"name": "p", "space": _SPACE, "metric": "val_loss", "direction": "minimize",
            "budget": {"trials": BUDGET}, "strategy": "random", "pruner": {"name": "none"},
            "seed": 0}  # fmt: skip
    studies.create_study(open_storage(url), spec)
    workers = [_worker(url) for _ in range(WORKERS)]
    try:
        study = optuna.load_study(study_name="p", storage=open_storage(url))
        deadline = time.monotonic() + 60
        while len(study.get_trials(deepcopy=False)) < BUDGET // 4:
            assert time.monotonic() < deadline, "the workers made no progress through PgBouncer"
            assert all(w.poll() is None for w in workers), [w.communicate()[0] for w in workers]
            time.sleep(0.1)
        open_storage(url).engine.dispose()  # this process's connections die with the server
        cluster.restart(down_seconds=1)
        outputs = [w.communicate(timeout=120)[0] for w in workers]
    finally:
        for w in workers:
            w.kill()
    assert [w.returncode for w in workers] == [0] * WORKERS, [o[-3000:] for o in outputs]
    trials = optuna.load_study(study_name="p", storage=open_storage(url)).get_trials(deepcopy=False)
    by_state = {s.name: sum(t.state == s for t in trials) for s in TrialState}
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == BUDGET, by_state  # exactly the budget: no more, no fewer
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)], by_state
    assert sorted(t.number for t in trials) == list(range(len(trials)))  # no number twice
    assert len({t.params["optim.lr"] for t in complete}) == BUDGET  # no config run twice
    # Every failed trial was one the restart cut, and it was run again.
    retried = {t.system_attrs["failed_trial"] for t in trials if "failed_trial" in t.system_attrs}
    assert {t.number for t in trials if t.state == TrialState.FAIL} <= retried, by_state
    for out in outputs:
        own = _without_pool_records(out)
        assert "Traceback" not in own and "ended elsewhere; its fail" not in own, out[-3000:]
    assert any("study database unreachable" in out for out in outputs)  # the restart was felt
