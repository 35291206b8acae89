"""The `hpsearch` command as a user types it: help, clear errors, the demo, the dashboard."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request

import pytest

from hpsearch import studies
from hpsearch.db import tokens
from hpsearch.db.storage import open_storage

VERBS = ["demo", "serve", "dashboard", "worker", "submit", "status", "best", "spaces"]
VERBS += ["try", "lr-find", "token", "importance", "workers", "stop", "resume", "delete"]
VERBS += ["prune", "trials", "enqueue", "pruner"]
VERBS += ["extend"]
VERBS += ["slurm"]


def hpsearch(*args, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "hpsearch", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_explains_itself(verb):
    out = hpsearch(verb, "--help")
    assert out.returncode == 0 and "usage: hpsearch " + verb in out.stdout


def test_spaces_lists_and_shows_tiers():
    listing = hpsearch("spaces")
    assert listing.returncode == 0 and "demo" in listing.stdout and "tabular" in listing.stdout
    demo = hpsearch("spaces", "demo")
    assert demo.returncode == 0
    high_line = next(line for line in demo.stdout.splitlines() if "optim.lr" in line)
    assert high_line.split()[0] == "high"
    assert "when optim.name in ['sgd']" in demo.stdout


def test_errors_are_messages_not_tracebacks(tmp_path):
    missing = hpsearch("submit", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 1 and "cannot read study spec" in missing.stderr
    assert "Traceback" not in missing.stderr
    spec = tmp_path / "s.yaml"
    spec.write_text("space: demo\n")
    down = hpsearch("submit", str(spec), "--server", "http://127.0.0.1:9")
    assert (
        down.returncode == 1 and "hpsearch serve" in down.stderr and "Traceback" not in down.stderr
    )
    open_storage(f"sqlite:///{tmp_path}/x.db")
    nostudy = hpsearch("best", "ghost", "--storage", f"sqlite:///{tmp_path}/x.db")
    assert (
        nostudy.returncode == 1 and "ghost" in nostudy.stderr and "Traceback" not in nostudy.stderr
    )
    badurl = hpsearch("status", "--storage", "mysql://x/y")
    assert badurl.returncode == 1 and "unsupported storage" in badurl.stderr
    badgpus = hpsearch("worker", "--gpus", "one", "--storage", f"sqlite:///{tmp_path}/x.db")
    assert badgpus.returncode != 0 and "Traceback" not in badgpus.stderr


def test_status_and_best_read_the_database_directly(sqlite_url):
    storage = open_storage(sqlite_url)
    studies.create_study(storage, {"name": "cli", "space": "demo", "budget": {"trials": 2}})
    study, _ = studies.open_study(storage, "cli")
    t = study.ask()
    t.set_user_attr("config", {"optim.lr": 0.01, "model.width": 64})
    study.tell(t, 0.93)
    listing = hpsearch("status", "--storage", sqlite_url)
    assert "cli" in listing.stdout and "1/2" in listing.stdout
    best = hpsearch("best", "cli", "--storage", sqlite_url, "--json")
    assert json.loads(best.stdout)["value"] == 0.93
    shown = hpsearch("best", "cli", "--storage", sqlite_url)
    assert "0.9300" in shown.stdout and "model.width" in shown.stdout


def _wait_json(url, proc, timeout=60, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(
                urllib.request.Request(url, headers=headers), timeout=5
            ) as r:
                return json.load(r)
        except OSError:
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, f"{url} did not answer"
            time.sleep(0.3)


@pytest.mark.slow
def test_serve_starts_the_dashboard_over_the_same_database(
    sqlite_url, free_port, tmp_path, make_api_token
):
    storage = open_storage(sqlite_url)
    studies.create_study(storage, {"name": "dash", "space": "demo", "budget": {"trials": 2}})
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dash_port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hpsearch",
            "serve",
            "--storage",
            sqlite_url,
            "--port",
            str(free_port),
            "--dashboard-port",
            str(dash_port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        token = make_api_token(sqlite_url, "read")
        listing = _wait_json(f"http://127.0.0.1:{dash_port}/api/studies", proc, token=token)
        assert [s["study_name"] for s in listing["study_summaries"]] == ["dash"]
        with urllib.request.urlopen(f"http://127.0.0.1:{dash_port}/dashboard", timeout=5) as r:
            assert r.status == 200 and r.url.endswith("/dashboard/login?next=%2Fdashboard")
        study = _wait_json(f"http://127.0.0.1:{free_port}/studies/dash", proc, token=token)
        assert study["name"] == "dash"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.mark.slow
def test_demo_runs_a_study_to_the_end(tmp_path):
    out = hpsearch(
        "demo",
        "--storage",
        f"sqlite:///{tmp_path}/demo.db",
        "--trials",
        "6",
        "--epochs",
        "2",
        "--exit-when-done",
        "--port",
        "0",
        "--dashboard-port",
        "0",
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "6/6 finished" in out.stdout
    assert "best trial #" in out.stdout and "optim.lr" in out.stdout
    assert "dashboard:" in out.stdout
    storage = open_storage(f"sqlite:///{tmp_path}/demo.db")
    (status,) = studies.list_studies(storage)
    assert status.finished == 6 and status.done
    (token,) = tokens.list_tokens(storage)  # it submitted with its own token, then revoked it
    assert token.name.startswith("demo-") and token.allows("write") is False and token.revoked
