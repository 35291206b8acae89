"""Every listening process hpsearch starts answers to the API tokens and to allowed hosts only.

The dashboard's writing routes are enumerated from the installed optuna-dashboard (so a route a
new version adds is checked too) and each is tried over real HTTP: without a token, with a read
token, with a write token from another site's page; none may change the study database or the
artifact store. With a write token each reaches the dashboard. The same routes are tried on the
dashboards that `hpsearch serve` and `hpsearch dashboard` start, and the REST app's writing
routes (enumerated from its routes) on `hpsearch serve`.
"""

from __future__ import annotations

import base64
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import optuna
import optuna_dashboard
import pytest

from hpsearch.db import tokens
from hpsearch.analysis.artifacts import open_artifact_store
from hpsearch.service.dashboard import DashboardServer, start_dashboard
from hpsearch.service.dashboard_auth import COOKIE_NAME
from hpsearch.db.storage import open_storage

_SAFE = {"GET", "HEAD", "OPTIONS"}
_HOW = "hpsearch token create NAME --scope write"
#: One body for every writing route: each takes the keys it knows (a new route gets JSON too).
_BODY = {
    "state": "Complete",
    "values": [999.0],
    "user_attrs": {"prune_requested": True},
    "version": 1,
    "body": "<img src=x onerror=alert(1)>",
    "study_name": "created-through-the-dashboard",
    "directions": ["minimize"],
    "file": "data:text/plain;base64," + base64.b64encode(b"x" * 60_000).decode(),
    "filename": "evil.txt",
    "remove_associated_artifacts": True,
}


def writing_routes() -> list[tuple[str, str]]:
    """(method, rule) of every route of the installed optuna-dashboard that is not a read."""
    app = optuna_dashboard.wsgi(optuna.storages.InMemoryStorage())
    return sorted({(r.method, r.rule) for r in app.routes if r.method not in _SAFE})


def test_the_enumeration_finds_the_routes_the_issue_names() -> None:
    found = set(writing_routes())
    for expected in [
        ("POST", "/api/trials/<trial_id:int>/tell"),
        ("POST", "/api/trials/<trial_id:int>/user-attrs"),
        ("POST", "/api/studies"),
        ("POST", "/api/studies/<study_id:int>/rename"),
        ("DELETE", "/api/studies/<study_id:int>"),
        ("PUT", "/api/studies/<study_id:int>/note"),
        ("POST", "/api/artifacts/<study_id:int>"),
    ]:
        assert expected in found, f"{expected} is no longer a route: update the test's bodies"


@dataclass
class Victim:
    """A study with a running trial and artifacts, made fresh for each route."""

    study_id: int
    study_name: str
    trial_id: int
    study_artifact: str
    trial_artifact: str


@dataclass
class World:
    url: str
    db: Path
    artifacts: Path
    read: str
    write: str
    store: Any

    def victim(self, name: str) -> Victim:
        storage = open_storage(self.url)
        study = optuna.create_study(storage=storage, study_name=name)
        study.add_trial(optuna.trial.create_trial(value=1.0))
        running = study.ask()
        study_artifact = optuna.artifacts.upload_artifact(
            study_or_trial=study, file_path=str(self._file()), artifact_store=self.store
        )
        trial_artifact = optuna.artifacts.upload_artifact(
            study_or_trial=running, file_path=str(self._file()), artifact_store=self.store
        )
        return Victim(study._study_id, name, running._trial_id, study_artifact, trial_artifact)

    def _file(self) -> Path:
        path = self.db.parent / "artifact.txt"
        path.write_text("predictions")
        return path

    def snapshot(self) -> tuple[list[str], list[tuple[str, int]]]:
        """Everything a write could change: the database (but tokens' last use), the files."""
        with sqlite3.connect(self.db) as conn:
            rows = [line for line in conn.iterdump() if '"hpsearch_api_tokens"' not in line]
        files = sorted(
            (str(p.relative_to(self.artifacts)), p.stat().st_size)
            for p in self.artifacts.rglob("*")
        )
        return rows, files


@pytest.fixture
def world(tmp_path: Path, make_api_token) -> World:
    db = tmp_path / "studies.db"
    url = f"sqlite:///{db}"
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    store = open_artifact_store(str(artifacts), storage_url=url)
    return World(
        url=url,
        db=db,
        artifacts=artifacts,
        read=make_api_token(url, "read"),
        write=make_api_token(url, "write"),
        store=store,
    )


def fill(rule: str, victim: Victim) -> str:
    """A concrete path for a route rule: the victim's ids, else a placeholder per filter."""
    artifact = victim.trial_artifact if "<trial_id" in rule else victim.study_artifact
    known = {
        "study_id": str(victim.study_id),
        "trial_id": str(victim.trial_id),
        "artifact_id": artifact,
    }

    def one(m: re.Match[str]) -> str:
        name, _, kind = m.group(1).partition(":")
        return known.get(name, "1" if kind.startswith("int") else "x")

    return re.sub(r"<([^>]*)>", one, rule)


def send(base: str, method: str, path: str, **kw: Any) -> httpx.Response:
    return httpx.request(method, base + path, json=_BODY, timeout=30, **kw)


def assert_refused(response: httpx.Response, status: int, what: str) -> None:
    assert response.status_code == status, (what, response.status_code, response.text[:300])
    assert _HOW in response.json()["reason"], (what, response.text)


def check_writing_routes(world: World, base: str, *, full: bool = True) -> None:
    """Each writing route: refused unchanged without write scope; passes with a write token.

    Not ``full``: only that no token gets 401 and changes nothing (the guard is the same code;
    this shows that a process serves the dashboard behind it).
    """
    victim = world.victim("victim")
    for i, (method, rule) in enumerate(writing_routes()):
        if full:
            victim = world.victim(f"victim-{i}")  # the write token's request may delete it
        path = fill(rule, victim)
        what = f"{method} {path}"
        before = world.snapshot()
        assert_refused(send(base, method, path), 401, f"no token: {what}")
        if not full:
            assert world.snapshot() == before, f"{what} changed something without a token"
            continue
        read = {"Authorization": f"Bearer {world.read}"}
        assert_refused(send(base, method, path, headers=read), 403, f"read token: {what}")
        read_cookie = {"Cookie": f"{COOKIE_NAME}={world.read}", "Origin": base}
        assert_refused(send(base, method, path, headers=read_cookie), 403, f"read cookie: {what}")
        # Another site's page cannot make a logged-in browser write (it sends its own Origin).
        forged = {"Cookie": f"{COOKIE_NAME}={world.write}", "Origin": "http://evil.example"}
        response = send(base, method, path, headers=forged)
        assert response.status_code == 403 and "own page" in response.json()["reason"], what
        assert world.snapshot() == before, f"{what} changed something without a write token"
        write = {"Authorization": f"Bearer {world.write}"}
        response = send(base, method, path, headers=write)
        assert response.status_code not in (401, 403), (what, response.text[:300])
        assert _HOW not in response.text, what


@pytest.fixture
def dashboard(world: World, free_port: int) -> Iterator[DashboardServer]:
    server = start_dashboard(
        world.url,
        port=free_port,
        artifact_store=world.store,
        anonymous_reads=False,
        allowed_hosts=["127.0.0.1"],
    )
    try:
        yield server
    finally:
        server.stop()


def base_of(server: DashboardServer) -> str:
    return server.url.rsplit("/dashboard", 1)[0]


def test_every_writing_route_of_the_dashboard_needs_a_write_token(
    world: World, dashboard: DashboardServer
) -> None:
    check_writing_routes(world, base_of(dashboard))


def test_a_write_token_lands_the_writes_people_make(
    world: World, dashboard: DashboardServer
) -> None:
    base = base_of(dashboard)
    victim = world.victim("landing")
    write = {"Authorization": f"Bearer {world.write}"}
    note = {"version": 1, "body": "a note"}
    r = httpx.put(f"{base}/api/studies/{victim.study_id}/note", json=note, headers=write)
    assert r.status_code == 204, r.text
    tell = {"state": "Complete", "values": [0.5]}
    r = httpx.post(f"{base}/api/trials/{victim.trial_id}/tell", json=tell, headers=write)
    assert r.status_code == 204, r.text
    storage = open_storage(world.url)
    assert storage.get_trial(victim.trial_id).value == 0.5
    assert "a note" in json.dumps(storage.get_study_system_attrs(victim.study_id))


def test_reads_need_a_token_unless_anonymous_reads_are_on(
    world: World, dashboard: DashboardServer, free_port: int
) -> None:
    base = base_of(dashboard)
    victim = world.victim("readable")
    for path in [
        "/api/studies",
        f"/api/studies/{victim.study_id}",
        f"/csv/{victim.study_id}",
        f"/artifacts/{victim.study_id}/{victim.study_artifact}",
    ]:
        r = httpx.get(base + path, timeout=30)
        assert r.status_code == 401, (path, r.text)
        assert "hpsearch token create NAME --scope read" in r.json()["reason"]
        r = httpx.get(base + path, headers={"Authorization": f"Bearer {world.read}"})
        assert r.status_code == 200, (path, r.text)
    r = httpx.get(base + "/api/studies", headers={"Authorization": "Bearer hps_wrong"})
    assert r.status_code == 401 and "unknown or revoked" in r.json()["reason"]
    # A browser without a token is sent to the login form; the app's own code stays open.
    r = httpx.get(base + "/dashboard/studies/1", timeout=30)
    assert r.status_code == 302 and r.headers["location"].startswith("/dashboard/login?next=")
    assert httpx.get(base + "/favicon.ico").status_code == 200

    anonymous = start_dashboard(world.url, port=0, anonymous_reads=True, allowed_hosts=[])
    try:
        open_base = base_of(anonymous)
        listing = httpx.get(open_base + "/api/studies", timeout=30).json()
        assert [s["study_name"] for s in listing["study_summaries"]] == ["readable"]
        r = send(open_base, "PUT", f"/api/studies/{victim.study_id}/note")
        assert_refused(r, 401, "anonymous reads never open writes")
    finally:
        anonymous.stop()


def test_a_project_token_sees_and_changes_only_its_studies(
    world: World, dashboard: DashboardServer
) -> None:
    base = base_of(dashboard)
    mine, theirs = world.victim("team-a-mlp"), world.victim("team-b-mlp")
    _info, secret = tokens.create_token(
        open_storage(world.url), "team-a-writer", scopes="write", project="team-a"
    )
    auth = {"Authorization": f"Bearer {secret}"}
    listing = httpx.get(base + "/api/studies", headers=auth, timeout=30).json()
    assert [s["study_name"] for s in listing["study_summaries"]] == ["team-a-mlp"]
    assert httpx.get(f"{base}/api/studies/{mine.study_id}", headers=auth).status_code == 200
    before = world.snapshot()
    for method, path in [
        ("GET", f"/api/studies/{theirs.study_id}"),
        ("GET", f"/csv/{theirs.study_id}"),
        ("PUT", f"/api/studies/{theirs.study_id}/note"),
        ("POST", f"/api/trials/{theirs.trial_id}/tell"),
        ("DELETE", f"/api/studies/{theirs.study_id}"),
        # Their trial, named under my study: the trial decides.
        ("PUT", f"/api/studies/{mine.study_id}/{theirs.trial_id}/note"),
    ]:
        r = send(base, method, path, headers=auth)
        assert r.status_code == 404 and "team-a" in r.json()["reason"], (method, path, r.text)
    for body in ({"study_name": "team-b-new", "directions": ["minimize"]}, {}):
        r = httpx.post(base + "/api/studies", json=body, headers=auth)
        assert r.status_code == 403 and "team-a" in r.json()["reason"], r.text
    r = httpx.post(
        f"{base}/api/studies/{mine.study_id}/rename", json={"study_name": "team-b-x"}, headers=auth
    )
    assert r.status_code == 403, r.text
    assert world.snapshot() == before
    r = httpx.post(
        f"{base}/api/studies/{mine.study_id}/rename", json={"study_name": "team-a-y"}, headers=auth
    )
    assert r.status_code == 201, r.text
    names = {s.study_name for s in optuna.get_all_study_summaries(open_storage(world.url))}
    assert names == {"team-a-y", "team-b-mlp"}


def _project_token(world: World, project: str) -> dict[str, str]:
    _info, secret = tokens.create_token(
        open_storage(world.url), f"{project}-writer", scopes="write", project=project
    )
    return {"Authorization": f"Bearer {secret}"}


def test_a_project_token_reaches_no_other_study_through_bytes_the_dashboard_drops(
    world: World, dashboard: DashboardServer
) -> None:
    # Bottle drops the bytes of a path that are not UTF-8: /api/studies/1%FF is its study 1.
    base = base_of(dashboard)
    world.victim("team-a-mlp")
    theirs = world.victim("team-b-x")
    auth = _project_token(world, "team-a")
    app = optuna_dashboard.wsgi(optuna.storages.InMemoryStorage())
    routes = sorted(
        {(r.method, r.rule) for r in app.routes if re.search(r"<(study|trial|artifact)_id", r.rule)}
    )
    assert ("DELETE", "/api/studies/<study_id:int>") in routes
    before = world.snapshot()
    for method, rule in routes:
        path = fill(rule, theirs)
        for variant, expected in [(path + "%FF", 400), (path + "%C0", 400), (path + "/", 404)]:
            r = send(base, method, variant, headers=auth)
            assert r.status_code == expected, (method, variant, r.status_code, r.text[:300])
            assert "team-b-x" not in r.text, (method, variant)
    assert world.snapshot() == before
    assert "UTF-8" in send(base, "GET", f"/csv/{theirs.study_id}%FF", headers=auth).text


def test_a_project_token_deletes_only_its_studies_artifacts(
    world: World, dashboard: DashboardServer
) -> None:
    base = base_of(dashboard)
    mine, theirs = world.victim("team-a-mlp"), world.victim("team-b-mlp")
    auth = _project_token(world, "team-a")
    before = world.snapshot()
    for path in [
        f"/api/artifacts/{mine.study_id}/{theirs.study_artifact}",
        f"/api/artifacts/{mine.study_id}/{mine.trial_id}/{theirs.trial_artifact}",
        f"/api/artifacts/{mine.study_id}/{mine.trial_artifact}",  # my trial's, not my study's
        f"/api/artifacts/{mine.study_id}/{mine.trial_id}/{mine.study_artifact}",
    ]:
        r = httpx.delete(base + path, headers=auth, timeout=30)
        assert r.status_code == 404 and "has no artifact" in r.json()["reason"], (path, r.text)
    assert world.snapshot() == before
    for path in [
        f"/api/artifacts/{mine.study_id}/{mine.study_artifact}",
        f"/api/artifacts/{mine.study_id}/{mine.trial_id}/{mine.trial_artifact}",
    ]:
        assert httpx.delete(base + path, headers=auth).status_code == 204, path
        assert httpx.delete(base + path, headers=auth).status_code == 404, f"again: {path}"
    files = {p.name for p in world.artifacts.rglob("*")}
    assert {theirs.study_artifact, theirs.trial_artifact} <= files
    assert not {mine.study_artifact, mine.trial_artifact} & files


def test_an_artifact_id_that_is_no_uuid_is_not_found(
    world: World, dashboard: DashboardServer
) -> None:
    base = base_of(dashboard)
    victim = world.victim("ids")
    write = {"Authorization": f"Bearer {world.write}"}
    for method, path in [
        ("DELETE", f"/api/artifacts/{victim.study_id}/abc"),
        ("DELETE", f"/api/artifacts/{victim.study_id}/{victim.trial_id}/----"),
        ("GET", f"/artifacts/{victim.study_id}/abc"),
    ]:
        r = httpx.request(method, base + path, headers=write, timeout=30)
        assert r.status_code == 404 and "not a UUID" in r.json()["reason"], (path, r.text)
    with pytest.raises(ValueError, match="not a UUID"):
        world.store.remove(victim.study_artifact + "\n")


def test_a_login_next_cannot_add_headers(world: World, dashboard: DashboardServer) -> None:
    base = base_of(dashboard)
    own = {"Origin": base}
    for target, location in [
        ("/dashboard\r\nSet-Cookie: evil=1\r\nX-A: b", "/dashboard"),
        ("/dashboard/studies/1\nX-A: b", "/dashboard"),
        ("/dashboard/studies/1 x", "/dashboard"),
        ("/dashboard/\u00e9", "/dashboard"),
        ('/dashboard/studies/1?q="<b>"', "/dashboard/studies/1?q=%22%3Cb%3E%22"),
        ("/dashboard/studies/1?a=1&b=%2F", "/dashboard/studies/1?a=1&b=%2F"),
    ]:
        r = httpx.post(
            base + "/dashboard/login", data={"token": world.write, "next": target}, headers=own
        )
        assert r.status_code == 303 and r.headers["location"] == location, (target, r.headers)
        assert "x-a" not in r.headers and len(r.headers.get_list("set-cookie")) == 1, target
        assert "evil" not in r.headers["set-cookie"], target


def test_the_login_sets_a_strict_httponly_cookie_that_logs_out(
    world: World, dashboard: DashboardServer
) -> None:
    base = base_of(dashboard)
    page = httpx.get(base + "/dashboard/login?next=/dashboard/studies/1")
    assert page.status_code == 200 and 'name=next value="/dashboard/studies/1"' in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    own = {"Origin": base}
    r = httpx.post(base + "/dashboard/login", data={"token": "hps_nope"}, headers=own)
    assert r.status_code == 401 and "unknown or revoked" in r.text and "hps_nope" not in r.text
    # Another site cannot log a browser in (with a token of its choosing), nor send it away.
    evil = {"Origin": "http://evil.example"}
    r = httpx.post(base + "/dashboard/login", data={"token": world.write}, headers=evil)
    assert r.status_code == 403 and "set-cookie" not in r.headers
    r = httpx.post(base + "/dashboard/login", data={"token": world.write})
    assert r.status_code == 403, "a login without Origin"
    r = httpx.post(
        base + "/dashboard/login",
        data={"token": world.write, "next": "//evil.example/x"},
        headers=own,
    )
    assert r.status_code == 303 and r.headers["location"] == "/dashboard"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE_NAME}={world.write};")
    assert {"HttpOnly", "SameSite=Strict", "Path=/"} <= {p.strip() for p in cookie.split(";")}

    victim = world.victim("noted")
    logged_in = {"Cookie": f"{COOKIE_NAME}={world.write}", "Origin": base}
    note = {"version": 1, "body": "through the login"}
    r = httpx.put(f"{base}/api/studies/{victim.study_id}/note", json=note, headers=logged_in)
    assert r.status_code == 204, r.text
    r = httpx.post(base + "/dashboard/logout", headers=own)
    assert r.status_code == 303 and "Max-Age=0" in r.headers["set-cookie"]
    # A revoked token's cookie is no login at all.
    storage = open_storage(world.url)
    tokens.revoke_token(storage, tokens.authenticate(storage, world.write).name)
    r = httpx.put(f"{base}/api/studies/{victim.study_id}/note", json=note, headers=logged_in)
    assert_refused(r, 401, "a revoked token's cookie")


def test_a_foreign_host_header_gets_400_naming_the_setting(
    world: World, dashboard: DashboardServer
) -> None:
    base = base_of(dashboard)
    auth = {"Authorization": f"Bearer {world.write}"}
    r = httpx.get(base + "/api/studies", headers={**auth, "Host": "rebound.example:8080"})
    assert r.status_code == 400
    assert "HPSEARCH_ALLOWED_HOSTS" in r.text and "--allowed-host rebound.example" in r.text
    for host in ["localhost", "127.0.0.1:1234", "[::1]:8080"]:
        r = httpx.get(base + "/api/studies", headers={**auth, "Host": host})
        assert r.status_code == 200, (host, r.text)


# -- the processes the hpsearch command starts --------------------------------------------------


def _start(args: list[str], env: dict[str, str], ready: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "hpsearch", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(ready, timeout=2)
            return proc
        except httpx.TransportError:
            if proc.poll() is not None:
                raise AssertionError(proc.stdout.read() if proc.stdout else "exited")
            time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"{args} did not answer at {ready}")


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPSEARCH_")}
    return {**env, "PYTHONUNBUFFERED": "1"}


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.mark.slow
def test_hpsearch_dashboard_guards_every_writing_route(world: World, free_port: int) -> None:
    args = ["dashboard", "--storage", world.url, "--port", str(free_port)]
    args += ["--artifacts", str(world.artifacts)]
    base = f"http://127.0.0.1:{free_port}"
    proc = _start(args, _clean_env(), base + "/favicon.ico")
    try:
        check_writing_routes(world, base, full=False)
        r = httpx.get(base + "/api/studies", headers={"Host": "rebound.example"})
        assert r.status_code == 400 and "--allowed-host" in r.text
    finally:
        _stop(proc)


def _api_routes(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(method, path) of every route of a FastAPI app, in included routers too."""
    for route in routes:
        inner = getattr(route, "original_router", None)  # FastAPI >= 0.165 keeps them apart
        if inner is not None:
            yield from _api_routes(inner.routes, prefix + route.include_context.prefix)
        else:
            for method in getattr(route, "methods", None) or ():
                yield method, prefix + route.path


@pytest.mark.slow
def test_hpsearch_serve_guards_the_dashboard_and_the_api(world: World, free_port: int) -> None:
    import socket

    from hpsearch.service import Settings, create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dash_port = s.getsockname()[1]
    args = ["serve", "--storage", world.url, "--port", str(free_port)]
    args += ["--dashboard-port", str(dash_port), "--artifacts", str(world.artifacts)]
    args += ["--allowed-host", "api.internal"]
    api = f"http://127.0.0.1:{free_port}"
    dash = f"http://127.0.0.1:{dash_port}"
    proc = _start(args, _clean_env(), api + "/healthz")
    try:
        check_writing_routes(world, dash, full=False)
        victim = world.victim("api-victim")
        app = create_app(Settings(storage=world.url))
        routes = sorted(
            (method, path) for method, path in _api_routes(app.routes) if method not in _SAFE
        )
        assert ("POST", "/studies") in routes, routes
        before = world.snapshot()
        for method, rule in routes:
            path = re.sub(r"\{name\}", victim.study_name, rule)
            path = re.sub(r"\{[^}]*\}", "0", path)
            r = httpx.request(method, api + path, json=_BODY, timeout=30)
            assert r.status_code == 401, (method, path, r.text)
            r = httpx.request(
                method, api + path, json=_BODY, headers={"Authorization": f"Bearer {world.read}"}
            )
            assert r.status_code == 403, (method, path, r.text)
        assert world.snapshot() == before
        # Both answer to the allowed host given, and to nothing else.
        auth = {"Authorization": f"Bearer {world.read}"}
        for read in (api + "/studies", dash + "/api/studies"):
            good = httpx.get(read, headers={**auth, "Host": "api.internal:80"})
            assert good.status_code == 200, (read, good.text)
        for base in (api, dash):
            bad = httpx.get(base + "/healthz", headers={"Host": "rebound.example"})
            assert bad.status_code == 400 and "HPSEARCH_ALLOWED_HOSTS" in bad.text, base
    finally:
        _stop(proc)


def test_compose_services_answer_to_their_service_names_and_yours() -> None:
    import yaml

    from hpsearch.service import Settings

    text = (Path(__file__).resolve().parents[2] / "docker-compose.yml").read_text()

    def hosts_of(service: str, env: dict[str, str]) -> list[str]:
        expanded = re.sub(
            r"\$\{(\w+)(:?[-?])?([^}]*)\}",
            lambda m: env.get(m.group(1)) or (m.group(3) if m.group(2) != ":?" else "x"),
            text,
        )
        value = yaml.safe_load(expanded)["services"][service]["environment"]
        return Settings(allowed_hosts=value["HPSEARCH_ALLOWED_HOSTS"]).allowed_hosts

    for service in ("api", "dashboard"):
        assert {"api", "dashboard"} <= set(hosts_of(service, {})), service
        mine = hosts_of(service, {"HPSEARCH_ALLOWED_HOSTS": "gpu-box.lan,10.0.0.5"})
        assert {"api", "dashboard", "gpu-box.lan", "10.0.0.5"} <= set(mine), service


def test_the_api_answers_only_to_allowed_hosts(sqlite_url: str) -> None:
    from fastapi.testclient import TestClient

    from hpsearch.service import Settings, create_app

    app = create_app(Settings(storage=sqlite_url, allowed_hosts="api.internal"))
    with TestClient(app, base_url="http://localhost:8000") as api:
        for host in ["localhost:8000", "127.0.0.1", "[::1]:8000", "api.internal", "API.internal:1"]:
            assert api.get("/healthz", headers={"Host": host}).status_code == 200, host
        for host in ["testserver", "rebound.example", "api.internal.evil.example", "[::1"]:
            r = api.get("/healthz", headers={"Host": host})
            assert r.status_code == 400, host
            assert "HPSEARCH_ALLOWED_HOSTS" in r.text and "--allowed-host" in r.text
