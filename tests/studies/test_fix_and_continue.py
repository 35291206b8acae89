"""A mistake in a study costs one trial, says so plainly, and can be fixed in place (issue 16 §1).

A wrong ``task.target`` (or a missing dataset, an unreadable file, an import error in your own
function) recurs on every trial: the first worker to meet it fails the study, exits non-zero
with the reason in one line, and the study says ``failed`` everywhere. ``PATCH /studies/NAME``
(``hpsearch extend``, ``Client.update_study``) then corrects it and the next worker continues.
Errors of one config (NaN) and transient ones (CUDA out of memory) keep failing one trial only.
"""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from hpsearch import studies
from hpsearch.cli import main
from hpsearch.client import Client
from hpsearch.errors import StudyFailed
from hpsearch.db.storage import open_storage
from hpsearch.worker import run_worker

TESTS = Path(__file__).parents[1]  # the objectives modules beside conftest.py


def _table(path: Path, rows: int = 80) -> Path:
    """A small classification table whose label column is `label`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["x1", "x2", "label"])
        for _ in range(rows):
            a, b = rng.normal(size=2)
            w.writerow([f"{a:.3f}", f"{b:.3f}", "yes" if a + b > 0 else "no"])
    return path


def _spec(name: str, dataset: Path | str, target: str | None, trials: int = 3) -> dict:
    return {
        "name": name,
        "space": "tabular",
        "task": {"dataset": str(dataset), "target": target, "epochs": 1},
        "budget": {"trials": trials},
        "pruner": "none",
        "seed": 0,
    }


def _trials(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)


def _worker(url: str, data: Path, *args: str) -> int:
    """``hpsearch worker`` in this process (the trainer is imported once per test session)."""
    return main(["worker", "--storage", url, "--gpus", "none", "--data-root", str(data), *args])


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("hpsearch worker: error:")]


# -- stop at the first occurrence --------------------------------------------------------------


def test_a_wrong_target_fails_the_study_at_its_first_trial_and_the_worker_exits_1(
    sqlite_url, tmp_path
):
    data = tmp_path / "data"
    table = _table(data / "table.csv")
    studies.create_study(open_storage(sqlite_url), _spec("w", table, "lable", trials=5))
    worker = subprocess.run(
        [sys.executable, "-m", "hpsearch", "worker", "--storage", sqlite_url, "--study", "w",
         "--gpus", "none", "--data-root", str(data)],
        check=False, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert worker.returncode == 1, worker.stdout + worker.stderr
    assert "Traceback" not in worker.stderr
    (line,) = _error_lines(worker.stderr)
    assert "study 'w' failed at trial 0: TaskError: task.target 'lable'" in line
    assert "did you mean 'label'?" in line and "hpsearch extend w" in line
    # One trial, not max_failures + 1 = 11: the budget is intact.
    assert [t.state for t in _trials(sqlite_url, "w")] == [TrialState.FAIL]


def test_a_failed_study_says_so_in_status_the_listing_and_the_dashboard(
    storage_url, tmp_path, capsys
):
    data = tmp_path / "data"
    table = _table(data / "table.csv")
    storage = open_storage(storage_url)
    studies.create_study(storage, _spec("w", table, "lable"))
    assert _worker(storage_url, data, "--study", "w") == 1
    status = studies.study_status(storage, "w")
    assert status.state == "failed" and status.done
    assert status.failure is not None and status.failure.trial == 0
    assert status.failure.reason.startswith("TaskError: task.target 'lable' is not a column")
    assert (
        status.done_reason.startswith("failed at trial 0: TaskError")
        and "extend" in status.done_reason
    )
    assert [s.name for s in studies.list_studies(storage, state="failed")] == ["w"]
    # optuna-dashboard lists a study's user attributes: the reason is there too.
    attrs = optuna.load_study(study_name="w", storage=storage_url).user_attrs
    assert attrs[studies.FAILED_ATTR]["reason"] == status.failure.reason
    capsys.readouterr()
    assert main(["status", "w", "--storage", storage_url]) == 0
    out = capsys.readouterr().out
    assert "failed" in out and "did you mean 'label'?" in out
    # Another worker on the failed study runs nothing and says why, non-zero.
    assert _worker(storage_url, data, "--study", "w") == 1
    assert "failed at trial 0" in _error_lines(capsys.readouterr().err)[0]
    assert len(_trials(storage_url, "w")) == 1


def test_a_worker_serving_every_study_skips_the_failed_one_and_exits_0(sqlite_url, tmp_path):
    data = tmp_path / "data"
    table = _table(data / "table.csv")
    storage = open_storage(sqlite_url)
    studies.create_study(storage, _spec("broken", table, "lable"))
    studies.create_study(storage, _spec("fine", table, "label", trials=2))
    assert _worker(sqlite_url, data) == 0  # it served a study that did not fail
    assert [t.state for t in _trials(sqlite_url, "broken")] == [TrialState.FAIL]
    assert studies.study_status(storage, "broken").state == "failed"
    assert studies.study_status(storage, "fine").state == "done"


def test_an_import_error_in_your_function_fails_the_study_at_once(sqlite_url):
    studies.create_study(
        open_storage(sqlite_url), {"name": "f", "space": "demo", "budget": {"trials": 5}}
    )
    with pytest.raises(StudyFailed, match="ModuleNotFoundError: No module named"):
        run_worker(sqlite_url, study="f", objective="fix_objectives:needs_a_missing_module")
    (trial,) = _trials(sqlite_url, "f")
    assert trial.state == TrialState.FAIL
    # The way out is to fix the function, not the task.
    reason = studies.study_status(open_storage(sqlite_url), "f").done_reason
    assert "fix your function's imports" in reason and "--dataset" not in reason


def test_a_space_that_cannot_give_a_config_fails_the_study_at_once(sqlite_url):
    storage = open_storage(sqlite_url)
    studies.create_study(storage, {"name": "s", "space": "demo", "budget": {"trials": 5}})
    # A pinned value out of the space's bounds, as a spec written before a check would hold.
    study_id = storage.get_study_id_from_name("s")
    spec = storage.get_study_user_attrs(study_id)[studies.SPEC_ATTR]
    storage.set_study_user_attr(study_id, studies.SPEC_ATTR, {**spec, "fixed": {"optim.lr": 5.0}})
    with pytest.raises(StudyFailed, match="SpaceError"):
        run_worker(sqlite_url, study="s", objective="instant_objectives:instant")
    assert len(_trials(sqlite_url, "s")) == 1


def test_nan_and_cuda_out_of_memory_still_fail_or_retry_one_trial_only(sqlite_url):
    storage = open_storage(sqlite_url)
    studies.create_study(
        storage, {"name": "nan", "space": "demo", "budget": {"trials": 2}, "pruner": "none"}
    )
    assert run_worker(sqlite_url, study="nan", objective="fix_objectives:diverges_first") == 3
    states = [t.state for t in _trials(sqlite_url, "nan")]
    assert states == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert studies.study_status(storage, "nan").state == "done"  # not failed
    studies.create_study(
        storage,
        {
            "name": "oom",
            "space": "demo",
            "budget": {"trials": 1},
            "fixed": {"train.batch_size": 64},
        },
    )
    assert run_worker(sqlite_url, study="oom", objective="objectives:needs_small_batches") == 1
    (trial,) = _trials(sqlite_url, "oom")
    assert trial.state == TrialState.COMPLETE and len(trial.user_attrs["oom_retries"]) == 2
    assert studies.study_status(storage, "oom").failure is None


# -- check early -------------------------------------------------------------------------------


def _headers(url: str, make_api_token, scope: str = "write") -> dict[str, str]:
    return {"Authorization": f"Bearer {make_api_token(url, scope)}"}


def test_submit_refuses_bundled_name_typos_and_targets_in_one_line(
    live_service, sqlite_url, make_api_token, tmp_path, capsys, monkeypatch
):
    headers = _headers(sqlite_url, make_api_token)
    cases = [
        ({"dataset": "digts"}, "did you mean 'digits'?"),
        ({"dataset": "digits", "target": "label"}, "has its own label: leave task.target out"),
        ({"dataset": "diabetes"}, "space: tabular_regression"),
        ({"dataset": "tones"}, "bundled for audio_classification"),
    ]
    for i, (task, expected) in enumerate(cases):
        spec = {"name": f"s{i}", "space": "tabular", "task": task, "budget": {"trials": 1}}
        r = httpx.post(f"{live_service}/studies", json=spec, headers=headers)
        assert r.status_code == 422, (task, r.text)
        detail = r.json()["detail"]
        assert isinstance(detail, str) and "\n" not in detail and expected in detail, detail
    # `hpsearch submit` checks a local path, and a local file's columns, before sending.
    monkeypatch.setenv("HPSEARCH_API_TOKEN", headers["Authorization"].split()[1])
    table = _table(tmp_path / "table.csv")
    spec_file = tmp_path / "study.yaml"
    for task, expected in [
        ({"dataset": str(tmp_path / "tabel.csv")}, "does not exist on this machine"),
        ({"dataset": str(table), "target": "lable"}, "did you mean 'label'?"),
    ]:
        spec_file.write_text(f"space: tabular\ntask: {task}\nbudget: {{trials: 1}}\n")
        assert main(["submit", str(spec_file), "--server", live_service]) == 1
        err = capsys.readouterr().err
        (line,) = [ln for ln in err.splitlines() if "error:" in ln]
        assert expected in line and "Traceback" not in err
    # Data that exists only on the workers' machines is sent unchecked with --remote-data.
    spec_file.write_text("name: remote\nspace: tabular\ntask: {dataset: /data/t.csv}\n")
    assert main(["submit", str(spec_file), "--server", live_service, "--remote-data"]) == 0
    assert capsys.readouterr().out.strip() == "remote"


# -- fix and continue --------------------------------------------------------------------------


def test_patch_fixes_the_target_and_a_worker_then_completes_the_study(
    live_service, sqlite_url, make_api_token, tmp_path, capsys, monkeypatch
):
    data = tmp_path / "data"
    table = _table(data / "table.csv")
    token = make_api_token(sqlite_url, "write")
    with Client(live_service, token=token) as client:
        client.create_study(_spec("w", table, "lable"))
        assert _worker(sqlite_url, data, "--study", "w") == 1
        assert client.study("w")["state"] == "failed"
        status = client.update_study(
            "w", {"task": {"target": "label"}, "budget": {"trials": 2, "max_failures": 3}}
        )
        assert status["state"] == "open" and status["failure"] is None
        (change,) = status["history"]
        assert change["changes"] == {
            "budget.trials": [3, 2],
            "budget.max_failures": [10, 3],
            "task.target": ["lable", "label"],
        }
        assert change["cleared_failure"].startswith("TaskError: task.target 'lable'")
        assert change["by"].startswith("test-write-") and change["at"]
        assert client.spec("w")["task"]["target"] == "label"
        assert _worker(sqlite_url, data, "--study", "w") == 0
        status = client.study("w")
        assert status["state"] == "done" and status["counts"]["complete"] == 2
        # A finished study takes more trials: `hpsearch extend`, here +2 on its budget.
        monkeypatch.setenv("HPSEARCH_API_TOKEN", token)
        capsys.readouterr()
        assert main(["extend", "w", "--trials", "+2", "--server", live_service]) == 0
        out = capsys.readouterr().out
        assert "budget.trials 2 -> 4" in out and "it is open" in out
        status = client.study("w")
        assert status["budget_trials"] == 4 and status["state"] == "open"
        assert len(status["history"]) == 2


def test_a_bad_change_answers_422_in_one_line_and_changes_nothing(
    live_service, sqlite_url, make_api_token
):
    headers = _headers(sqlite_url, make_api_token)
    spec = _spec("w", "digits", None)
    assert httpx.post(f"{live_service}/studies", json=spec, headers=headers).status_code == 201
    before = httpx.get(f"{live_service}/studies/w/spec", headers=headers).json()
    cases = [
        ({"budget": {"trials": 0}}, "budget.trials"),
        ({"budget": {"trails": 9}}, "did you mean 'trials'?"),
        ({"metric": "val_loss"}, "submit a new study"),
        ({"space": "demo"}, "submit a new study"),
        ({"task": {"epochs": 5}}, "`task.epochs` of study 'w' cannot be changed"),
        ({"task": {"dataset": "digts"}}, "did you mean 'digits'?"),
        ({"task": {"target": "label"}}, "leave task.target out"),
        ({"pruner": "median"}, "PUT /studies/w/pruner"),
        ({}, "give the study's changes as a mapping"),
        ({"task": {"dataset": "x" * 100_000}}, "task.dataset"),  # bounded: kept in the history
    ]
    for body, expected in cases:
        r = httpx.patch(f"{live_service}/studies/w", json=body, headers=headers)
        assert r.status_code == 422, (body, r.text)
        detail = r.json()["detail"]
        assert isinstance(detail, str) and "\n" not in detail and expected in detail, detail
    assert httpx.get(f"{live_service}/studies/w/spec", headers=headers).json() == before
    assert httpx.get(f"{live_service}/studies/w", headers=headers).json()["history"] == []
    missing = httpx.patch(f"{live_service}/studies/ghost", json={"budget": {"trials": 2}},
                          headers=headers)  # fmt: skip
    assert missing.status_code == 404


def test_a_change_needs_a_write_token(live_service, sqlite_url, make_api_token):
    headers = _headers(sqlite_url, make_api_token)
    httpx.post(f"{live_service}/studies", json=_spec("w", "digits", None), headers=headers)
    change = {"budget": {"trials": 9}}
    assert httpx.patch(f"{live_service}/studies/w", json=change).status_code == 401
    read = _headers(sqlite_url, make_api_token, "read")
    assert httpx.patch(f"{live_service}/studies/w", json=change, headers=read).status_code == 403
    status = httpx.get(f"{live_service}/studies/w", headers=read).json()
    assert status["budget_trials"] == 3 and status["history"] == []


def test_resume_continues_a_failed_study_unchanged_and_records_it(sqlite_url, tmp_path):
    data = tmp_path / "data"
    storage = open_storage(sqlite_url)
    studies.create_study(storage, _spec("w", data / "late.csv", None, trials=1))
    data.mkdir()
    assert _worker(sqlite_url, data, "--study", "w") == 1  # the file is not there yet
    assert "does not exist" in studies.study_status(storage, "w").failure.reason
    _table(data / "late.csv")  # the data arrives on the worker's machine
    status = studies.resume_study(storage, "w")
    assert status.state == "open" and status.history[0].cleared_failure
    assert status.history[0].changes == {}
    assert _worker(sqlite_url, data, "--study", "w") == 0
    assert studies.study_status(storage, "w").state == "done"


def test_a_waiting_worker_picks_up_the_fix_without_a_restart(sqlite_url, tmp_path):
    data = tmp_path / "data"
    table = _table(data / "table.csv")
    storage = open_storage(sqlite_url)
    studies.create_study(storage, _spec("w", table, "lable", trials=2))
    worker = subprocess.Popen(
        [sys.executable, "-m", "hpsearch", "worker", "--storage", sqlite_url, "--wait",
         "--gpus", "none", "--data-root", str(data)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while studies.study_status(storage, "w").state != "failed":
            assert worker.poll() is None and time.monotonic() < deadline, "the study never failed"
            time.sleep(0.2)
        studies.patch_study(storage, "w", {"task": {"target": "label"}})
        while studies.study_status(storage, "w").state != "done":
            assert worker.poll() is None and time.monotonic() < deadline, "the fix was not used"
            time.sleep(0.2)
        worker.send_signal(signal.SIGTERM)
        out, _ = worker.communicate(timeout=60)
    finally:
        worker.kill()
    assert worker.returncode == 0, out
    states = [t.state for t in _trials(sqlite_url, "w")]
    assert states == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE], out


def test_a_worker_with_its_own_function_never_fails_another_teams_study(sqlite_url):
    # Serving every open study, a worker started with --objective may run its function on a
    # study of the built-in trainer; its import error fails its own trials there, not the study.
    studies.create_study(
        open_storage(sqlite_url), {"name": "theirs", "space": "demo", "budget": {"trials": 2}}
    )
    run_worker(sqlite_url, objective="fix_objectives:needs_a_missing_module", max_trials=2)
    status = studies.study_status(open_storage(sqlite_url), "theirs")
    assert status.state != "failed" and status.failure is None, status.failure
    assert [t.state for t in _trials(sqlite_url, "theirs")] == [TrialState.FAIL] * 2


def test_extend_that_changes_nothing_says_so(sqlite_url, capsys):
    studies.create_study(open_storage(sqlite_url), _spec("e", "digits", None, trials=3))
    assert main(["extend", "e", "--trials", "+1", "--storage", sqlite_url]) == 0
    assert "budget.trials 3 -> 4" in capsys.readouterr().out
    assert main(["extend", "e", "--trials", "4", "--storage", sqlite_url]) == 0
    out = capsys.readouterr().out
    assert "nothing changed" in out and "3 -> 4" not in out


def test_extend_checks_a_changed_target_against_the_local_dataset_like_submit(
    sqlite_url, tmp_path, capsys
):
    table = _table(tmp_path / "data" / "table.csv")
    studies.create_study(open_storage(sqlite_url), _spec("mine", table, "label"))
    capsys.readouterr()
    # --target alone: the study's own dataset is read here, as `submit` reads a new spec's.
    assert main(["extend", "mine", "--target", "lbl", "--storage", sqlite_url]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "task.target 'lbl' is not a column" in line and "did you mean 'label'?" in line
    assert studies.load_spec(open_storage(sqlite_url), "mine").task.target == "label"
    assert studies.study_status(open_storage(sqlite_url), "mine").history == []
    # Data that is on the workers' machines only: --remote-data skips the check, as for submit.
    assert main(
        ["extend", "mine", "--target", "lbl", "--remote-data", "--storage", sqlite_url]
    ) == 0  # fmt: skip
    assert studies.load_spec(open_storage(sqlite_url), "mine").task.target == "lbl"
    # The hint names the --data-root a worker needs for the study's local dataset.
    out = capsys.readouterr().out
    assert f"hpsearch worker --study mine --data-root {table.parent.absolute()}`" in out
    assert main(["resume", "mine", "--storage", sqlite_url]) == 0  # and so does resume's
    assert f"--data-root {table.parent.absolute()}`" in capsys.readouterr().out


def test_a_worker_without_the_data_root_leaves_the_study_open_for_one_that_has_it(
    sqlite_url, tmp_path, monkeypatch, capsys
):
    monkeypatch.delenv("HPSEARCH_DATA_ROOTS", raising=False)
    data = tmp_path / "data"
    table = _table(data / "table.csv", rows=40)
    storage = open_storage(sqlite_url)
    studies.create_study(storage, _spec("w", table, "label", trials=2))
    capsys.readouterr()
    # This worker's mistake (no --data-root): it exits 1 in one line saying how to restart it.
    assert main(["worker", "--storage", sqlite_url, "--gpus", "none", "--study", "w"]) == 1
    (line,) = _error_lines(capsys.readouterr().err)
    assert "study 'w' cannot run on this worker: DataOutsideRoots:" in line
    assert f"restart this worker with --data-root {data.absolute()}" in line
    assert "extend" not in line and "failed at trial" not in line
    status = studies.study_status(storage, "w")
    assert status.state == "open" and status.failure is None
    # Serving every study, it skips this one after one refusal and exits 1 too.
    assert main(["worker", "--storage", sqlite_url, "--gpus", "none"]) == 1
    assert "cannot run on this worker" in _error_lines(capsys.readouterr().err)[0]
    assert studies.study_status(storage, "w").state == "open"
    # A worker with the root runs the refused trials again and finishes the study.
    assert _worker(sqlite_url, data, "--study", "w") == 0
    status = studies.study_status(storage, "w")
    assert status.state == "done" and status.counts["complete"] == 2
    assert status.failure is None
