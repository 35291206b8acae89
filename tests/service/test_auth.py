"""API tokens: stored hashed, scoped read or write, revocable, and required by every route.

The write-route checks discover the routes from the app itself, so a write route added later
is checked too (and one that forgets its guard fails here).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy
from fastapi.testclient import TestClient

try:  # FastAPI >= 0.165 includes routers lazily: app.routes holds the included routers
    from fastapi.routing import iter_route_contexts
except ImportError:  # older FastAPI flattens them into app.routes

    def iter_route_contexts(routes):
        return iter(routes)


from hpsearch import studies
from hpsearch.db import tokens
from hpsearch.client import ApiError, Client
from hpsearch.errors import TokenExists, TokenNotFound, UsageError
from hpsearch.db.storage import open_storage
from hpsearch.db.tables import api_tokens
from hpsearch.service import Settings, create_app

SPEC = {"name": "auth", "space": "demo", "task": {"epochs": 2}, "budget": {"trials": 5}}
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
OPEN_PATHS = {"/healthz", "/readyz", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
#: Reads that must answer 200 with a read token on the fixture's study.
CORE_READS = {
    "/studies",
    "/studies/{name}",
    "/studies/{name}/spec",
    "/studies/{name}/trials",
    "/studies/{name}/trials/{number}",
    "/studies/{name}/best",
    "/spaces",
    "/spaces/{name}",
}
#: A body that would succeed, for the write routes that take one (so a missing guard shows).
BODIES: dict[tuple[str, str], dict[str, Any]] = {("POST", "/studies"): {**SPEC, "name": "new"}}


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def world(storage_url):
    """A study with a complete and a running trial, and a token of each kind."""
    storage = open_storage(storage_url)
    studies.create_study(storage, SPEC)
    study, _ = studies.open_study(storage, "auth")
    complete = study.ask()
    study.tell(complete, 0.5)
    running = study.ask()
    _, read = tokens.create_token(storage, "reader", scopes="read")
    _, write = tokens.create_token(storage, "writer", scopes="write")
    _, revoked = tokens.create_token(storage, "gone", scopes="write")
    tokens.revoke_token(storage, "gone")
    return SimpleNamespace(
        url=storage_url,
        storage=storage,
        complete=complete.number,
        running=running.number,
        read=bearer(read),
        write=bearer(write),
        revoked=bearer(revoked),
    )


def routes(app, methods: set[str]) -> list[tuple[str, str]]:
    found = []
    for route in iter_route_contexts(app.routes):
        for method in sorted(set(getattr(route, "methods", None) or ()) & methods):
            found.append((method, route.path))
    return found


def fill(path: str, *, number: int) -> str:
    name = "demo" if path.startswith("/spaces/") else "auth"
    path = path.replace("{name}", name).replace("{number}", str(number))
    # Parameters of routes added later: the guard answers before any path lookup.
    while "{" in path:
        start, end = path.index("{"), path.index("}")
        path = path[:start] + "x" + path[end + 1 :]
    return path


def snapshot(engine: sqlalchemy.Engine) -> dict[str, list[str]]:
    """Every row of every table, except when a token was last used (reads refresh that)."""
    meta = sqlalchemy.MetaData()
    meta.reflect(engine)
    rows = {}
    with engine.connect() as conn:
        for table in meta.sorted_tables:
            columns = [
                c
                for c in table.columns
                if not (table.name == api_tokens.name and c.name == "last_used_at")
            ]
            rows[table.name] = sorted(
                repr(tuple(r)) for r in conn.execute(sqlalchemy.select(*columns))
            )
    return rows


@pytest.mark.parametrize("anonymous_reads", [False, True], ids=["reads-closed", "reads-open"])
def test_every_write_route_needs_a_write_token(world, anonymous_reads):
    app = create_app(Settings(storage=world.url, anonymous_reads=anonymous_reads))
    writes = routes(app, WRITE_METHODS)
    assert ("POST", "/studies") in writes
    assert ("POST", "/studies/{name}/trials/{number}/prune") in writes
    refused = [
        ("no token", {}, 401),
        ("read token", world.read, 403),
        ("revoked token", world.revoked, 401),
        ("unknown token", bearer("hps_not-a-token"), 401),
    ]
    with TestClient(app) as api:
        before = snapshot(world.storage.engine)
        for method, path in writes:
            url = fill(path, number=world.running)
            body = BODIES.get((method, path), {})
            for label, headers, expected in refused:
                r = api.request(method, url, json=body, headers=headers)
                assert r.status_code == expected, (method, path, label, r.text)
                if expected == 401:
                    assert r.headers["www-authenticate"] == "Bearer"
            missing = api.request(method, url, json=body).json()["detail"]
            assert "hpsearch token create NAME --scope write" in missing
            forbidden = api.request(method, url, json=body, headers=world.read).json()["detail"]
            assert "'reader'" in forbidden and "needs write" in forbidden
        assert snapshot(world.storage.engine) == before, "a refused request changed the database"

        answers = {}
        prune = ("POST", "/studies/{name}/trials/{number}/prune")
        # Prune while the trial runs, and delete (if a route does) after everything else.
        for method, path in sorted(writes, key=lambda w: (w != prune, w[0] == "DELETE")):
            url = fill(path, number=world.running)
            r = api.request(method, url, json=BODIES.get((method, path), {}), headers=world.write)
            assert r.status_code not in (401, 403), (method, path, r.text)
            answers[method, path] = r.status_code
    assert answers["POST", "/studies"] == 201
    assert answers[prune] == 202


def read_paths(app) -> list[str]:
    return [path for _method, path in routes(app, {"GET"}) if path not in OPEN_PATHS]


def test_reads_need_a_read_token_by_default(world):
    app = create_app(Settings(storage=world.url))
    paths = read_paths(app)
    assert CORE_READS <= set(paths)
    with TestClient(app) as api:
        for path in paths:
            url = fill(path, number=world.complete)
            missing = api.get(url)
            assert missing.status_code == 401, (path, missing.text)
            assert missing.headers["www-authenticate"] == "Bearer"
            assert "hpsearch token create NAME --scope read" in missing.json()["detail"]
            assert api.get(url, headers=world.revoked).status_code == 401, path
            for headers in (world.read, world.write):  # write implies read
                r = api.get(url, headers=headers)
                if path in CORE_READS:
                    assert r.status_code == 200, (path, r.text)
                else:
                    assert r.status_code not in (401, 403), (path, r.text)
        for path in ("/healthz", "/readyz", "/openapi.json", "/docs"):
            assert api.get(path).status_code == 200, path


def test_anonymous_reads_open_the_reads_only(world):
    app = create_app(Settings(storage=world.url, anonymous_reads=True))
    with TestClient(app) as api:
        for path in read_paths(app):
            url = fill(path, number=world.complete)
            r = api.get(url)
            if path in CORE_READS:
                assert r.status_code == 200, (path, r.text)
            else:
                assert r.status_code not in (401, 403), (path, r.text)
            # A token that is presented must still be valid.
            assert api.get(url, headers=world.revoked).status_code == 401, path
        assert api.post("/studies", json={**SPEC, "name": "anon"}).status_code == 401
    assert [s.name for s in studies.list_studies(world.storage)] == ["auth"]


def test_only_the_hash_of_a_secret_is_stored(storage_url):
    storage = open_storage(storage_url)
    info, secret = tokens.create_token(storage, "ci", scopes="write")
    _, read_secret = tokens.create_token(storage, "viewer", scopes=["read"])
    assert secret.startswith("hps_") and len(secret) >= 4 + 43 and secret != read_secret
    assert info.name == "ci" and info.scopes == ("read", "write") and not info.revoked
    with storage.engine.connect() as conn:
        rows = {r["name"]: dict(r) for r in conn.execute(sqlalchemy.select(api_tokens)).mappings()}
    assert rows["ci"]["token_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    assert rows["ci"]["scopes"] == "read,write" and rows["viewer"]["scopes"] == "read"
    for row in rows.values():
        for value in row.values():
            assert secret not in str(value) and read_secret not in str(value)
    listed = tokens.list_tokens(storage)
    assert [t.name for t in listed] == ["ci", "viewer"]
    assert all(secret not in repr(t) and rows["ci"]["token_hash"] not in repr(t) for t in listed)
    assert tokens.authenticate(storage, secret).name == "ci"
    assert tokens.authenticate(storage, secret + "x") is None
    assert tokens.authenticate(storage, "") is None


def test_token_errors_name_the_value_and_the_fix(storage_url):
    storage = open_storage(storage_url)
    tokens.create_token(storage, "ci", scopes="read")
    with pytest.raises(TokenExists, match="'ci' already exists"):
        tokens.create_token(storage, "ci", scopes="write")
    tokens.revoke_token(storage, "ci")
    with pytest.raises(TokenExists, match="revoked"):  # names are never reused
        tokens.create_token(storage, "ci", scopes="read")
    with pytest.raises(UsageError, match="'admin'.*read or write"):
        tokens.create_token(storage, "other", scopes="admin")
    with pytest.raises(UsageError, match="token name"):
        tokens.create_token(storage, "has space", scopes="read")
    with pytest.raises(TokenNotFound, match="'ghost'.*hpsearch token list"):
        tokens.revoke_token(storage, "ghost")
    assert [t.name for t in tokens.list_tokens(storage)] == ["ci"]


def test_last_used_is_written_at_most_once_a_minute(storage_url):
    storage = open_storage(storage_url)
    _, secret = tokens.create_token(storage, "ci", scopes="read")

    def last_used():
        (token,) = tokens.list_tokens(storage)
        return token.last_used_at

    assert last_used() is None
    tokens.authenticate(storage, secret)
    first = last_used()
    assert first is not None
    tokens.authenticate(storage, secret)
    assert last_used() == first  # a second request within the minute writes nothing
    earlier = first.replace(microsecond=0) - tokens.LAST_USED_RESOLUTION * 2
    with storage.engine.begin() as conn:
        conn.execute(api_tokens.update().values(last_used_at=earlier))
    tokens.authenticate(storage, secret)
    assert last_used() > earlier


def hpsearch(*args):
    return subprocess.run(
        [sys.executable, "-m", "hpsearch", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_token_cli_round_trip(storage_url):
    open_storage(storage_url)  # a study database without tokens (`token list` creates none)
    empty = hpsearch("token", "list", "--storage", storage_url)
    assert empty.returncode == 0 and "no API tokens yet" in empty.stdout

    created = hpsearch("token", "create", "ci", "--scope", "write", "--storage", storage_url)
    assert created.returncode == 0, created.stderr
    (secret,) = [line for line in created.stdout.splitlines() if line.startswith("hps_")]
    assert f"export HPSEARCH_API_TOKEN={secret}" in created.stdout

    listing = hpsearch("token", "list", "--storage", storage_url)
    assert listing.returncode == 0
    (row,) = [line.split() for line in listing.stdout.splitlines() if line.startswith("ci ")]
    assert row[1] == "read,write" and row[-1] == "-"  # not revoked
    assert secret not in listing.stdout
    assert tokens.hash_secret(secret) not in listing.stdout

    with TestClient(create_app(Settings(storage=storage_url))) as api:
        assert api.post("/studies", json=SPEC, headers=bearer(secret)).status_code == 201
        revoked = hpsearch("token", "revoke", "ci", "--storage", storage_url)
        assert revoked.returncode == 0 and "revoked" in revoked.stdout
        after = api.get("/studies", headers=bearer(secret))
        assert after.status_code == 401 and "unknown or revoked" in after.json()["detail"]

    listing = hpsearch("token", "list", "--storage", storage_url)
    (row,) = [line.split() for line in listing.stdout.splitlines() if line.startswith("ci ")]
    assert row[-1] != "-"  # the revoked column has a time
    again = hpsearch("token", "create", "ci", "--storage", storage_url)
    assert again.returncode == 1 and "already exists" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1 and "Traceback" not in again.stderr
    ghost = hpsearch("token", "revoke", "ghost", "--storage", storage_url)
    assert ghost.returncode == 1 and "ghost" in ghost.stderr and "Traceback" not in ghost.stderr
    bad_scope = hpsearch("token", "create", "x", "--scope", "admin", "--storage", storage_url)
    assert bad_scope.returncode == 2 and "read" in bad_scope.stderr


def test_the_client_says_how_to_get_a_token(live_service, sqlite_url, make_api_token, monkeypatch):
    monkeypatch.delenv("HPSEARCH_API_TOKEN", raising=False)
    with Client(live_service) as anonymous, pytest.raises(ApiError) as missing:
        anonymous.list_studies()
    assert missing.value.status == 401
    assert "hpsearch token create" in str(missing.value)
    assert "no token was sent" in str(missing.value) and "HPSEARCH_API_TOKEN" in str(missing.value)

    monkeypatch.setenv("HPSEARCH_API_TOKEN", make_api_token(sqlite_url, "read"))
    with Client(live_service) as reader:  # the token comes from the environment
        assert reader.list_studies()["count"] == 0
        with pytest.raises(ApiError) as forbidden:
            reader.create_study(SPEC)
    assert forbidden.value.status == 403 and "--scope write" in str(forbidden.value)
    with Client(live_service, token=make_api_token(sqlite_url, "write")) as writer:
        assert writer.create_study(SPEC)["name"] == "auth"
