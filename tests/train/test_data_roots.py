"""Workers read only their data roots; nothing a file holds comes back in an error.

A write token names paths in a spec, a read token reads every trial's failure reason: so a
worker refuses paths outside the roots it was given (symlinks followed), the service refuses
the paths it can tell are wrong at submit, and messages about a file never quote it.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from hpsearch import studies
from hpsearch.data_roots import DataRoots, check_spec_paths, reading_under
from hpsearch.errors import (
    DataOutsideRoots,
    SpecError,
    StudyFailed,
    UsageError,
    WorkerCannotServe,
)
from hpsearch.db.storage import open_storage
from hpsearch.families import TaskSpec
from hpsearch.worker import run_worker

SECRET = "root:*:20228:0:99999:7:::"  # what /etc/shadow's first line looks like


def _secret_csv(path: Path) -> Path:
    """A file whose header and values are secrets: nothing of it may reach an error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{SECRET},hidden_column\nsecret-value-1,secret-value-2\n")
    return path


def _table_csv(path: Path, rows: int = 80) -> Path:
    """A small classification table: two numeric features, the label in `target`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["private_feature_a", "private_feature_b", "target"])
        for i in range(rows):
            a, b = rng.normal(size=2)
            w.writerow([f"{a:.3f}", f"{b:.3f}", "yes" if a + b > 0 else "no"])
    return path


def _study(url: str, name: str, **task) -> None:
    studies.create_study(
        open_storage(url),
        {
            "name": name,
            "space": "tabular",
            "task": {"epochs": 1, **task},
            "budget": {"trials": 1},
            "pruner": "none",
            "seed": 0,
        },
    )


def _only_trial(url: str, name: str) -> optuna.trial.FrozenTrial:
    (trial,) = optuna.load_study(study_name=name, storage=url).trials
    return trial


def _refused_trial(url: str, name: str) -> optuna.trial.FrozenTrial:
    """The trial a worker's data roots refused: the study's first, failed and queued again for
    a worker that may read the file (the refusal is that worker's, not the study's)."""
    refused, retry = optuna.load_study(study_name=name, storage=url).trials
    assert retry.state == TrialState.WAITING and retry.params == refused.params
    assert studies.study_status(open_storage(url), name).state == "open"
    return refused


def _assert_refused_without_content(trial: optuna.trial.FrozenTrial, roots: str) -> str:
    assert trial.state == TrialState.FAIL
    reason = trial.user_attrs["fail_reason"]
    assert reason.startswith("DataOutsideRoots: ") and "\n" not in reason
    assert f"outside this worker's data roots ({roots})" in reason and "--data-root" in reason
    everything = repr(trial.user_attrs) + repr(trial.system_attrs)
    for secret in (SECRET, "root:", "hidden_column", "secret-value"):
        assert secret not in everything
    return reason


def _force_dataset(url: str, name: str, dataset: str) -> None:
    """Store a spec naming ``dataset`` as a spec from before these checks (or written to the
    database directly) would: the worker must refuse it on its own."""
    storage = open_storage(url)
    study_id = storage.get_study_id_from_name(name)
    spec = storage.get_study_user_attrs(study_id)[studies.SPEC_ATTR]
    spec["task"]["dataset"] = dataset
    storage.set_study_user_attr(study_id, studies.SPEC_ATTR, spec)


# -- at the worker -----------------------------------------------------------------------------


def test_a_worker_without_roots_refuses_system_files_in_one_line(sqlite_url, monkeypatch):
    monkeypatch.delenv("HPSEARCH_DATA_ROOTS", raising=False)
    _study(sqlite_url, "shadow", dataset="placeholder.csv", target="zzz")
    _force_dataset(sqlite_url, "shadow", "/etc/passwd")  # the service refuses it at submit
    with pytest.raises(WorkerCannotServe, match="outside this worker's data roots"):
        run_worker(sqlite_url, study="shadow", device="cpu", max_trials=1)
    reason = _assert_refused_without_content(
        _refused_trial(sqlite_url, "shadow"), "none: bundled datasets only"
    )
    assert "'/etc/passwd'" in reason and "zzz" not in reason  # refused before reading


def test_a_worker_without_roots_refuses_a_file_anywhere(sqlite_url, tmp_path, monkeypatch):
    monkeypatch.delenv("HPSEARCH_DATA_ROOTS", raising=False)
    secret = _secret_csv(tmp_path / "elsewhere" / "secret.csv")
    _study(sqlite_url, "anywhere", dataset=str(secret), target="zzz")
    with pytest.raises(WorkerCannotServe, match="outside this worker's data roots"):
        run_worker(sqlite_url, study="anywhere", device="cpu", max_trials=1)
    _assert_refused_without_content(
        _refused_trial(sqlite_url, "anywhere"), "none: bundled datasets only"
    )


def test_bundled_datasets_need_no_root(sqlite_url, monkeypatch):
    monkeypatch.delenv("HPSEARCH_DATA_ROOTS", raising=False)
    _study(sqlite_url, "bundled")  # digits
    assert run_worker(sqlite_url, study="bundled", device="cpu") == 1
    assert _only_trial(sqlite_url, "bundled").state == TrialState.COMPLETE


def test_a_csv_under_a_data_root_given_on_the_command_line_trains(sqlite_url, tmp_path):
    data = tmp_path / "data"
    table = _table_csv(data / "sub" / "table.csv")
    _study(sqlite_url, "rooted", dataset=str(table))
    env = {k: v for k, v in os.environ.items() if k != "HPSEARCH_DATA_ROOTS"}
    roots = ["--data-root", str(tmp_path / "other"), "--data-root", str(data)]
    cmd = [sys.executable, "-m", "hpsearch", "worker", "--storage", sqlite_url, "--gpus", "none",
           "--study", "rooted", *roots]  # fmt: skip
    (tmp_path / "other").mkdir()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert f"reads data under: {(tmp_path / 'other').resolve()}, {data.resolve()}" in done.stderr
    assert _only_trial(sqlite_url, "rooted").state == TrialState.COMPLETE


def test_the_environment_names_the_roots_and_a_file_elsewhere_is_refused(
    sqlite_url, tmp_path, monkeypatch
):
    data = tmp_path / "data"
    table = _table_csv(data / "table.csv")
    secret = _secret_csv(tmp_path / "private" / "secret.csv")
    monkeypatch.setenv("HPSEARCH_DATA_ROOTS", os.pathsep.join([str(data), str(tmp_path / "no")]))
    with pytest.raises(UsageError, match="HPSEARCH_DATA_ROOTS .* is not a folder"):
        run_worker(sqlite_url)  # a root that does not exist is a mistake worth saying at once
    monkeypatch.setenv("HPSEARCH_DATA_ROOTS", str(data))
    _study(sqlite_url, "inside", dataset=str(table))
    _study(sqlite_url, "outside", dataset=str(secret))
    assert run_worker(sqlite_url, study="inside", device="cpu") == 1
    assert _only_trial(sqlite_url, "inside").state == TrialState.COMPLETE
    with pytest.raises(WorkerCannotServe, match="outside this worker's data roots"):
        run_worker(sqlite_url, study="outside", device="cpu", max_trials=1)
    _assert_refused_without_content(_refused_trial(sqlite_url, "outside"), str(data.resolve()))


def test_a_symlink_out_of_a_root_is_refused(sqlite_url, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    secret = _secret_csv(tmp_path / "private" / "secret.csv")
    (data / "innocent.csv").symlink_to(secret)
    (data / "escape").symlink_to(secret.parent, target_is_directory=True)
    dots = data / "sub" / ".." / ".." / "private" / "secret.csv"
    for name, path in [("link", data / "innocent.csv"), ("dir", data / "escape" / "secret.csv"),
                       ("dots", dots)]:  # fmt: skip
        _study(sqlite_url, name, dataset="placeholder.csv", target="zzz")
        _force_dataset(sqlite_url, name, str(path))  # '..' would be refused at submit
        with pytest.raises(WorkerCannotServe):
            run_worker(sqlite_url, study=name, device="cpu", max_trials=1, data_roots=[str(data)])
        _assert_refused_without_content(_refused_trial(sqlite_url, name), str(data.resolve()))


def test_files_inside_a_dataset_folder_that_link_out_are_refused(tmp_path):
    from PIL import Image

    from hpsearch.train.audio.data import load_audio
    from hpsearch.train.image.data import open_image_source

    data, outside = tmp_path / "data", tmp_path / "outside"
    for cls in ("a", "b"):
        (data / "images" / cls).mkdir(parents=True)
        (data / "sounds" / cls).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (4, 4)).save(data / "images" / cls / f"{i}.png")
    outside.mkdir()
    Image.new("RGB", (4, 4)).save(outside / "secret.png")
    (outside / "secret.wav").write_bytes(b"RIFF-secret-bytes")
    roots = DataRoots.from_options([str(data)])
    with reading_under(roots):
        assert open_image_source(str(data / "images")).n_classes == 2  # nothing links out
        (data / "images" / "b" / "2.png").symlink_to(outside / "secret.png")
        with pytest.raises(DataOutsideRoots, match="resolves outside this worker's data roots"):
            open_image_source(str(data / "images"))
        for cls in ("a", "b"):
            (data / "sounds" / cls / "x.wav").symlink_to(outside / "secret.wav")
        with pytest.raises(DataOutsideRoots, match="through a symlink"):
            load_audio(data / "sounds")
    # Outside a worker (hpsearch try, a script) the same folder is the user's own to read.
    assert open_image_source(str(data / "images")).n_classes == 2


# -- messages never quote a file ---------------------------------------------------------------


def test_a_wrong_target_on_a_file_under_a_root_lists_no_columns(sqlite_url, tmp_path):
    data = tmp_path / "data"
    table = _table_csv(data / "table.csv")
    _study(sqlite_url, "wrong-target", dataset=str(table), target="zzz")
    with pytest.raises(StudyFailed, match="task.target 'zzz'"):
        run_worker(
            sqlite_url, study="wrong-target", device="cpu", max_trials=1, data_roots=[str(data)]
        )
    trial = _only_trial(sqlite_url, "wrong-target")
    reason = trial.user_attrs["fail_reason"]
    assert trial.state == TrialState.FAIL and "\n" not in reason
    assert "task.target 'zzz' is not a column of dataset" in reason and "3 columns" in reason
    assert "private_feature" not in reason and "'target'" not in reason


def test_errors_about_unreadable_files_quote_nothing_of_them(tmp_path):
    from hpsearch.train.audio.data import load_audio
    from hpsearch.train.tabular.data import load_tabular

    one_class = tmp_path / "one.csv"
    one_class.write_text("x,secret_label_header\n1,secret-class\n2,secret-class\n")
    regression = tmp_path / "reg.csv"
    regression.write_text("x,secret_target_header\n1,secret-word\n2,3\n")
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"a,b\n\xff\xfe secret \x00\n")
    wavs = tmp_path / "wavs"
    for cls in ("a", "b"):
        (wavs / cls).mkdir(parents=True)
        (wavs / cls / "x.wav").write_bytes(b"SECRET-not-a-riff-header")
    failures = []
    for path, regress in [(one_class, False), (regression, True), (binary, False)]:
        with pytest.raises(ValueError) as e:
            load_tabular(str(path), val_fraction=0.25, normalization="standard", regression=regress)
        failures.append(str(e.value))
    with pytest.raises(ValueError) as e:
        load_audio(wavs)
    failures.append(str(e.value))
    assert "has one class" in failures[0] and "must be a number" in failures[1]
    assert "not a readable CSV" in failures[2] and "cannot read WAV file" in failures[3]
    for message in failures:
        assert "secret" not in message.lower().replace(str(tmp_path).lower(), "")


# -- at submit ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dataset",
    ["/etc/shadow", "//etc/passwd", "/proc/self/environ", "/root/.ssh/id_rsa", "/", "/dev/zero",
     "../../etc/passwd", "data/../../secret.csv", "/data/x/../../etc/passwd"],
)  # fmt: skip
def test_the_spec_check_refuses_system_paths_and_dot_dot(dataset):
    with pytest.raises(SpecError, match="system path|'\\.\\.' component"):
        check_spec_paths(TaskSpec(dataset=dataset))
    with pytest.raises(SpecError, match="task.pretrained_weights"):
        check_spec_paths(TaskSpec(dataset="digits", pretrained_weights=dataset))


@pytest.mark.parametrize("dataset", ["digits", "tones", "/data/x.csv", "data/x.csv", "/etcx/a"])
def test_the_spec_check_lets_data_paths_through(dataset):
    check_spec_paths(TaskSpec(dataset=dataset, pretrained_weights="hub"))


def test_the_service_refuses_system_paths_and_dot_dot_at_submit(
    live_service, sqlite_url, make_api_token
):
    headers = {"Authorization": f"Bearer {make_api_token(sqlite_url, 'write')}"}
    refused = [
        {"dataset": "/etc/shadow", "target": "zzz"},
        {"dataset": "../../../etc/passwd"},
        {"dataset": "/proc/self/environ"},
        {"dataset": "digits", "pretrained_weights": "/root/.ssh/id_rsa"},
    ]
    with httpx.Client(base_url=live_service, headers=headers, timeout=30) as http:
        for i, task in enumerate(refused):
            spec = {"name": f"evil-{i}", "space": "tabular", "task": task}
            if "pretrained_weights" in task:
                spec.update(space="image", fixed={"transfer.pretrained": True})
            response = http.post("/studies", json=spec)
            assert response.status_code == 422, response.text
            detail = response.json()["detail"]
            message = detail if isinstance(detail, str) else str(detail)
            assert "system path" in message or "'..' component" in message, message
        listed = http.get("/studies").json()
        assert listed["count"] == 0  # nothing was created
        ok = http.post("/studies", json={"name": "ok", "space": "tabular",
                                         "task": {"dataset": "/data/table.csv"}})  # fmt: skip
        assert ok.status_code == 201, ok.text  # only the worker knows its roots


def test_a_missing_file_under_a_root_is_named_as_missing(tmp_path):
    from hpsearch.train.tabular.data import load_tabular

    for missing, regression, bundled in ((tmp_path / "nope.csv", False, "digits"),
                                         (tmp_path, True, "diabetes")):  # fmt: skip
        with pytest.raises(ValueError) as caught:
            load_tabular(str(missing), val_fraction=0.2, normalization="standard",
                         regression=regression)  # fmt: skip
        message = str(caught.value)
        assert ("does not exist" if missing.suffix else "is a folder") in message
        assert f"'{bundled}'" in message
