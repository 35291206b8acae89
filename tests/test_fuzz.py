"""A property-based fuzz of the API's OpenAPI schema, and explicit bad-input cases.

The fuzz runs every operation of the real app (schemathesis 4: examples, coverage and fuzzing
phases, valid and invalid inputs) over a SQLite database holding a real study with finished
trials, with a write token so that it reaches the write routes too. Half the time the path's
``name`` is the real study and ``number`` one of its trials, so requests get past the 404s.
Checks: no response is a server error, and every response's status, content type and body are
what the schema says (FastAPI documents only the success status and 422, so a status hpsearch's
error mapping answers with (400, 401, 403, 404, 409, 413) is accepted; bodies are checked for
2xx answers only, since hpsearch's own 422s carry ``{"detail": "message"}``, not FastAPI's list).

Run with ``-s`` to see how many cases ran and their statuses.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import re
from collections.abc import Iterator

import pytest
import schemathesis
import sqlalchemy
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from optuna.trial import TrialState
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import FailureGroup
from schemathesis.openapi.checks import JsonSchemaError

from hpsearch import fleet, studies
from hpsearch.storage import open_storage
from hpsearch.tokens import create_token
from service import Settings, create_app

STUDY = "fuzz"
SPEC = {"name": STUDY, "space": "demo", "task": {"epochs": 2}, "budget": {"trials": 6}}
#: What hpsearch's error mapping and auth answer with besides FastAPI's documented statuses.
ERROR_STATUSES = {400, 401, 403, 404, 405, 409, 413, 422}
_NAIVE_DATETIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?")

#: (operation, status) -> how many fuzz cases got that answer; printed at the end of the module.
STATS: collections.Counter[tuple[str, int]] = collections.Counter()


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


@pytest.fixture(scope="module")
def fuzz_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """``(url, secret)`` of the module's database; prints the fuzz's statistics at the end."""
    url = f"sqlite:///{tmp_path_factory.mktemp('fuzz')}/study.db"
    yield url, _make_db(url)
    if STATS:
        by_status = collections.Counter()
        for (_op, status), n in STATS.items():
            by_status[status] += n
        print(f"\nfuzz: {sum(STATS.values())} cases; by status: {dict(sorted(by_status.items()))}")
        for (op, status), n in sorted(STATS.items()):
            print(f"  {op:<48} {status}  {n}")


@pytest.fixture(scope="module")
def fuzz_app(fuzz_db: tuple[str, str]) -> FastAPI:
    """The app over the module's database, which every fuzz case calls."""
    url, _secret = fuzz_db
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


def _naive_datetime(failure: BaseException) -> bool:
    return isinstance(failure, JsonSchemaError) and bool(
        isinstance(failure.instance, str) and _NAIVE_DATETIME.fullmatch(failure.instance)
    )


def _success_body_conforms(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> bool | None:
    # Only 2xx bodies: hpsearch answers its own 422s (a spec that fails hpsearch's checks)
    # with {"detail": "message"}, not FastAPI's documented list of validation errors.
    if not 200 <= response.status_code < 300:
        return None
    try:
        return response_schema_conformance(ctx, response, case)
    except (JsonSchemaError, FailureGroup) as e:
        # Known defect, tolerated here and pinned by test_datetimes_carry_a_timezone: trial
        # and worker times are naive, which `format: date-time` (RFC 3339) does not allow.
        if all(map(_naive_datetime, getattr(e, "exceptions", [e]))):
            return None
        raise


@schema.parametrize()
@schema.given(data=st.data())
@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_api_fuzz(
    case: schemathesis.Case, data: st.DataObject, fuzz_db: tuple[str, str], fuzz_app: FastAPI
) -> None:
    url, secret = fuzz_db
    path = case.path_parameters
    if path and data.draw(st.booleans(), label="use a real study"):
        if "name" in path:
            # Deletes hit a study of their own, so that the others keep finding "fuzz".
            path["name"] = STUDY if case.method.upper() != "DELETE" else _victim(url)
        if "number" in path:
            path["number"] = data.draw(st.integers(0, 5), label="trial number")
    # Cases that test missing or bad credentials come without this header (schemathesis).
    response = case.call(app=fuzz_app, headers={"Authorization": f"Bearer {secret}"})
    STATS[(case.operation.label, response.status_code)] += 1
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
    """Run after the fuzz: without hits on the real study it only fuzzed the 404 path."""
    if not STATS:
        pytest.skip("the fuzz did not run in this session (deselected)")
    ran = {op for op, _status in STATS}
    reached = {op for op, status in STATS if 200 <= status < 300}
    for op in ("GET /studies/{name}", "GET /studies/{name}/trials", "GET /studies/{name}/best"):
        assert op not in ran or op in reached, f"{op} never answered 2xx: {sorted(reached)}"
    assert all(status < 500 for (_op, status) in STATS)


@pytest.fixture
def api(fuzz_db: tuple[str, str], fuzz_app: FastAPI) -> Iterator[TestClient]:
    _url, secret = fuzz_db
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


@pytest.mark.xfail(
    strict=True,
    reason="trial and worker times are naive (no UTC offset): RFC 3339 date-time needs one; "
    "when fixed, drop this mark and the tolerance in _success_body_conforms",
)
def test_datetimes_carry_a_timezone(api: TestClient, fuzz_db: tuple[str, str]) -> None:
    url, _secret = fuzz_db
    fleet.register_worker(open_storage(url), "tz:1", device="cpu")
    trial = api.get(f"/studies/{STUDY}/trials/0").json()
    worker = api.get("/workers").json()["data"][0]
    for moment in (trial["datetime_start"], worker["last_seen"]):
        assert dt.datetime.fromisoformat(moment).tzinfo is not None, moment


def _row_counts(url: str) -> tuple[int, int]:
    with open_storage(url).engine.connect() as conn:
        return (
            conn.execute(sqlalchemy.text("SELECT COUNT(*) FROM studies")).scalar_one(),
            conn.execute(sqlalchemy.text("SELECT COUNT(*) FROM trials")).scalar_one(),
        )


def test_sql_looking_names_change_nothing(api: TestClient, fuzz_db: tuple[str, str]) -> None:
    url, _secret = fuzz_db
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
