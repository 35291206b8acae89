"""Issue 18's whole path: a trade-off with a constraint, through the real service, two worker
processes and PostgreSQL, to the front and a model taken home.

A two-objective study (accuracy against latency on digits, parameters capped) is submitted over
HTTP; two `hpsearch worker` processes share it. The front the API gives is the one recomputed
from the trials, a trial that breaks the cap never trained, and the front's most accurate model,
exported through the service, loads in a fresh process and gives its recorded accuracy.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
from optuna.trial import TrialState

from conftest import serve_app
from hpsearch import cli
from hpsearch.client import Client
from hpsearch.service import Settings, create_app
from hpsearch.studies.objectives import INFEASIBLE_ATTR, METRICS_ATTR

CAP = 30000  # parameters: the defaults (width 128, depth 2: 26,634) fit, a wide net does not


def _dominates(a: list[float], b: list[float]) -> bool:
    """Whether a dominates b, accuracy maximized and latency minimized."""
    better_or_equal = a[0] >= b[0] and a[1] <= b[1]
    return better_or_equal and (a[0] > b[0] or a[1] < b[1])


def test_a_constrained_trade_off_runs_through_the_service_and_two_workers(
    fresh_postgres_url: str, free_port: int, make_api_token, tmp_path: Path, capsys, monkeypatch
) -> None:
    store = tmp_path / "artifacts"
    token = make_api_token(fresh_postgres_url, "write")
    spec = {
        "name": "acc-vs-latency",
        "space": "demo",
        "task": {"epochs": 2},
        "objectives": {"val_accuracy": "maximize", "latency_ms": "minimize"},
        "constraints": {"params": {"max": CAP}},
        "budget": {"trials": 10},
        "seed": 0,
        "fixed": {"model.depth": 2},
    }
    settings = Settings(storage=fresh_postgres_url, artifacts=str(store))
    with serve_app(create_app(settings), free_port) as url:
        client = Client(url, token=token)
        created = client.create_study(spec)
        assert created["pareto"] == {
            "objectives": ["val_accuracy", "latency_ms"],
            "size": 0,
            "hypervolume": None,
            "reference_point": None,
        }
        env = {**os.environ, "HPSEARCH_STORAGE": fresh_postgres_url}
        workers = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "hpsearch",
                    "worker",
                    "--study",
                    "acc-vs-latency",
                    "--gpus",
                    "none",
                    "--artifacts",
                    str(store),
                    "--keep-artifacts",
                    "best:3",
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )  # fmt: skip
            for _ in range(2)
        ]
        logs = [w.communicate(timeout=600)[0] for w in workers]
        assert [w.returncode for w in workers] == [0, 0], logs

        trials = optuna.load_study(study_name="acc-vs-latency", storage=fresh_postgres_url).trials
        assert len(trials) == 10 and all(t.state != TrialState.RUNNING for t in trials)
        numbers = [t.number for t in trials]
        assert len(set(numbers)) == 10
        configs = [str(sorted(t.params.items())) for t in trials]
        assert len(set(configs)) == 10  # no config sampled twice

        # A trial over the cap ended before its first epoch: no rung, no training time.
        over = [t for t in trials if t.user_attrs[METRICS_ATTR]["params"] > CAP]
        assert over, "the search never tried a net over the cap"
        for t in over:
            assert t.state == TrialState.PRUNED and "rungs" not in t.user_attrs
            assert t.user_attrs[INFEASIBLE_ATTR].startswith("infeasible before training: params")
            assert set(t.user_attrs[METRICS_ATTR]) == {"params", "size_mb", "latency_ms"}

        # The front from the API is the one recomputed from the complete trials.
        complete = {t.number: t.values for t in trials if t.state == TrialState.COMPLETE}
        expected = {
            n for n, v in complete.items() if not any(_dominates(w, v) for w in complete.values())
        }
        front = client.pareto("acc-vs-latency")
        assert {t["number"] for t in front["trials"]} == expected
        assert front["hypervolume"] is not None and front["hypervolume"] >= 0
        status = client.study("acc-vs-latency")
        assert status["done"] and status["pareto"]["size"] == len(expected)

        # The front's most accurate point, exported through the service, loads elsewhere.
        top = front["trials"][0]
        out = tmp_path / "home"
        monkeypatch.setenv("HPSEARCH_API_TOKEN", token)
        code = cli.main(["export", "acc-vs-latency", str(out), "--server", url])
        assert code == 0, capsys.readouterr().err
        assert f"trial {top['number']} of acc-vs-latency exported" in capsys.readouterr().out
    done = subprocess.run(
        [sys.executable, str(out / "load.py")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    metric, value = done.stdout.split()[:2]
    assert metric == "val_accuracy"
    assert abs(float(value) - top["values"][0]) <= 1e-6, (value, top["values"])
