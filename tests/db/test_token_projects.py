"""Project tokens: a token limited to a study-name prefix reads, writes and lists only there.

Over real HTTP (uvicorn in a thread) through the real app, on SQLite and PostgreSQL. The
route checks discover the routes from the app, so a study route added later is checked too
(and one whose router forgets the project guard fails here).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from types import SimpleNamespace

import httpx
import optuna
import pytest
import sqlalchemy
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table

try:  # FastAPI >= 0.165 includes routers lazily: app.routes holds the included routers
    from fastapi.routing import iter_route_contexts
except ImportError:  # older FastAPI flattens them into app.routes

    def iter_route_contexts(routes):
        return iter(routes)


from conftest import serve_app

from hpsearch import studies
from hpsearch.db import tokens
from hpsearch.errors import UsageError
from hpsearch.db.storage import open_storage
from hpsearch.db.tables import api_tokens, create_tables
from hpsearch.service import Settings, create_app

SPEC = {"space": "demo", "task": {"epochs": 2}, "budget": {"trials": 5}}
MINE, THEIRS = "team-a-mlp", "team-b-mlp"
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
#: Reads of another team's study that must not answer (the issue's list, by route).
MUST_HIDE = {
    "/studies/{name}",
    "/studies/{name}/spec",
    "/studies/{name}/trials",
    "/studies/{name}/trials.csv",
    "/studies/{name}/trials/{number}",
    "/studies/{name}/best",
    "/studies/{name}/report",
    "/studies/{name}/importance",
}


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@contextlib.contextmanager
def serving(url: str, port: int) -> Iterator[httpx.Client]:
    """The app over the study database ``url``, served by uvicorn; an HTTP client of it."""
    app = create_app(Settings(storage=url))
    with (
        serve_app(app, port) as base_url,
        httpx.Client(base_url=base_url, timeout=30) as client,
    ):
        client.app = app  # the routes, for the checks that discover them
        yield client


def _study_with_trials(storage, name: str) -> tuple[int, int]:
    studies.create_study(storage, {**SPEC, "name": name})
    study, _ = studies.open_study(storage, name)
    for value in (0.4, 0.6):
        study.tell(study.ask(), value)
    running = study.ask()
    return 0, running.number


@pytest.fixture
def world(storage_url, free_port):
    """Two teams' studies, a project token of each scope for team a, an unlimited token."""
    storage = open_storage(storage_url)
    complete, running = _study_with_trials(storage, MINE)
    _study_with_trials(storage, THEIRS)
    secrets = {}
    for name, scope, project in [
        ("a-read", "read", "team-a"),
        ("a-write", "write", "team-a"),
        ("a-gone", "write", "team-a"),
        ("admin", "write", None),
    ]:
        _, secrets[name] = tokens.create_token(storage, name, scopes=scope, project=project)
    tokens.revoke_token(storage, "a-gone")
    with serving(storage_url, free_port) as api:
        yield SimpleNamespace(
            api=api,
            storage=storage,
            complete=complete,
            running=running,
            **{k.replace("-", "_"): bearer(v) for k, v in secrets.items()},
        )


def study_routes(app, methods: set[str]) -> list[tuple[str, str]]:
    found = []
    for route in iter_route_contexts(app.routes):
        if not route.path.startswith("/studies/{name}"):
            continue
        for method in sorted(set(getattr(route, "methods", None) or ()) & methods):
            found.append((method, route.path))
    return found


def fill(path: str, name: str, number: int) -> str:
    path = path.replace("{name}", name).replace("{number}", str(number))
    return path.replace("{plot}", "confusion")


def snapshot(engine: sqlalchemy.Engine) -> dict[str, list[str]]:
    """Every row of every table, except when a token was last used (reads refresh that)."""
    meta = sqlalchemy.MetaData()
    meta.reflect(engine)
    rows = {}
    with engine.connect() as conn:
        for table in meta.sorted_tables:
            columns = [c for c in table.columns if c.name != "last_used_at"]
            rows[table.name] = sorted(
                repr(tuple(r)) for r in conn.execute(sqlalchemy.select(*columns))
            )
    return rows


def names(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["count"] == len(body["data"])
    return [s["name"] for s in body["data"]]


def test_a_project_token_lists_only_its_studies(world):
    api = world.api
    for headers in (world.a_read, world.a_write):
        assert names(api.get("/studies", headers=headers)) == [MINE]
        assert names(api.get("/studies", params={"prefix": "team"}, headers=headers)) == [MINE]
        assert names(api.get("/studies", params={"prefix": "team-a-m"}, headers=headers)) == [MINE]
        outside = api.get("/studies", params={"prefix": "team-b"}, headers=headers)
        assert outside.status_code == 403 and "'team-a'" in outside.json()["detail"]
    assert names(api.get("/studies", headers=world.admin)) == [MINE, THEIRS]
    assert names(api.get("/studies", params={"prefix": "team-b"}, headers=world.admin)) == [THEIRS]


def test_a_project_token_cannot_read_another_teams_study(world):
    api = world.api
    reads = study_routes(api.app, {"GET"})
    assert MUST_HIDE <= {path for _, path in reads}
    for _, path in reads:
        theirs = api.get(fill(path, THEIRS, world.complete), headers=world.a_read)
        ghost = api.get(fill(path, "team-b-ghost", world.complete), headers=world.a_read)
        assert theirs.status_code == 404, (path, theirs.text)
        # The same answer as for a study that does not exist: nothing about it leaks.
        assert theirs.json()["detail"] == ghost.json()["detail"].replace("team-b-ghost", THEIRS), (
            path
        )
        assert "limited to project 'team-a'" in theirs.json()["detail"]

        mine = api.get(fill(path, MINE, world.complete), headers=world.a_read)
        assert "limited to project" not in mine.text, (path, mine.text)
        if path in MUST_HIDE - {"/studies/{name}/report", "/studies/{name}/importance"}:
            assert mine.status_code == 200, (path, mine.text)
        admin = api.get(fill(path, THEIRS, world.complete), headers=world.admin)
        assert "limited to project" not in admin.text, (path, admin.text)
    assert api.get(f"/studies/{MINE}/best", headers=world.a_read).json()["value"] == 0.6
    csv = api.get(f"/studies/{MINE}/trials.csv", headers=world.a_read)
    assert csv.status_code == 200 and csv.text.count("\n") == 4  # header + 3 trials
    assert api.get(f"/studies/{THEIRS}/best", headers=world.admin).json()["value"] == 0.6


def test_a_project_token_writes_and_deletes_only_inside(world):
    api = world.api
    writes = study_routes(api.app, WRITE_METHODS)
    assert ("DELETE", "/studies/{name}") in writes
    assert ("POST", "/studies/{name}/trials/{number}/prune") in writes
    before = snapshot(world.storage.engine)
    for method, path in writes:
        url = fill(path, THEIRS, world.running)
        r = api.request(method, url, json={}, headers=world.a_write, params={"force": "true"})
        assert r.status_code == 404, (method, path, r.text)
        assert "limited to project 'team-a'" in r.json()["detail"]
    assert snapshot(world.storage.engine) == before, "a refused write changed the database"

    prune = api.post(f"/studies/{MINE}/trials/{world.running}/prune", headers=world.a_write)
    assert prune.status_code == 202, prune.text
    assert api.post(f"/studies/{MINE}/stop", headers=world.a_write).status_code == 200
    deleted = api.delete(f"/studies/{MINE}", params={"force": "true"}, headers=world.a_write)
    assert deleted.status_code == 204, deleted.text
    # An unlimited write token is an admin token: it still deletes any team's study.
    deleted = api.delete(f"/studies/{THEIRS}", params={"force": "true"}, headers=world.admin)
    assert deleted.status_code == 204, deleted.text
    assert [s.name for s in studies.list_studies(world.storage)] == []


def test_a_project_token_creates_only_inside(world):
    api = world.api
    outside = api.post("/studies", json={**SPEC, "name": "team-b-new"}, headers=world.a_write)
    assert outside.status_code == 403
    assert "'team-b-new'" in outside.json()["detail"] and "'team-a'" in outside.json()["detail"]
    warm = {**SPEC, "name": "team-a-warm", "warm_start": {"study": THEIRS}}
    refused = api.post("/studies", json=warm, headers=world.a_write)
    assert refused.status_code == 403 and THEIRS in refused.json()["detail"]
    assert api.post("/studies", json=SPEC, headers=world.a_read).status_code == 403  # scope

    named = api.post("/studies", json={**SPEC, "name": "team-a-new"}, headers=world.a_write)
    assert named.status_code == 201, named.text
    generated = api.post("/studies", json=SPEC, headers=world.a_write)
    assert generated.status_code == 201, generated.text
    assert generated.json()["name"].startswith("team-a-demo-")
    warm["warm_start"] = {"study": MINE}
    assert api.post("/studies", json=warm, headers=world.a_write).status_code == 201
    unlimited = api.post("/studies", json=SPEC, headers=world.admin)
    assert unlimited.status_code == 201 and unlimited.json()["name"].startswith("demo-")
    listed = names(api.get("/studies", headers=world.a_read))
    assert listed == [MINE, "team-a-new", generated.json()["name"], "team-a-warm"]
    assert "team-b-new" not in {s.name for s in studies.list_studies(world.storage)}


def test_fleet_routes_refuse_project_tokens_and_revoked_ones_get_401(world):
    api = world.api
    for path in ("/workers", "/metrics"):
        refused = api.get(path, headers=world.a_read)
        assert refused.status_code == 403, (path, refused.text)
        assert "without a project" in refused.json()["detail"]
        assert api.get(path, headers=world.admin).status_code == 200, path
    for path in ("/studies", f"/studies/{MINE}", f"/studies/{MINE}/trials"):
        r = api.get(path, headers=world.a_gone)
        assert r.status_code == 401 and "unknown or revoked" in r.json()["detail"], path
    assert api.delete(f"/studies/{MINE}", headers=world.a_gone).status_code == 401
    assert MINE in {s.name for s in studies.list_studies(world.storage)}


#: hpsearch_api_tokens as release 0.1.0 created it: without the project column.
_OLD_TOKENS = Table(
    "hpsearch_api_tokens",
    MetaData(),
    Column("token_id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("scopes", String(64), nullable=False),
    Column("token_hash", String(128), nullable=False, unique=True),
    Column("created_at", DateTime, nullable=False),
    Column("last_used_at", DateTime),
    Column("revoked_at", DateTime),
)


def test_a_database_of_the_previous_release_is_upgraded_on_open(storage_url, free_port):
    old = optuna.storages.RDBStorage(storage_url)  # Optuna's tables, as 0.1.0 had them
    _OLD_TOKENS.create(old.engine)
    secret = "hps_made-by-0.1.0"
    with old.engine.begin() as conn:
        conn.execute(
            _OLD_TOKENS.insert().values(
                name="old-admin",
                scopes="read,write",
                token_hash=tokens.hash_secret(secret),
                created_at=sqlalchemy.func.now(),
            )
        )
    old.engine.dispose()

    with serving(storage_url, free_port) as api:  # the service opens, and so upgrades, it
        created = api.post("/studies", json={**SPEC, "name": "x-1"}, headers=bearer(secret))
        assert created.status_code == 201, created.text
        storage = open_storage(storage_url)
        (info,) = tokens.list_tokens(storage)
        assert info.name == "old-admin" and info.project is None and info.covers("anything")
        _, team = tokens.create_token(storage, "team-x", scopes="read", project="x-")
        assert names(api.get("/studies", headers=bearer(team))) == ["x-1"]
    create_tables(storage.engine)  # again: nothing to do, and no error
    columns = {c["name"] for c in sqlalchemy.inspect(storage.engine).get_columns(api_tokens.name)}
    assert "project" in columns
    assert [t.project for t in tokens.list_tokens(storage)] == [None, "x-"]


def test_covers_and_generated_names():
    stamp = dict(created_at=None, last_used_at=None, revoked_at=None)
    team = tokens.TokenInfo(name="t", scopes=("read",), project="team-a", **stamp)
    assert team.covers("team-a") and team.covers("team-a-mlp") and not team.covers("team-b")
    assert not team.covers("TEAM-A-mlp")  # case matters, as in study names
    assert tokens.TokenInfo(name="t", scopes=("read",), **stamp).covers("anything")
    assert tokens.project_study_name("team-a", space="demo").startswith("team-a-demo-")
    assert tokens.project_study_name("team-a.", space="demo").startswith("team-a.demo-")
    long = "p" * 104  # with "-demo-" and the 20-character stamp, over 128: the space goes
    assert tokens.project_study_name(long, space="demo").startswith(long + "-2")
    assert len(tokens.project_study_name(long, space="demo")) <= 128
    with pytest.raises(UsageError, match="give the study a name"):
        tokens.project_study_name("p" * 110, space="demo")
    for bad in ("", "-team", "team a", "../x", "p" * 129):
        with pytest.raises(UsageError, match="study-name prefix"):
            tokens.check_project(bad)


def hpsearch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hpsearch", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_token_cli_creates_and_lists_projects(sqlite_url):
    made = hpsearch("token", "create", "team-a-ci", "--scope", "write", "--project", "team-a",
                    "--storage", sqlite_url)  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "project 'team-a'" in made.stdout
    assert hpsearch("token", "create", "root", "--storage", sqlite_url).returncode == 0
    bad = hpsearch("token", "create", "x", "--project", "../etc", "--storage", sqlite_url)
    assert bad.returncode == 1 and "'../etc'" in bad.stderr and "study-name prefix" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr
    listing = hpsearch("token", "list", "--storage", sqlite_url)
    assert listing.returncode == 0, listing.stderr
    header, *rows = listing.stdout.splitlines()
    assert header.split()[:3] == ["name", "scopes", "project"]
    assert [row.split()[:3] for row in rows] == [
        ["team-a-ci", "read,write", "team-a"],
        ["root", "read", "(all)"],
    ]
