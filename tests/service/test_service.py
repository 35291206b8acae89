"""The REST service through its real app: statuses, messages, auth, OpenAPI."""

from __future__ import annotations

import sys

import pytest
from fastapi.testclient import TestClient

from hpsearch import studies
from hpsearch.db.storage import open_storage
from hpsearch.service import Settings, create_app

SPEC = {"name": "api", "space": "demo", "task": {"epochs": 2}, "budget": {"trials": 3}}


@pytest.fixture
def api(storage_url, make_api_token):
    """A client of the app that sends a token of scope write."""
    headers = {"Authorization": f"Bearer {make_api_token(storage_url, 'write')}"}
    with TestClient(create_app(Settings(storage=storage_url)), headers=headers) as client:
        yield client


def test_create_list_status_and_spec(api):
    created = api.post("/studies", json=SPEC)
    assert created.status_code == 201, created.text
    assert created.json()["name"] == "api" and created.json()["budget_trials"] == 3
    listing = api.get("/studies").json()
    assert listing["count"] == 1 and listing["data"][0]["name"] == "api"
    status = api.get("/studies/api").json()
    assert status["counts"]["complete"] == 0 and status["done"] is False
    spec = api.get("/studies/api/spec").json()
    assert spec["space"]["name"] == "demo" and "optim.lr" in spec["space"]["params"]


def test_errors_say_what_to_fix(api):
    assert api.post("/studies", json=SPEC).status_code == 201
    clash = api.post("/studies", json=SPEC)
    assert clash.status_code == 409 and "already exists" in clash.json()["detail"]
    bad = api.post("/studies", json={**SPEC, "name": "x", "fixed": {"optim.lrr": 0.1}})
    assert bad.status_code == 422 and "optim.lr" in bad.json()["detail"]
    bad_field = api.post("/studies", json={**SPEC, "name": "y", "budget": {"trials": -1}})
    assert bad_field.status_code == 422 and "trials" in str(bad_field.json()["detail"])
    missing = api.get("/studies/ghost")
    assert missing.status_code == 404 and "ghost" in missing.json()["detail"]
    assert api.get("/studies/api/best").status_code == 404
    assert api.get("/studies/api/trials/5").status_code == 404
    assert api.post("/studies/api/trials/5/prune").status_code == 404
    assert api.get("/studies/api/trials", params={"state": "sleeping"}).status_code == 422
    assert api.get("/spaces/ghost").status_code == 404
    assert api.get("/spaces/demo.yaml").status_code == 404  # names only, never server paths
    by_path = api.post("/studies", json={**SPEC, "name": "z", "space": "/etc/hosts.yaml"})
    assert by_path.status_code == 422 and "inline" in by_path.json()["detail"]


def test_trials_best_and_prune(api, storage_url):
    api.post("/studies", json=SPEC)
    study, _ = studies.open_study(open_storage(storage_url), "api")
    for v in (0.2, 0.8):
        t = study.ask()
        study.tell(t, v)
    running = study.ask()
    page = api.get("/studies/api/trials", params={"limit": 2}).json()
    assert page["count"] == 3 and [t["number"] for t in page["data"]] == [0, 1]
    assert api.get("/studies/api/best").json()["value"] == 0.8
    finished = api.post("/studies/api/trials/0/prune")
    assert finished.status_code == 409 and "not running" in finished.json()["detail"]
    accepted = api.post(f"/studies/api/trials/{running.number}/prune")
    assert accepted.status_code == 202
    assert studies.prune_requested(open_storage(storage_url), running._trial_id)


def test_spaces_and_docs(api):
    assert "demo" in api.get("/spaces").json()["data"]
    demo = api.get("/spaces/demo").json()
    assert demo["params"]["optim.lr"]["impact"] == "high"
    assert api.get("/openapi.json").status_code == 200
    assert api.get("/docs").status_code == 200
    assert api.get("/readyz").json() == {"status": "ready"}


def test_writes_need_a_write_token(sqlite_url, make_api_token):
    write = {"Authorization": f"Bearer {make_api_token(sqlite_url, 'write')}"}
    read = {"Authorization": f"Bearer {make_api_token(sqlite_url, 'read')}"}
    with TestClient(create_app(Settings(storage=sqlite_url))) as api:
        missing = api.post("/studies", json=SPEC)
        assert missing.status_code == 401 and "hpsearch token create" in missing.json()["detail"]
        wrong = api.post("/studies", json=SPEC, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert api.post("/studies", json=SPEC, headers=read).status_code == 403
        assert api.get("/studies", headers=read).json()["count"] == 0  # nothing was written
        ok = api.post("/studies", json=SPEC, headers=write)
        assert ok.status_code == 201
        assert api.get("/studies/api", headers=read).status_code == 200
        assert api.get("/studies/api").status_code == 401  # reads need a token by default


def test_importing_the_service_does_not_import_torch():
    import subprocess

    code = "import hpsearch.service, hpsearch.service.app, sys; print('torch' in sys.modules, 'timm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
