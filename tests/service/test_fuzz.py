"""A property-based fuzz of the API's OpenAPI schema, and explicit bad-input cases.

The fuzz runs every operation of the real app (schemathesis 4: examples, coverage and fuzzing
phases, valid and invalid inputs) over a SQLite database and over a real PostgreSQL database,
each holding a real study with finished trials and one running trial. Every case carries a
valid write token (also the cases schemathesis made by removing the header: the token is put
back, so that the fuzz reaches past authentication; test_auth.py covers missing and bad
tokens). Half the time the path's ``name`` is the real study and ``number`` one of its trials,
so requests get past the 404s. Checks: no response is a server error, and every response's
status, content type and body are what the schema says (FastAPI documents only the success
status and 422, so a status hpsearch's error mapping answers with (400, 401, 403, 404, 409,
413) is accepted; bodies are checked for 2xx answers only, since hpsearch's own 422s carry
``{"detail": "message"}``, not FastAPI's list).

Run with ``-s`` to see how many cases ran and their statuses on each database.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import json
import uuid
from collections.abc import Iterator

import psycopg
import pytest
import schemathesis
import sqlalchemy
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from optuna.trial import TrialState
from psycopg import sql
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy.engine import make_url

from hpsearch import studies
from hpsearch.db import fleet
from hpsearch.db.storage import open_storage
from hpsearch.db.tokens import create_token
from hpsearch.service import Settings, create_app

STUDY = "fuzz"
SPEC = {"name": STUDY, "space": "demo", "task": {"epochs": 2}, "budget": {"trials": 6}}
#: What hpsearch's error mapping and auth answer with besides FastAPI's documented statuses.
ERROR_STATUSES = {400, 401, 403, 404, 405, 409, 413, 422}
BACKENDS = ("sqlite", "postgres")

#: (backend, operation, status) -> how many fuzz cases got that answer; printed at the end.
STATS: collections.Counter[tuple[str, str, int]] = collections.Counter()


def _make_db(url: str) -> str:
    """A database with the study ``fuzz`` (3 complete, 1 pruned, 1 running trial); returns a
    write token's secret."""
    storage = open_storage(url)
    studies.create_study(storage, SPEC, allow_space_paths=False)
    study, _ = studies.open_study(storage, STUDY)
    for value in (0.2, 0.5, 0.9):
        study.tell(study.ask(), value)
    study.tell(study.ask(), state=TrialState.PRUNED)
    study.ask()  # left running, so that a prune request can be accepted
    _info, secret = create_token(storage, "fuzzer", scopes="write")
    return secret


@contextlib.contextmanager
def _postgres_database(server_url: str) -> Iterator[str]:
    """A database of this module's own on the session's PostgreSQL server, dropped after."""
    admin = make_url(server_url).set(drivername="postgresql")
    name = f"hpsearch_fuzz_{uuid.uuid4().hex[:12]}"
    connect = {"host": admin.host, "port": admin.port, "user": admin.username,
               "dbname": admin.database, "autocommit": True}  # fmt: skip
    with psycopg.connect(**connect) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(**connect) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))  # fmt: skip


@pytest.fixture(
    scope="module",
    params=[
        pytest.param(b, id=b, marks=[pytest.mark.postgres] if b == "postgres" else [])
        for b in BACKENDS
    ],  # fmt: skip
)
def fuzz_db(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str, str]]:
    """``(backend, url, secret)`` of the module's database on each backend; prints the fuzz's
    statistics for it at the end."""
    backend = request.param
    with contextlib.ExitStack() as stack:
        if backend == "sqlite":
            url = f"sqlite:///{tmp_path_factory.mktemp('fuzz')}/study.db"
        else:
            url = stack.enter_context(_postgres_database(request.getfixturevalue("postgres_url")))
        yield backend, url, _make_db(url)
        mine = {(op, status): n for (b, op, status), n in STATS.items() if b == backend}
        if mine:
            by_status: collections.Counter[int] = collections.Counter()
            for (_op, status), n in mine.items():
                by_status[status] += n
            server_errors = sum(n for status, n in by_status.items() if status >= 500)
            print(
                f"\nfuzz on {backend}: {sum(mine.values())} cases, {server_errors} server errors "
                f"(5xx); by status: {dict(sorted(by_status.items()))}"
            )
            for (op, status), n in sorted(mine.items()):
                print(f"  {op:<48} {status}  {n}")


@pytest.fixture(scope="module")
def fuzz_app(fuzz_db: tuple[str, str, str]) -> FastAPI:
    """The app over the module's database, which every fuzz case calls."""
    _backend, url, _secret = fuzz_db
    return create_app(Settings(storage=url))


# The schema is read at collection, from an app over an in-memory database; the cases call
# ``fuzz_app``. (A schema from a fixture, ``schemathesis.pytest.from_fixture``, fails on
# pytest 9: it sets the private ``Function._nodeid``.)
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(Settings(storage="sqlite://")))


def _documented_or_error_status(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> bool | None:
    if response.status_code in ERROR_STATUSES:
        return None
    return status_code_conformance(ctx, response, case)


def _success_body_conforms(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> bool | None:
    # Only 2xx bodies: hpsearch answers its own 422s (a spec that fails hpsearch's checks)
    # with {"detail": "message"}, not FastAPI's documented list of validation errors.
    if not 200 <= response.status_code < 300:
        return None
    return response_schema_conformance(ctx, response, case)


#: The write token of the database the fuzz case runs against.
_TOKEN: dict[str, str] = {}


@schemathesis.hook
def before_call(
    _context: schemathesis.HookContext, case: schemathesis.Case, _kwargs: dict[str, object]
) -> None:
    """Send the valid write token with every case, also those schemathesis made by removing
    the header: set here, schemathesis then sends it (and counts the case as positive)."""
    if "secret" in _TOKEN:
        case.headers["Authorization"] = f"Bearer {_TOKEN['secret']}"


@schema.parametrize()
@schema.given(data=st.data())
@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_api_fuzz(
    case: schemathesis.Case,
    data: st.DataObject,
    fuzz_db: tuple[str, str, str],
    fuzz_app: FastAPI,
) -> None:
    backend, url, secret = fuzz_db
    path = case.path_parameters
    if path and data.draw(st.booleans(), label="use a real study"):
        if "name" in path:
            # Deletes hit a study of their own, so that the others keep finding "fuzz".
            path["name"] = STUDY if case.method.upper() != "DELETE" else _victim(url)
        if "number" in path:  # 4 is the running trial, which a prune request can reach
            path["number"] = data.draw(st.sampled_from([4, 4, 0, 1, 5]), label="trial number")
    _TOKEN["secret"] = secret  # put on every case by the before_call hook below
    response = case.call(app=fuzz_app)
    STATS[(backend, case.operation.label, response.status_code)] += 1
    case.validate_response(
        response,
        checks=[
            not_a_server_error,
            _documented_or_error_status,
            content_type_conformance,
            _success_body_conforms,
        ],
    )


def _victim(url: str) -> str:
    storage = open_storage(url)
    if "fuzz-victim" not in {s.study_name for s in storage.get_all_studies()}:
        studies.create_study(storage, {**SPEC, "name": "fuzz-victim"}, allow_space_paths=False)
    return "fuzz-victim"


def test_the_fuzz_reached_the_real_study() -> None:
    """Run after the fuzz: without hits on the real study it only fuzzed the 404 path; without
    the token it only fuzzed the 401 path."""
    if not STATS:
        pytest.skip("the fuzz did not run in this session (deselected)")
    for backend in {b for b, _op, _status in STATS}:
        ran = {op for b, op, _status in STATS if b == backend}
        reached = {op for b, op, status in STATS if b == backend and 200 <= status < 300}
        for op in (
            "GET /studies/{name}",
            "GET /studies/{name}/trials",
            "GET /studies/{name}/best",
            "GET /studies/{name}/trials/{number}",
            "POST /studies/{name}/trials/{number}/prune",
            "POST /studies",
            "PUT /studies/{name}/pruner",
        ):
            assert op not in ran or op in reached, f"{backend}: {op} never answered 2xx"
        unauthorized = sum(n for (b, _op, s), n in STATS.items() if b == backend and s == 401)
        assert unauthorized == 0, f"{backend}: {unauthorized} cases got 401 despite the token"
    assert all(status < 500 for (_b, _op, status) in STATS)


@pytest.fixture
def api(fuzz_db: tuple[str, str, str], fuzz_app: FastAPI) -> Iterator[TestClient]:
    _backend, _url, secret = fuzz_db
    with TestClient(fuzz_app, headers={"Authorization": f"Bearer {secret}"}) as client:
        yield client


def test_oversized_body_is_refused_before_parsing(api: TestClient) -> None:
    huge = {**SPEC, "name": "huge", "fixed": {f"k{i}": "x" * 100 for i in range(50_000)}}
    body = json.dumps(huge).encode()
    assert len(body) > 5_000_000
    response = api.post("/studies", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    chunked = api.post(  # no Content-Length: the limit counts the bytes as they come
        "/studies",
        content=iter([body[i : i + 65536] for i in range(0, len(body), 65536)]),
        headers={"Content-Type": "application/json"},
    )
    assert chunked.status_code == 413
    assert api.get("/studies/huge").status_code == 404


def test_wrong_types_are_422_with_the_field_named(api: TestClient) -> None:
    wrong = api.post("/studies", json={**SPEC, "name": "typed", "budget": {"trials": "many"}})
    assert wrong.status_code == 422 and "trials" in wrong.text
    not_json = api.post(
        "/studies", content=b"{name: oops", headers={"Content-Type": "application/json"}
    )
    assert not_json.status_code == 422
    a_list = api.post("/studies", json=[SPEC])
    assert a_list.status_code == 422
    assert api.get("/studies", params={"limit": "ten"}).status_code == 422
    assert api.get(f"/studies/{STUDY}/trials/first").status_code == 422
    assert api.get("/workers", params={"all": "perhaps"}).status_code == 422


def test_unknown_study_is_404_naming_it(api: TestClient) -> None:
    for path in ("/studies/ghost", "/studies/ghost/trials", "/studies/ghost/best"):
        response = api.get(path)
        assert response.status_code == 404 and "ghost" in response.json()["detail"], path


def test_datetimes_carry_a_timezone(api: TestClient, fuzz_db: tuple[str, str, str]) -> None:
    """RFC 3339 date-times (the schema's `format: date-time`) need an offset: every time the
    API answers with is UTC, and the same instant as the naive time the database holds."""
    _backend, url, _secret = fuzz_db
    fleet.register_worker(open_storage(url), "tz:1", device="cpu")
    trial = api.get(f"/studies/{STUDY}/trials/0").json()
    worker = api.get("/workers").json()["data"][0]
    status = api.get(f"/studies/{STUDY}").json()
    for moment in (
        trial["datetime_start"],
        trial["datetime_complete"],
        worker["last_seen"],
        worker["started_at"],
        status["created_at"],
    ):
        assert dt.datetime.fromisoformat(moment).utcoffset() == dt.timedelta(0), moment
    stored = (
        open_storage(url)
        .get_all_trials(open_storage(url).get_study_id_from_name(STUDY))[0]
        .datetime_start
    )
    answered = dt.datetime.fromisoformat(trial["datetime_start"])
    assert answered == stored.astimezone(dt.UTC)  # Optuna's naive time is local time


def _row_counts(url: str) -> tuple[int, int]:
    with open_storage(url).engine.connect() as conn:
        return (
            conn.execute(sqlalchemy.text("SELECT COUNT(*) FROM studies")).scalar_one(),
            conn.execute(sqlalchemy.text("SELECT COUNT(*) FROM trials")).scalar_one(),
        )


def test_sql_looking_names_change_nothing(api: TestClient, fuzz_db: tuple[str, str, str]) -> None:
    _backend, url, _secret = fuzz_db
    before = _row_counts(url)
    evil = "x'; DROP TABLE trials;--"
    answers = [
        api.get(f"/studies/{evil}"),
        api.get(f"/studies/{evil}/trials"),
        api.get("/workers", params={"study": evil}),
        api.post(f"/studies/{evil}/trials/0/prune"),
        api.post("/studies", json={**SPEC, "name": evil}),
        api.post("/studies", json={**SPEC, "name": "ok", "space": evil}),
        api.get(f"/studies/{STUDY}/trials", params={"state": "complete' OR '1'='1"}),
    ]
    statuses = [r.status_code for r in answers]
    assert statuses[2] == 200 and answers[2].json()["count"] == 0
    assert all(400 <= s < 500 for i, s in enumerate(statuses) if i != 2), statuses
    assert _row_counts(url) == before
