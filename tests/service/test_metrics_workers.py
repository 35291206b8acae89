"""GET /workers, GET /metrics and the `hpsearch workers` verb, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest
from conftest import serve_app
from fastapi.testclient import TestClient
from optuna.trial import TrialState
from prometheus_client.parser import text_string_to_metric_families

from hpsearch import studies
from hpsearch.db import fleet
from hpsearch.cli import main
from hpsearch.client import Client
from hpsearch.db.storage import open_storage
from hpsearch.service import Settings, create_app

SPEC = {"name": "fleet-a", "space": "demo", "task": {"epochs": 2}, "budget": {"trials": 4}}


def _samples(text: str) -> dict[str, list]:
    """Every sample of a Prometheus text page, by sample name."""
    found: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append(sample)
    return found


def _value(samples: dict[str, list], name: str, **labels: str) -> float:
    matching = [s.value for s in samples.get(name, []) if labels.items() <= s.labels.items()]
    assert len(matching) == 1, f"{name}{labels}: {matching} in {samples.get(name)}"
    return matching[0]


@pytest.fixture
def fleet_db(storage_url, make_api_token):
    """A study with 2 complete, 1 pruned, 1 failed and 1 running trial; three workers, one
    retired; and a read token. Returns ``(url, headers)``."""
    storage = open_storage(storage_url)
    studies.create_study(storage, SPEC, allow_space_paths=False)
    study, _ = studies.open_study(storage, "fleet-a")
    for value in (0.3, 0.7):
        study.tell(study.ask(), value)
    study.tell(study.ask(), state=TrialState.PRUNED)
    study.tell(study.ask(), state=TrialState.FAIL)
    running = study.ask()

    fleet.register_worker(storage, "busy:1:cuda", device="cuda", gpu_name="NVIDIA H100")
    fleet.worker_beat(storage, "busy:1:cuda", study="fleet-a", trial_number=running.number)
    fleet.register_worker(storage, "idle:2", device="cpu")
    fleet.worker_beat(storage, "idle:2", finished_trial=True)
    fleet.register_worker(storage, "gone:3", device="cpu")
    fleet.retire_worker(storage, "gone:3")
    headers = {"Authorization": f"Bearer {make_api_token(storage_url, 'read')}"}
    return storage_url, headers


def test_workers_lists_the_live_ones_with_what_they_run(fleet_db):
    url, headers = fleet_db
    with TestClient(create_app(Settings(storage=url))) as api:
        live = api.get("/workers", headers=headers)
        assert live.status_code == 200, live.text
        by_id = {w["worker_id"]: w for w in live.json()["data"]}
        assert live.json()["count"] == 2 and set(by_id) == {"busy:1:cuda", "idle:2"}
        busy, idle = by_id["busy:1:cuda"], by_id["idle:2"]
        assert (busy["study"], busy["trial_number"], busy["gpu_name"]) == (
            "fleet-a",
            4,
            "NVIDIA H100",
        )
        assert (idle["study"], idle["trial_number"], idle["trials_run"]) == (None, None, 1)

        everyone = api.get("/workers", params={"all": "true"}, headers=headers).json()
        assert everyone["count"] == 3
        assert {w["worker_id"]: w["live"] for w in everyone["data"]}["gone:3"] is False

        on_study = api.get("/workers", params={"study": "fleet-a"}, headers=headers).json()
        assert [w["worker_id"] for w in on_study["data"]] == ["busy:1:cuda"]
        assert api.get("/workers").status_code == 401  # reads need a token by default


def test_metrics_count_trials_workers_and_latency_by_route_template(fleet_db):
    url, headers = fleet_db
    with TestClient(create_app(Settings(storage=url))) as api:
        assert api.get("/studies/fleet-a", headers=headers).status_code == 200
        assert api.get("/studies/fleet-a", headers=headers).status_code == 200
        assert api.get("/studies/nobody", headers=headers).status_code == 404
        assert api.get("/no/such/path", headers=headers).status_code == 404
        scrape = api.get("/metrics", headers=headers)
    assert scrape.status_code == 200 and scrape.headers["content-type"].startswith("text/plain")
    samples = _samples(scrape.text)

    assert _value(samples, "hpsearch_database_up") == 1
    expected = {"complete": 2, "pruned": 1, "fail": 1, "running": 1, "waiting": 0}
    for state, n in expected.items():
        assert _value(samples, "hpsearch_trials", study="fleet-a", state=state) == n, state
    assert _value(samples, "hpsearch_studies", state="open") == 1  # 3 of 4 trials finished
    assert _value(samples, "hpsearch_studies", state="done") == 0
    count = _value(
        samples, "hpsearch_trial_duration_seconds_count", study="fleet-a", state="complete"
    )
    total = _value(
        samples, "hpsearch_trial_duration_seconds_sum", study="fleet-a", state="complete"
    )
    longest = _value(
        samples, "hpsearch_trial_duration_max_seconds", study="fleet-a", state="complete"
    )
    assert count == 2 and 0 <= longest <= total < 60

    assert _value(samples, "hpsearch_live_workers") == 2
    assert _value(samples, "hpsearch_live_workers_by_device", device="cuda") == 1
    assert _value(samples, "hpsearch_live_workers_by_device", device="cpu") == 1

    latency = "hpsearch_http_request_duration_seconds_count"
    ok = {"method": "GET", "route": "/studies/{name}", "status": "200"}
    assert _value(samples, latency, **ok) == 2
    assert _value(samples, latency, **{**ok, "status": "404"}) == 1
    assert _value(samples, latency, method="GET", route="<unmatched>", status="404") == 1
    routes = {s.labels["route"] for s in samples[latency]}
    assert not any("fleet-a" in r or "nobody" in r for r in routes), routes  # no raw paths


def test_metrics_follow_the_read_guard(fleet_db):
    url, _headers = fleet_db
    with TestClient(create_app(Settings(storage=url))) as api:
        assert api.get("/metrics").status_code == 401
    with TestClient(create_app(Settings(storage=url, anonymous_reads=True))) as api:
        assert api.get("/metrics").status_code == 200


def test_study_that_spent_its_budget_is_done(sqlite_url, make_api_token):
    storage = open_storage(sqlite_url)
    studies.create_study(storage, {**SPEC, "budget": {"trials": 1}}, allow_space_paths=False)
    study, _ = studies.open_study(storage, "fleet-a")
    study.tell(study.ask(), 0.5)
    headers = {"Authorization": f"Bearer {make_api_token(sqlite_url, 'read')}"}
    with TestClient(create_app(Settings(storage=sqlite_url))) as api:
        samples = _samples(api.get("/metrics", headers=headers).text)
    assert _value(samples, "hpsearch_studies", state="done") == 1
    assert _value(samples, "hpsearch_live_workers") == 0
    assert "hpsearch_live_workers_by_device" not in samples


@pytest.fixture
def served(fleet_db, free_port):
    """A real uvicorn server over the fleet database, on a thread; yields its URL."""
    url, headers = fleet_db
    with serve_app(create_app(Settings(storage=url)), free_port) as base_url:
        yield base_url, headers["Authorization"].removeprefix("Bearer ")


def test_client_and_cli_show_workers(served, capsys, monkeypatch):
    server, token = served
    with Client(server, token=token) as client:
        assert client.workers()["count"] == 2
        assert client.workers(all=True)["count"] == 3
        assert [w["worker_id"] for w in client.workers(study="fleet-a")["data"]] == ["busy:1:cuda"]
        families = {f.name for f in text_string_to_metric_families(client.metrics())}
        assert {"hpsearch_trials", "hpsearch_live_workers"} <= families

    monkeypatch.setenv("HPSEARCH_API_TOKEN", token)
    assert main(["workers", "--server", server]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["host", "pid", "device", "study", "trial", "heartbeat", "trials"]
    assert len(table) == 3
    busy = next(line for line in table if "fleet-a" in line)
    assert "cuda (NVIDIA H100)" in busy and " s ago" in busy

    assert main(["workers", "--server", server, "--all"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert len(table) == 4 and table[0].split()[-1] == "state"
    assert sum(line.rstrip().endswith("gone") for line in table) == 1


def test_cli_reads_workers_from_the_database(fleet_db, capsys):
    url, _headers = fleet_db
    assert main(["workers", "--storage", url, "--study", "fleet-a", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["count"] == 1 and listing["data"][0]["trial_number"] == 4
    assert main(["workers", "--storage", url, "--study", "nobody"]) == 0
    assert "no live workers on study 'nobody'" in capsys.readouterr().out
