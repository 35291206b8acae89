"""Prior misfit, told to the user: the study status (REST, CLI), the report and the dashboard note.

Studies here run on a small space of the user's own with the impact strategy: a learning rate
the checklist rates high and a momentum it rates low. The synthetic objective (no training)
depends almost only on the momentum, so the evidence disagrees with the checklist; a second one
depends on the learning rate, so it agrees.

Most studies run configs queued spread over the space (the study's sampler runs them), so the
evidence is the objective's and not the sampler's: with the impact sampler's own draws, the
knob it holds at the incumbent's value in the later, better trials can look important on 25
trials whatever the objective (see test_the_impact_samplers_own_trials_show_the_misfit).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import optuna
import optuna_dashboard
import pytest
from conftest import serve_app

from hpsearch import cli, studies
from hpsearch.analysis.artifacts import open_artifact_store, upload_predictions
from hpsearch.client import Client
from hpsearch.analysis.misfit import (
    NOTE_END,
    NOTE_START,
    PriorCheck,
    check_prior,
    note_due,
    replace_section,
    study_prior_check,
    update_misfit_note,
)
from hpsearch.spaces import SearchSpace, suggest_config
from hpsearch.db.storage import open_storage
from hpsearch.strategy import make_sampler, prior_misfit
from hpsearch.analysis.predictions import ValPredictions
from hpsearch.worker import run_worker
from hpsearch.service import Settings, create_app

pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat")

TRIALS = 25
SPACE = {
    "name": "own",
    "task": "custom",
    "params": {
        "my.lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True, "default": 1e-3,
                  "impact": "high", "checklist": "Learning Rate (LR)"},
        "my.momentum": {"type": "float", "low": 0.0, "high": 0.99, "default": 0.9,
                        "impact": "low", "checklist": "Momentum"},
    },
}  # fmt: skip


def momentum_decides(config: dict[str, Any], report: Any = None) -> float:
    """A loss best at momentum 0.2; the learning rate barely matters (a low-tier knob decides)."""
    return 10 * (config["my.momentum"] - 0.2) ** 2 - 0.01 * math.log10(config["my.lr"])


def lr_decides(config: dict[str, Any], report: Any = None) -> float:
    """A loss best at lr 1e-2; the momentum barely matters (the checklist is right)."""
    return (math.log10(config["my.lr"]) + 2) ** 2 + 0.001 * config["my.momentum"]


def _create(url: str, name: str, trials: int = TRIALS, **spec: Any) -> None:
    base = {"name": name, "space": SPACE, "metric": "val_loss", "seed": 0}
    studies.create_study(open_storage(url), {**base, "budget": {"trials": trials}, **spec})


def _predictions(seed: int) -> ValPredictions:
    rng = np.random.default_rng(seed)
    y_true = rng.normal(size=40)
    y_pred = y_true + rng.normal(scale=0.3, size=40)
    loss = (y_true - y_pred) ** 2
    return ValPredictions(
        kind="regression",
        family="custom",
        y_true=y_true,
        y_pred=y_pred,
        loss=loss,
        worst=ValPredictions.worst_indices(loss, 4),
    )


def _spread_configs(url: str, name: str, n: int = TRIALS) -> None:
    """Queue ``n`` configs spread over the whole space: the evidence then says what the
    objective depends on, whatever the sampler would have drawn."""
    rng = np.random.default_rng(1)
    configs = [
        {"my.lr": float(10 ** rng.uniform(-4, -1)), "my.momentum": float(rng.uniform(0, 0.99))}
        for _ in range(n)
    ]
    assert studies.enqueue_configs(open_storage(url), name, configs) == n


def _run_asked(
    url: str,
    name: str,
    value: Callable[[dict[str, Any]], float],
    n: int,
    *,
    keep_predictions: bool = False,
) -> None:
    """``n`` trials of the study's own sampler by ask and tell; with ``keep_predictions`` each
    keeps (made-up) validation predictions, as the built-in trainer's do, for the report."""
    storage = open_storage(url)
    store = open_artifact_store(storage_url=url, create=True)
    study, spec = studies.open_study(storage, name)
    for i in range(n):
        trial = study.ask()
        config = suggest_config(trial, spec.search_space, spec.fixed)
        if keep_predictions:
            upload_predictions(storage, store, trial._trial_id, _predictions(i))
        study.tell(trial, value(config))


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One SQLite study database with a disagreeing, an agreeing, a young and a TPE study."""
    url = f"sqlite:///{tmp_path_factory.mktemp('misfit')}/study.db"
    _create(url, "low-knob")
    _spread_configs(url, "low-knob")
    _run_asked(url, "low-knob", momentum_decides, TRIALS, keep_predictions=True)
    _create(url, "lr-knob", trials=15)  # run by a worker: the real path that writes notes
    _spread_configs(url, "lr-knob", 15)
    assert run_worker(url, study="lr-knob", objective="test_prior_misfit:lr_decides") == 15
    _create(url, "young")
    _run_asked(url, "young", momentum_decides, 5)
    _create(url, "random-study", strategy="random")
    _spread_configs(url, "random-study", 15)
    _run_asked(url, "random-study", momentum_decides, 15)
    yield url


def test_the_impact_samplers_own_trials_show_the_misfit():
    """25 trials the impact sampler draws itself (seeded and named, so always the same ones)."""
    space = SearchSpace.model_validate(SPACE)
    sampler = make_sampler("impact", space, seed=0)
    study = optuna.create_study(study_name="sampled", sampler=sampler)  # in memory
    study.optimize(lambda trial: momentum_decides(suggest_config(trial, space)), n_trials=TRIALS)
    [misfit] = prior_misfit(study, space)
    assert misfit.evidence_top == "my.momentum" and misfit.checklist_top == "my.lr"
    assert "my.momentum (low impact)" in misfit.message


def test_the_evidence_names_the_low_tier_knob_that_decides(db):
    storage = open_storage(db)
    study = optuna.load_study(study_name="low-knob", storage=storage)
    space = studies.load_spec(storage, "low-knob").search_space
    [misfit] = prior_misfit(study, space)
    assert "my.momentum (low impact)" in misfit.message and "my.lr (high impact)" in misfit.message
    check = check_prior(storage, study._study_id, name="low-knob", space=space)
    assert check.verdict == "misfit" and check.finished == TRIALS == check.trials_used
    assert check.misfit is not None and check.misfit.evidence_top == "my.momentum"
    assert [r.param for r in check.ranking] == ["my.momentum", "my.lr"]
    assert check.ranking[0].importance > check.ranking[1].importance


def test_the_status_tells_the_misfit_over_rest_with_numbers(db, make_api_token, free_port):
    token = make_api_token(db, "read")
    with serve_app(create_app(Settings(storage=db)), free_port) as base:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as http:
            status = http.get("/studies/low-knob").json()
            agreeing = http.get("/studies/lr-knob").json()
            young = http.get("/studies/young").json()
            other = http.get("/studies/random-study").json()
            listing = http.get("/studies").json()
        from_client = Client(base, token=token).study("low-knob")
    misfit = status["prior_misfit"]
    assert misfit["evidence_top"] == "my.momentum" and misfit["checklist_top"] == "my.lr"
    assert "my.momentum (low impact)" in misfit["message"]
    assert f"{TRIALS} finished trials" in misfit["message"]
    ranking = {r["param"]: r for r in misfit["ranking"]}
    assert ranking["my.momentum"]["tier"] == "low" and ranking["my.lr"]["tier"] == "high"
    assert ranking["my.momentum"]["importance"] > 0.5
    assert math.isclose(sum(r["importance"] for r in misfit["ranking"]), 1.0, abs_tol=1e-3)
    assert misfit["trials_used"] == TRIALS
    assert from_client["prior_misfit"] == misfit  # the Python client passes it through
    # Evidence that agrees, too few trials, a strategy without the checklist: no misfit.
    assert agreeing["prior_misfit"] is None
    assert young["prior_misfit"] is None
    assert other["prior_misfit"] is None
    assert all(s["prior_misfit"] is None for s in listing["data"])


def test_hpsearch_status_prints_the_misfit_line(db, capsys):
    assert cli.main(["status", "low-knob", "--storage", db]) == 0
    out = capsys.readouterr().out
    [line] = [line for line in out.splitlines() if line.startswith("prior misfit")]
    assert "my.momentum (low impact)" in line
    assert re.search(r"\(importance \d\.\d\d vs \d\.\d\d\)$", line), line
    assert cli.main(["status", "lr-knob", "--storage", db]) == 0
    assert "prior misfit" not in capsys.readouterr().out


def test_the_report_has_a_prior_misfit_section(db, tmp_path, capsys, make_api_token, free_port):
    out = tmp_path / "report"
    args = ["report", "low-knob", "--storage", db, "--out", str(out), "--format", "md"]
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert "prior misfit: the checklist says my.lr" in printed
    document = (out / "report.md").read_text()
    section = document[document.index("## Prior misfit") :]
    assert "my.momentum (low impact)" in section
    assert "| knob | importance | checklist tier |" in section
    assert "| my.momentum | 0." in section and "| low |" in section

    token = make_api_token(db, "read")
    with serve_app(create_app(Settings(storage=db)), free_port) as base:
        headers = {"Authorization": f"Bearer {token}"}
        report = httpx.get(f"{base}/studies/low-knob/report", headers=headers).json()
    assert report["prior"]["verdict"] == "misfit"
    top = report["prior"]["ranking"][0]
    assert top["param"] == "my.momentum" and top["tier"] == "low" and top["importance"] > 0.5


def test_the_report_says_when_the_evidence_agrees_or_is_too_young(db):
    storage = open_storage(db)
    agrees = study_prior_check(storage, "lr-knob")
    assert agrees is not None and agrees.verdict == "agrees" and agrees.misfit is None
    assert agrees.line.startswith("the evidence agrees with the checklist: on 15 finished")
    young = study_prior_check(storage, "young")
    assert young is not None and young.verdict == "too_few"
    assert "5 of the 15" in young.line
    assert (
        study_prior_check(storage, "random-study") is None
    )  # random search does not use the checklist


def test_a_worker_writes_the_misfit_into_the_dashboard_note_and_keeps_the_users_text(
    sqlite_url, free_port
):
    from hpsearch.service.dashboard import start_dashboard

    _create(sqlite_url, "noted")
    _spread_configs(sqlite_url, "noted")
    storage = open_storage(sqlite_url)
    study = optuna.load_study(study_name="noted", storage=storage)
    optuna_dashboard.save_note(study, "My own notes: try a bigger batch next.")

    ran = run_worker(sqlite_url, study="noted", objective="test_prior_misfit:momentum_decides")

    assert ran == TRIALS
    note = optuna_dashboard.get_note(study)
    assert note.startswith("My own notes: try a bigger batch next.")
    assert note.count(NOTE_START) == 1 and note.rstrip().endswith(NOTE_END)
    section = note[note.index(NOTE_START) :]
    assert "my.momentum (low impact)" in section and "| my.momentum | 0." in section
    assert f"{TRIALS} finished trials" in section  # rewritten at 25 trials, after 15
    # The worker kept its check with the study: reads use it and compute nothing.
    from hpsearch.analysis.misfit import STORED_ATTR

    stored = storage.get_study_system_attrs(study._study_id)[STORED_ATTR]
    assert stored["verdict"] == "misfit" and stored["trials_used"] == TRIALS
    # The note matches the status, and an unchanged check writes nothing.
    status = studies.study_status(storage, "noted")
    assert status.prior_misfit is not None
    assert status.prior_misfit.message[1:] in section  # (capitalised there)
    check = study_prior_check(storage, "noted")
    assert check is not None
    version = storage.get_study_system_attrs(study._study_id)["dashboard:note_ver"]
    assert update_misfit_note(study, check) is False
    assert storage.get_study_system_attrs(study._study_id)["dashboard:note_ver"] == version
    # The dashboard serves it as the study's note.
    dashboard = start_dashboard(sqlite_url, port=free_port, anonymous_reads=True)
    try:
        url = f"http://127.0.0.1:{free_port}/api/studies/{study._study_id}?after=0"
        served = httpx.get(url).json()["note"]
    finally:
        dashboard.stop()
    assert served == {"version": version, "body": note}


def test_a_worker_writes_no_note_while_the_evidence_agrees(db):
    storage = open_storage(db)
    check = study_prior_check(storage, "lr-knob")  # its worker checked at 15 trials
    assert check is not None and check.verdict == "agrees"
    study = optuna.load_study(study_name="lr-knob", storage=storage)
    assert optuna_dashboard.get_note(study) == ""


def test_the_note_section_is_replaced_in_place_and_the_checkpoints_are_sparse():
    study = optuna.create_study()  # in memory: the note lives in its system attributes
    misfit = PriorCheck(verdict="misfit", line="the checklist says A; B ranks first", finished=15)
    agrees = PriorCheck(
        verdict="agrees", line="the evidence agrees with the checklist", finished=25
    )
    assert update_misfit_note(study, agrees) is False  # agreement alone writes no note
    assert optuna_dashboard.get_note(study) == ""
    optuna_dashboard.save_note(study, "mine above")
    assert update_misfit_note(study, misfit) is True
    optuna_dashboard.save_note(study, optuna_dashboard.get_note(study) + "mine below\n")
    assert update_misfit_note(study, agrees) is True  # replaces the misfit written before
    note = optuna_dashboard.get_note(study)
    assert note.startswith("mine above\n\n" + NOTE_START) and note.endswith(
        NOTE_END + "\nmine below\n"
    )
    assert "The evidence agrees with the checklist" in note and "B ranks first" not in note
    assert replace_section(f"x\n{NOTE_START}\nhalf a section", "NEW") == "x\nNEW"

    marks = [note_due(n, 0) for n in (14, 15, 24, 25, 49, 50, 99, 100, 250)]
    assert marks == [None, 15, 15, 25, 45, 45, 95, 100, 250]
    assert note_due(26, 25) is None and note_due(35, 25) == 35 and note_due(149, 100) is None
