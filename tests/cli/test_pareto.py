"""The Pareto front of a study of several objectives: REST, the client, the CLI, the status."""

from __future__ import annotations

import httpx
import numpy as np
import optuna
import pytest

from hpsearch import studies
from hpsearch.cli import main
from hpsearch.client import Client
from hpsearch.db.storage import open_storage
from hpsearch.worker import run_worker

_SPEC = {
    "name": "mo",
    "space": {
        "params": {
            "x": {"type": "float", "low": 0.0, "high": 1.0, "default": 0.5, "impact": "high"},
            "y": {"type": "float", "low": 0.0, "high": 1.0, "default": 0.5, "impact": "low"},
        }
    },
    "objectives": {"error": "minimize", "size": "minimize"},
    "budget": {"trials": 16},
    "seed": 1,
}


def _dominated(a: list[float], b: list[float]) -> bool:
    """Whether b dominates a (both minimized)."""
    return all(y <= x for x, y in zip(a, b)) and any(y < x for x, y in zip(a, b))


@pytest.fixture
def finished(sqlite_url):
    studies.create_study(open_storage(sqlite_url), _SPEC)
    assert run_worker(sqlite_url, study="mo", objective="objectives:trade_off") == 16
    return sqlite_url


def test_the_front_from_the_api_is_the_one_recomputed_from_the_trials(
    finished, live_service, make_api_token
):
    token = make_api_token(finished, "read")
    auth = {"Authorization": f"Bearer {token}"}
    trials = optuna.load_study(study_name="mo", storage=finished).get_trials()
    values = {t.number: t.values for t in trials if t.state.name == "COMPLETE"}
    expected = {
        n
        for n, v in values.items()
        if not any(_dominated(v, w) for m, w in values.items() if m != n)
    }
    front = httpx.get(f"{live_service}/studies/mo/pareto", headers=auth).json()
    assert {t["number"] for t in front["trials"]} == expected
    errors = [t["values"][0] for t in front["trials"]]
    assert errors == sorted(errors)  # best in the first objective first
    assert front["complete"] == 16 and front["hypervolume"] > 0
    worst = [max(v[i] for v in values.values()) for i in range(2)]
    assert front["reference_point"] == pytest.approx(worst)
    # The hypervolume is Optuna's over the front, from the same reference point.
    hv = optuna._hypervolume.compute_hypervolume(
        np.array([values[n] for n in expected]), np.array(worst)
    )
    assert front["hypervolume"] == pytest.approx(hv)
    assert Client(live_service, token=token).pareto("mo") == front
    status = httpx.get(f"{live_service}/studies/mo", headers=auth).json()
    assert status["pareto"] == {
        "objectives": ["error", "size"],
        "size": len(expected),
        "hypervolume": pytest.approx(hv),
        "reference_point": pytest.approx(worst),
    }
    best = httpx.get(f"{live_service}/studies/mo/best", headers=auth).json()
    assert best["number"] == front["trials"][0]["number"]  # the front's best first objective


def test_the_cli_prints_the_front_and_picks_a_point_within_limits(finished, capsys):
    assert main(["pareto", "mo", "--storage", finished]) == 0
    out = capsys.readouterr().out
    front = studies.pareto_front(open_storage(finished), "mo")
    assert f"pareto front of mo: {len(front.trials)} of 16 complete" in out
    for t in front.trials:
        assert f"#{t.number}" in out
    small = [t for t in front.trials if t.values[1] <= 0.5]
    assert small
    assert main(["pareto", "mo", "--storage", finished, "--pick", "size<=0.5"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"picked trial #{small[0].number} of mo: error ")
    assert "x" in out and "y" in out  # the config follows
    assert main(["status", "mo", "--storage", finished]) == 0
    assert "pareto front" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("pick", "message"),
    [("size<0.5", "must look like METRIC<=NUMBER"), ("size<=-1", "no trial of the front")],
)
def test_a_bad_pick_is_one_line(finished, capsys, pick, message):
    assert main(["pareto", "mo", "--storage", finished, "--pick", pick]) != 0
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if not line.startswith("reading ")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in err


def test_the_csv_has_a_column_per_objective(finished, capsys):
    assert main(["trials", "mo", "--storage", finished, "--csv", "-"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[0].split(",")
    assert header[header.index("prune_reason") + 1 : header.index("prune_reason") + 3] == [
        "value_error",
        "value_size",
    ]
    trials = optuna.load_study(study_name="mo", storage=finished).trials
    first = lines[1].split(",")
    at = header.index("value_error")
    assert [float(first[at]), float(first[at + 1])] == pytest.approx(trials[0].values)
