"""`hpsearch worker --per-gpu N`: N worker processes per GPU, each pinned to it, listed per GPU.

No GPU is needed: the GPUs are given by index (``--gpus 0,1``, which probes nothing) under a
faked CUDA_VISIBLE_DEVICES, and the workers run an objective of the tests' own that records
the CUDA_VISIBLE_DEVICES its process got.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy
from conftest import serve_app

from hpsearch import studies
from hpsearch.cli import main
from hpsearch.client import Client
from hpsearch.db import fleet
from hpsearch.db.storage import open_storage
from hpsearch.service import Settings, create_app

TESTS = Path(__file__).parents[1]  # the objectives modules beside conftest.py


def test_per_gpu_starts_n_pinned_workers_per_gpu_and_the_fleet_shows_them(
    sqlite_url, tmp_path, free_port, make_api_token, capsys
):
    studies.create_study(
        open_storage(sqlite_url),
        {"name": "g", "space": "demo", "budget": {"trials": 4}, "pruner": "none", "seed": 0},
    )
    trace = tmp_path / "trace"
    trace.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
        "CUDA_VISIBLE_DEVICES": "3,5",  # this machine's GPUs, as a launcher would have set
        "HPSEARCH_TEST_TRACE": str(trace),
        "HPSEARCH_TEST_WORKERS": "4",
    }
    cmd = [sys.executable, "-m", "hpsearch", "worker", "--storage", sqlite_url, "--study", "g",
           "--gpus", "0,1", "--per-gpu", "2",
           "--objective", "gpu_objectives:pinned_together"]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]

    # Four processes ran a trial each, at the same time: two pinned to GPU 3, two to GPU 5.
    seen = dict(line.split() for line in (p.read_text() for p in trace.iterdir()))
    assert sorted(seen.values()) == ["3", "3", "5", "5"], seen

    # The fleet table has them per GPU, with the pids that ran the trials.
    token = make_api_token(sqlite_url, "read")
    with serve_app(create_app(Settings(storage=sqlite_url)), free_port) as server:
        with Client(server, token=token) as client:
            listed = client.workers(all=True)["data"]
    assert {str(w["pid"]): w["gpu"] for w in listed} == seen
    assert {w["device"] for w in listed} == {"cuda"}

    assert main(["workers", "--storage", sqlite_url, "--all"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    devices = [row.split()[2] for row in rows]
    assert devices == ["cuda:3", "cuda:3", "cuda:5", "cuda:5"], rows  # grouped by GPU
    assert collections.Counter(row.split()[-1] for row in rows) == {"gone": 4}  # all exited


def test_per_gpu_without_a_gpu_is_one_clear_line(sqlite_url, capsys):
    for argv, said in (
        (["--gpus", "none", "--per-gpu", "2"], "--per-gpu 2 shares GPUs, but --gpus none gives"),
        (["--gpus", "0", "--per-gpu", "0"], "--per-gpu takes a number from 1 to 64; got 0"),
    ):
        assert main(["worker", "--storage", sqlite_url, *argv]) == 1
        err = capsys.readouterr().err
        assert said in err and len(err.strip().splitlines()) == 1, err


def test_an_older_fleet_table_gets_the_gpu_column(tmp_path):
    url = f"sqlite:///{tmp_path}/old.db"
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as conn:  # hpsearch_workers as releases before --per-gpu made it
        conn.exec_driver_sql(
            "CREATE TABLE hpsearch_workers (worker_id VARCHAR(255) PRIMARY KEY, host VARCHAR(255) "
            "NOT NULL, pid INTEGER NOT NULL, device VARCHAR(64) NOT NULL, gpu_name VARCHAR(255), "
            "version VARCHAR(64) NOT NULL, started_at DATETIME NOT NULL, last_seen DATETIME NOT "
            "NULL, study VARCHAR(512), trial_number INTEGER, trials_run INTEGER NOT NULL, "
            "stopped_at DATETIME)"
        )
        conn.exec_driver_sql(
            "INSERT INTO hpsearch_workers VALUES ('old:1', 'old', 1, 'cpu', NULL, '0.1.0', "
            "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, NULL, NULL, 0, NULL)"
        )
    engine.dispose()
    storage = open_storage(url)
    fleet.register_worker(storage, "new:2:cuda", device="cuda", gpu="1")
    gpus = {w.worker_id: w.gpu for w in fleet.list_workers(storage, live_only=False)}
    assert gpus == {"old:1": None, "new:2:cuda": "1"}
