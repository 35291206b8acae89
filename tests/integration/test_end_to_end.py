"""The whole path as users run it: `hpsearch serve`, two `hpsearch worker` processes, the client.

On PostgreSQL (the multi-machine setup), with real training of the demo task on digits. The
embedded SQLite default runs the same path in the demo's test (tests/cli/test_cli.py) and two
worker processes on one SQLite study in tests/worker/test_worker.py.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time

import pytest

from hpsearch.client import Client, ServiceUnreachable

pytestmark = pytest.mark.slow


def _hpsearch(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "hpsearch", *args], **kwargs)


@pytest.fixture
def service(storage_url, free_port, tmp_path, make_api_token):
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 - closed once the service stops
    proc = _hpsearch(
        "serve",
        "--storage",
        storage_url,
        "--port",
        str(free_port),
        "--no-dashboard",
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    client = Client(f"http://127.0.0.1:{free_port}", token=make_api_token(storage_url, "write"))
    deadline = time.monotonic() + 60
    while True:
        try:
            client.health()
            break
        except ServiceUnreachable:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "service did not start"
            time.sleep(0.2)
    yield client
    proc.terminate()
    proc.wait(timeout=20)
    log.close()


@pytest.mark.parametrize(
    "storage_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_two_workers_complete_a_20_trial_study_through_the_service(
    service, storage_url, tmp_path, make_api_token
):
    spec = {
        "name": "e2e",
        "space": "demo",
        "task": {"dataset": "digits", "epochs": 5},  # long enough that both workers get trials
        "budget": {"trials": 20},
        "pruner": {"name": "median", "n_startup_trials": 3, "n_warmup_steps": 1},
        "seed": 0,
    }
    assert service.create_study(spec)["name"] == "e2e"
    workers = [
        _hpsearch(
            "worker",
            "--storage",
            storage_url,
            "--study",
            "e2e",
            "--gpus",
            "none",
            "--threads",
            "1",
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs

    status = service.study("e2e")
    assert status["finished"] == 20 and status["done"], status
    assert status["counts"]["running"] == 0 and status["counts"]["waiting"] == 0
    assert status["counts"]["complete"] + status["counts"]["pruned"] == 20
    trials = service.trials("e2e", limit=100)
    assert trials["count"] == sum(status["counts"].values())
    finished = [t for t in trials["data"] if t["state"] in ("complete", "pruned")]
    assert len(finished) == 20
    assert len({t["worker"] for t in finished}) == 2, "both worker processes ran trials"
    for t in finished:
        assert t["config"] and "optim.lr" in t["config"] and t["params"]
        assert t["value"] is not None and 0.0 <= t["value"] <= 1.0
        assert t["intermediate_values"]
        assert t["seed"] == t["number"]  # recorded: spec seed 0 + trial number
    complete = [t for t in finished if t["state"] == "complete"]
    best = service.best("e2e")
    assert best["value"] == max(t["value"] for t in complete)
    assert best["number"] in {
        t["number"] for t in complete if math.isclose(t["value"], best["value"])
    }
    assert best["value"] > 0.8, "the demo task learns digits in 5 epochs"
    # What `hpsearch best` prints comes from the same place.
    read_token = make_api_token(storage_url, "read")
    out = subprocess.run(
        [sys.executable, "-m", "hpsearch", "best", "e2e", "--server", service.server],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "HPSEARCH_API_TOKEN": read_token},
    ).stdout
    assert f"#{best['number']}" in out and "optim.lr" in out
