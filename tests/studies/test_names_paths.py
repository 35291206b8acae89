"""Names never become paths as they are: a study renamed to ``../../../tmp/escaped`` (through
optuna-dashboard, or Optuna on the same database) must not make a worker, the artifact store or
a report write anywhere but where they were told.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from hpsearch import studies
from hpsearch.analysis.artifacts import keep_best_predictions, open_artifact_store, parse_keep
from hpsearch.cli import main
from hpsearch.analysis.report import default_report_dir, study_report
from hpsearch.errors import ArtifactNotFound
from hpsearch.safe_names import name_slug, study_folder
from hpsearch.db.storage import open_storage
from hpsearch.worker import run_worker

EVIL = "../../../tmp/escaped"


def quick_checkpoint(config: dict, report, checkpoint=None) -> float:
    """Writes its checkpoint (as a resumable objective does), keeps a copy to look at later."""
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.write_text("1")
    (checkpoint.parent / "seen").write_text(str(checkpoint))
    report(1.0, 1)
    return 1.0


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def _rename(url: str, old: str, new: str) -> int:
    """Rename a study in the database, as optuna-dashboard's rename (or any Optuna user) can."""
    storage = open_storage(url)
    study_id = storage.get_study_id_from_name(old)
    with storage.engine.begin() as conn:
        conn.execute(
            sqlalchemy.text("UPDATE studies SET study_name = :new WHERE study_id = :id"),
            {"new": new, "id": study_id},
        )
    return study_id


def _evil_study(url: str, **spec) -> int:
    studies.create_study(
        open_storage(url),
        {"name": "good", "space": "demo", "task": {"epochs": 1}, "budget": {"trials": 1},
         "pruner": "none", "seed": 0, **spec},
    )  # fmt: skip
    return _rename(url, "good", EVIL)


def test_checkpoints_of_a_renamed_study_stay_in_the_checkpoint_dir(tmp_path):
    deep = tmp_path / "a" / "b" / "c"
    deep.mkdir(parents=True)
    url = f"sqlite:///{deep}/s.db"
    study_id = _evil_study(url)
    ckpt = deep / "ckpt"
    before = _files(tmp_path)
    ran = run_worker(
        url, study=EVIL, objective="test_names_paths:quick_checkpoint", checkpoint_dir=ckpt
    )
    assert ran == 1
    (trial,) = optuna.load_study(study_name=EVIL, storage=url).trials
    assert trial.state == TrialState.COMPLETE
    created = _files(tmp_path) - before
    outside = [p for p in created if not p.is_relative_to(ckpt) and p.name != "s.db.lock"]
    assert not outside, outside
    assert not (tmp_path / "escaped").exists() and not Path("/tmp/escaped").exists()
    folder = ckpt / study_folder(study_id)
    assert (folder / "seen").read_text() == str(folder / "trial-0.pt")  # the feature still works


def test_artifacts_and_reports_of_a_renamed_study_stay_where_they_belong(
    tmp_path, monkeypatch, capsys
):
    deep = tmp_path / "a" / "b" / "c"
    deep.mkdir(parents=True)
    url = f"sqlite:///{deep}/s.db"
    _evil_study(url, space="tabular")  # the built-in trainer on digits keeps predictions
    store_dir = deep / "store"
    before = _files(tmp_path)
    assert run_worker(url, study=EVIL, device="cpu", artifacts=str(store_dir)) == 1
    created = _files(tmp_path) - before
    outside = [p for p in created if not p.is_relative_to(store_dir) and p.name != "s.db.lock"]
    assert not outside, outside
    kept = [p.name for p in store_dir.iterdir()]  # predictions and weights, named by UUIDs
    assert len(kept) == 2 and all(len(k) == 36 and k.count("-") == 4 for k in kept)

    store = open_artifact_store(str(store_dir))
    report, _preds = study_report(open_storage(url), store, EVIL)
    assert report.study == EVIL and report.trial == 0 and report.classes  # the report works

    cwd = deep / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    before = _files(tmp_path)
    assert main(["report", EVIL, "--storage", url, "--artifacts", str(store_dir)]) == 0
    document = Path(capsys.readouterr().out.splitlines()[0])
    created = _files(tmp_path) - before
    assert created and all(p.is_relative_to(cwd) for p in created), created
    assert document.resolve().parent.parent == cwd.resolve()  # one folder, inside the cwd
    assert document.parent.name == "hpsearch-report-_.._.._tmp_escaped-trial0"
    assert document.name == "report.html" and document.resolve().exists()


def test_forged_artifact_ids_touch_no_file_outside_the_store(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    studies.create_study(open_storage(url), {"name": "s", "space": "demo", "budget": {"trials": 3}})
    storage = open_storage(url)
    study = optuna.load_study(study_name="s", storage=url)
    store_dir = tmp_path / "store"
    store = open_artifact_store(str(store_dir), create=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("must survive")
    # Rows that say "my predictions are ../victim.txt", as anyone with the database can write.
    forged = {"artifact_id": "../victim.txt", "filename": "predictions.npz",
              "mimetype": "application/octet-stream", "encoding": None}  # fmt: skip
    for value in (2.0, 1.0):  # the worse one falls outside best:1 and is cleaned up
        trial = study.ask()
        row = ("artifacts:../victim.txt", json.dumps(forged))
        storage.set_trial_system_attr(trial._trial_id, *row)
        study.tell(trial, value)
    keep_best_predictions(storage, store, study._study_id, parse_keep("best:1"))
    assert victim.read_text() == "must survive"
    with pytest.raises(ArtifactNotFound, match="not a UUID"):
        study_report(storage, store, "s", 1)  # the best trial's forged row: a 404, no read
    for call in (lambda: store.write("../x", io.BytesIO(b"x")), lambda: store.remove("../x")):
        with pytest.raises(ValueError, match="not a UUID"):
            call()
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("name", "slug"),
    [(EVIL, "_.._.._tmp_escaped"), ("..", "study"), ("-rf", "rf"), (".hidden", "hidden"),
     ("ok-name_1.2", "ok-name_1.2"), ("a/b\\c\x00d", "a_b_c_d"), ("", "study")],
)  # fmt: skip
def test_a_slug_is_one_safe_path_component(name, slug):
    assert name_slug(name) == slug
    assert Path(default_report_dir(name, 3)).name == f"hpsearch-report-{slug}-trial3"
    assert len(Path(default_report_dir(name, 3)).parts) == 1


def test_the_service_and_the_cli_refuse_path_like_names_at_submit(
    live_service, sqlite_url, make_api_token, tmp_path, capsys, monkeypatch
):
    import httpx

    token = make_api_token(sqlite_url, "write")
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=live_service, headers=headers, timeout=30) as http:
        for name in (EVIL, "..", "a/b", ".hidden", "-x", "a\\b"):
            response = http.post("/studies", json={"name": name, "space": "demo"})
            assert response.status_code == 422, (name, response.text)
            assert "study name" in response.text
        assert http.get("/studies").json()["count"] == 0
    spec = tmp_path / "study.yaml"
    spec.write_text("space: demo\n")
    monkeypatch.setenv("HPSEARCH_API_TOKEN", token)
    code = main(["submit", str(spec), "--name", EVIL, "--server", live_service])
    err = capsys.readouterr().err
    assert code == 1 and "study name" in err and len(err.strip().splitlines()) == 1
