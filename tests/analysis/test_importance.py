"""Parameter importance beside the checklist's tiers: the library, the REST route and the CLI.

Studies here run real trials through Optuna's ask-and-tell on the real study database, with a
synthetic value (no training) that one parameter decides, so the answer is known.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from optuna.trial import TrialState

from hpsearch import studies
from hpsearch.errors import NotEnoughTrials
from hpsearch.analysis.importance import parameter_importance
from hpsearch.spaces import suggest_config
from hpsearch.db.storage import open_storage
from hpsearch.service import Settings, create_app

N_TRIALS = 60


def _lr_decides(config: dict[str, Any]) -> float:
    # Best at lr = 10^-2.5; every other parameter changes nothing.
    return 0.95 - 0.1 * (math.log10(config["optim.lr"]) + 2.5) ** 2


def _batch_size_decides(config: dict[str, Any]) -> float:
    return 0.5 + config["train.batch_size"] / 1000


def _run_study(
    url: str,
    name: str,
    value: Callable[[dict[str, Any]], float],
    *,
    trials: int = N_TRIALS,
    **spec: Any,
) -> list[dict[str, Any]]:
    storage = open_storage(url)
    base = {"name": name, "space": "demo", "task": {"epochs": 2}, "strategy": "random"}
    studies.create_study(storage, {**base, "budget": {"trials": trials}, "seed": 0, **spec})
    study, resolved = studies.open_study(storage, name)
    configs = []
    for _ in range(trials):
        trial = study.ask()
        config = suggest_config(trial, resolved.search_space, resolved.fixed)
        study.tell(trial, value(config))
        configs.append(config)
    return configs


def _row(report: Any, param: str) -> Any:
    return next(row for row in report.rows if row.param == param)


@pytest.mark.parametrize("evaluator", ["ped_anova", "fanova"])
def test_the_deciding_parameter_ranks_first_beside_its_tier(storage_url, evaluator):
    _run_study(storage_url, "imp", _lr_decides)
    report = parameter_importance(open_storage(storage_url), "imp", evaluator=evaluator)
    top = report.rows[0]
    assert top.param == "optim.lr" and top.rank == 1 and top.importance > 0.4
    assert top.impact == "high" and top.checklist == ["Learining Rate (LR)"]
    assert top.verdict == "agrees" and top.agrees is True
    assert report.trials_used == N_TRIALS and report.metric == "val_accuracy"
    assert report.seed == (0 if evaluator == "fanova" else None)
    ranked = [row.importance for row in report.rows if row.importance is not None]
    assert ranked == sorted(ranked, reverse=True) and math.isclose(sum(ranked), 1.0)
    again = parameter_importance(open_storage(storage_url), "imp", evaluator=evaluator)
    assert again == report  # seeded: the same study gives the same report


def test_a_low_tier_parameter_that_decides_matters_more_than_the_checklist_says(sqlite_url):
    _run_study(sqlite_url, "bs", _batch_size_decides)
    report = parameter_importance(open_storage(sqlite_url), "bs")
    top = report.rows[0]
    assert (top.param, top.impact, top.checklist) == (
        "train.batch_size",
        "low",
        ["Batch Size (BS)"],
    )
    assert top.verdict == "matters more than the checklist says" and top.agrees is False
    lr = _row(report, "optim.lr")  # high tier, but it changes nothing here
    assert lr.verdict == "matters less than the checklist says" and lr.agrees is False


def _lr_and_batch_size_decide(config: dict[str, Any]) -> float:
    return _lr_decides(config) + 0.04 * config["train.batch_size"] / 256


def test_a_big_study_is_rated_on_a_fixed_sample_that_ranks_as_the_whole_does(sqlite_url):
    _run_study(sqlite_url, "big", _lr_and_batch_size_decide, trials=400)
    storage = open_storage(sqlite_url)
    whole = parameter_importance(storage, "big")
    sample = parameter_importance(storage, "big", max_ped_anova_trials=150)
    assert whole.trials_used == 400 and "sample" not in whole.trials_note
    assert 100 <= sample.trials_used <= 200, sample.trials_used  # about 150 of 400
    assert f"a fixed sample of {sample.trials_used} of them" in sample.trials_note
    assert [r.param for r in sample.rows[:2]] == [r.param for r in whole.rows[:2]] == [
        "optim.lr",
        "train.batch_size",
    ]
    again = parameter_importance(storage, "big", max_ped_anova_trials=150)
    assert again == sample  # the same trials every time


@pytest.mark.parametrize("evaluator", ["ped_anova", "fanova"])
def test_conditional_parameters_are_listed_without_importance(sqlite_url, evaluator):
    configs = _run_study(sqlite_url, "cond", _lr_decides)
    with_ce = sum(1 for c in configs if c["loss.name"] == "ce")
    assert 0 < with_ce < N_TRIALS  # the study did sample both sides of the condition
    report = parameter_importance(open_storage(sqlite_url), "cond", evaluator=evaluator)
    smoothing = _row(report, "loss.label_smoothing")
    assert smoothing.importance is None and smoothing.rank is None
    assert smoothing.reason == f"conditional: present in {with_ce} of {N_TRIALS} trials"
    assert smoothing.verdict == "not ranked" and smoothing.present_in == with_ce
    assert smoothing.impact == "medium" and smoothing.checklist == ["Label smoothing"]
    rated = [row for row in report.rows if row.importance is not None]
    assert all(row.present_in == N_TRIALS for row in rated)
    assert math.isclose(sum(row.importance for row in rated), 1.0)
    assert {row.param for row in report.rows} == set(
        studies.load_spec(open_storage(sqlite_url), "cond").search_space.params
    )


def test_only_complete_trials_count_and_unsearched_parameters_say_why(sqlite_url):
    _run_study(sqlite_url, "mix", _lr_decides, fixed={"optim.name": "adamw"})
    storage = open_storage(sqlite_url)
    study, spec = studies.open_study(storage, "mix")
    for state in (TrialState.PRUNED, TrialState.FAIL, TrialState.PRUNED):
        trial = study.ask()
        suggest_config(trial, spec.search_space, spec.fixed)
        study.tell(trial, state=state)
    running = study.ask()
    suggest_config(running, spec.search_space, spec.fixed)

    report = parameter_importance(storage, "mix")
    assert report.trials_used == N_TRIALS
    assert "pruned 2" in report.trials_note and "failed 1" in report.trials_note
    assert "running 1" in report.trials_note
    assert report.rows[0].param == "optim.lr"
    pinned = _row(report, "optim.name")
    assert pinned.importance is None and pinned.reason == "fixed at 'adamw' by the study spec"
    momentum = _row(report, "optim.momentum")  # only with sgd, which is never chosen here
    assert momentum.importance is None and "condition never held" in momentum.reason


def test_too_few_trials_is_a_clear_error(sqlite_url):
    storage = open_storage(sqlite_url)
    studies.create_study(storage, {"name": "few", "space": "demo", "budget": {"trials": 5}})
    with pytest.raises(NotEnoughTrials, match="0 complete trial"):
        parameter_importance(storage, "few")
    study, spec = studies.open_study(storage, "few")
    for _ in range(3):
        trial = study.ask()
        suggest_config(trial, spec.search_space, spec.fixed)
        study.tell(trial, 0.5)
    with pytest.raises(NotEnoughTrials, match="same val_accuracy"):
        parameter_importance(storage, "few", evaluator="fanova")


@pytest.fixture
def api(sqlite_url, make_api_token):
    headers = {"Authorization": f"Bearer {make_api_token(sqlite_url, 'read')}"}
    with TestClient(create_app(Settings(storage=sqlite_url)), headers=headers) as client:
        yield client


def test_the_route_reports_importance_and_says_when_it_cannot(api, sqlite_url):
    _run_study(sqlite_url, "web", _lr_decides)
    for evaluator in ("ped_anova", "fanova"):
        answer = api.get("/studies/web/importance", params={"evaluator": evaluator})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["evaluator"] == evaluator and body["rows"][0]["param"] == "optim.lr"
        assert body["rows"][0]["impact"] == "high" and body["rows"][0]["verdict"] == "agrees"
        assert "complete trials only" in body["trials_note"] and body["verdict_rule"]
    assert api.get("/studies/web/importance").json()["evaluator"] == "ped_anova"

    studies.create_study(open_storage(sqlite_url), {"name": "empty", "space": "demo"})
    empty = api.get("/studies/empty/importance")
    assert empty.status_code == 409 and "at least 2" in empty.json()["detail"]
    missing = api.get("/studies/ghost/importance")
    assert missing.status_code == 404 and "ghost" in missing.json()["detail"]
    bad = api.get("/studies/web/importance", params={"evaluator": "shap"})
    assert bad.status_code == 422
    anonymous = api.get("/studies/web/importance", headers={"Authorization": ""})
    assert anonymous.status_code == 401


def _hpsearch(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hpsearch", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_cli_prints_the_table_from_the_database(sqlite_url):
    _run_study(sqlite_url, "cli", _lr_decides)
    out = _hpsearch("importance", "cli", "--storage", sqlite_url)
    assert out.returncode == 0, out.stderr
    lr_line = next(line for line in out.stdout.splitlines() if "optim.lr" in line)
    assert lr_line.split()[0] == "1" and "#" in lr_line
    assert "high" in lr_line and lr_line.endswith("agrees")
    smoothing = next(line for line in out.stdout.splitlines() if "loss.label_smoothing" in line)
    assert "conditional: present in" in smoothing
    as_json = _hpsearch(
        "importance", "cli", "--storage", sqlite_url, "--json", "--evaluator", "fanova"
    )
    assert json.loads(as_json.stdout)["evaluator"] == "fanova"
    storage = open_storage(sqlite_url)
    studies.create_study(storage, {"name": "none-yet", "space": "demo"})
    early = _hpsearch("importance", "none-yet", "--storage", sqlite_url)
    assert early.returncode == 1 and "at least 2" in early.stderr
    assert "Traceback" not in early.stderr


def test_cli_asks_a_running_service(sqlite_url, free_port, make_api_token):
    _run_study(sqlite_url, "served", _lr_decides)
    token = make_api_token(sqlite_url, "read")
    server = subprocess.Popen(
        [sys.executable, "-m", "hpsearch", "serve", "--storage", sqlite_url]
        + ["--port", str(free_port), "--no-dashboard"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{free_port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/healthz", timeout=5).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "no service"
                time.sleep(0.3)
        out = _hpsearch(
            "importance", "served", "--server", url, "--json", env={"HPSEARCH_API_TOKEN": token}
        )
        assert out.returncode == 0, out.stderr
        report = json.loads(out.stdout)
        assert report["study"] == "served" and report["rows"][0]["param"] == "optim.lr"
        refused = _hpsearch("importance", "served", "--server", url, env={"HPSEARCH_API_TOKEN": ""})
        assert refused.returncode == 1 and "token" in refused.stderr
    finally:
        server.terminate()
        server.wait(timeout=20)
