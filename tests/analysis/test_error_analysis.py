"""Error analysis of the best trials: the report's numbers, keeping the best N, CLI, REST, dashboard."""

from __future__ import annotations

import inspect
import json
import urllib.request

import numpy as np
import optuna
import pytest
import sqlalchemy
from fastapi.testclient import TestClient
from optuna.trial import TrialState
from sklearn.metrics import (
    confusion_matrix,
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    precision_recall_fscore_support,
)

from hpsearch import cli, studies
from hpsearch.analysis.artifacts import (
    REMOVED_ATTR,
    KeepPolicy,
    keep_best_predictions,
    open_artifact_store,
    parse_keep,
    predictions_for,
    upload_predictions,
)
from hpsearch.analysis.report import build_report, render_plot, write_report
from hpsearch.errors import ArtifactNotFound, TrialNotFound, UsageError
from hpsearch.db.storage import TRIALS_EDITED_ATTR, open_storage
from hpsearch.analysis.predictions import ValPredictions
from hpsearch.service import Settings, create_app

PNG = b"\x89PNG\r\n\x1a\n"


def _classification(seed: int = 0, n: int = 200, k: int = 4, **extra) -> ValPredictions:
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, k, n)
    y_pred = np.where(rng.random(n) < 0.7, y_true, rng.integers(0, k, n))
    y_pred[y_pred == k - 1] = 0  # the last class is never predicted: precision 0 / 0
    probs = rng.dirichlet(np.ones(k), n).astype(np.float32)
    loss = -np.log(probs[np.arange(n), y_true])
    worst = ValPredictions.worst_indices(loss, 8)
    inputs = {"worst_rows": rng.normal(size=(len(worst), 3)), "feature_names": ["a", "b", "c"]}
    return ValPredictions(
        kind="classification",
        family="tabular",
        y_true=y_true,
        y_pred=y_pred,
        loss=loss,
        worst=worst,
        probs=probs,
        class_names=[f"c{i}" for i in range(k)],
        **{**inputs, **extra},
    )


def test_classification_report_matches_scikit_learn(tmp_path):
    preds = _classification()
    report = build_report(preds)
    precision, recall, f1, support = precision_recall_fscore_support(
        preds.y_true, preds.y_pred, labels=range(4), zero_division=0
    )
    assert [c.name for c in report.classes] == ["c0", "c1", "c2", "c3"]
    assert [c.precision for c in report.classes] == pytest.approx(precision)
    assert [c.recall for c in report.classes] == pytest.approx(recall)
    assert [c.f1 for c in report.classes] == pytest.approx(f1)
    assert [c.support for c in report.classes] == list(support)
    assert report.classes[3].precision == 0.0  # never predicted
    assert report.macro_f1 == pytest.approx(
        f1_score(preds.y_true, preds.y_pred, average="macro", zero_division=0)
    )
    assert report.accuracy == pytest.approx(np.mean(preds.y_true == preds.y_pred))
    assert report.confusion.matrix == confusion_matrix(preds.y_true, preds.y_pred).tolist()
    # The worst examples: highest loss first, with their row values and names.
    order = np.argsort(-preds.loss, kind="stable")[:8]
    assert [w.index for w in report.worst] == order.tolist()
    first = report.worst[0]
    assert first.true == f"c{preds.y_true[order[0]]}"
    assert first.predicted == f"c{preds.y_pred[order[0]]}"
    assert first.loss == pytest.approx(preds.loss[order[0]])
    assert first.row == pytest.approx(dict(zip("abc", preds.worst_rows[0])))
    assert report.plots == ["confusion"]
    doc = write_report(report, preds, tmp_path / "r", fmt="md")
    text = doc.read_text()
    assert doc.name == "report.md" and "![confusion matrix](confusion.png)" in text
    assert "| c3 | 0.000 |" in text
    assert (tmp_path / "r" / "confusion.png").read_bytes().startswith(PNG)


def test_regression_report_and_plots(tmp_path):
    rng = np.random.default_rng(1)
    y_true = rng.normal(size=150) * 10
    y_pred = y_true + rng.normal(size=150)
    loss = (y_pred - y_true) ** 2
    preds = ValPredictions(
        kind="regression",
        family="tabular",
        y_true=y_true,
        y_pred=y_pred,
        loss=loss,
        worst=ValPredictions.worst_indices(loss, 5),
    )
    report = build_report(preds)
    assert report.rmse == pytest.approx(np.sqrt(mean_squared_error(y_true, y_pred)))
    assert report.mae == pytest.approx(mean_absolute_error(y_true, y_pred))
    assert report.residuals.median == pytest.approx(np.median(y_pred - y_true))
    assert report.worst[0].index == int(np.argmax(loss))
    assert report.worst[0].true == pytest.approx(y_true[np.argmax(loss)])
    assert report.classes is None and report.plots == ["residuals"]
    doc = write_report(report, preds, tmp_path, fmt="html")
    assert '<img src="residuals.png"' in doc.read_text()
    assert (tmp_path / "residuals.png").read_bytes().startswith(PNG)
    with pytest.raises(ArtifactNotFound, match="has no plot 'confusion'; it has: residuals"):
        render_plot(report, preds, "confusion")


def test_image_report_draws_the_worst_examples_grid(tmp_path):
    import matplotlib.image

    images = np.random.default_rng(2).integers(0, 255, (8, 12, 12, 3), dtype=np.uint8)
    preds = _classification(worst_images=images, worst_rows=None, feature_names=None)
    preds.family = "image"
    report = build_report(preds)
    assert report.plots == ["confusion", "worst"]
    doc = write_report(report, preds, tmp_path)
    assert '<img src="worst.png"' in doc.read_text()
    grid = matplotlib.image.imread(tmp_path / "worst.png")
    assert grid.shape[1] > grid.shape[0] > 50  # one row of 8 labelled images


def test_keep_settings_and_store_locations(tmp_path, monkeypatch):
    monkeypatch.delenv("HPSEARCH_ARTIFACTS", raising=False)
    monkeypatch.delenv("HPSEARCH_KEEP_ARTIFACTS", raising=False)
    assert parse_keep() == KeepPolicy(best=3) and parse_keep("all") == KeepPolicy(best=None)
    with pytest.raises(UsageError, match="best:N"):
        parse_keep("best:0")
    store = open_artifact_store(storage_url=f"sqlite:///{tmp_path}/x.db")
    assert store.location == str(tmp_path / "hpsearch-artifacts")
    assert open_artifact_store(storage_url="postgresql://u@h/db") is None  # no safe default
    assert open_artifact_store("off", storage_url=f"sqlite:///{tmp_path}/x.db") is None
    with pytest.raises(UsageError, match="boto3"):
        open_artifact_store("s3://bucket/prefix")


def _attr_rows(storage, trial_id):
    with storage.engine.connect() as conn:
        return dict(
            conn.execute(
                sqlalchemy.text(
                    "SELECT key, value_json FROM trial_system_attributes WHERE trial_id = :t"
                ),
                {"t": trial_id},
            ).all()
        )


@pytest.mark.filterwarnings("ignore:Heartbeat")
def test_only_the_best_n_complete_trials_keep_predictions(storage_url, tmp_path):
    storage = open_storage(storage_url)
    store = open_artifact_store(str(tmp_path / "store"), create=True)
    study = optuna.create_study(study_name="keep", storage=storage, direction="minimize")
    values = [0.5, 0.1, 0.9, 0.3, None, None]  # None: pruned, then one still running
    trials = []
    for i, value in enumerate(values):
        trial = study.ask()
        upload_predictions(storage, store, trial._trial_id, _classification(seed=i))
        if i == 0:  # an artifact of the user's own (the dashboard's upload): never touched
            other = tmp_path / "notes.txt"
            other.write_text("mine")
            optuna.artifacts.upload_artifact(
                artifact_store=store, file_path=str(other), study_or_trial=trial
            )
        if value is not None:
            study.tell(trial, value)
        elif i == 4:
            study.tell(trial, state=TrialState.PRUNED)
        trials.append(trial)
    marker = storage.get_study_system_attrs(study._study_id).get(TRIALS_EDITED_ATTR)

    removed = keep_best_predictions(storage, store, study._study_id, KeepPolicy(best=2))

    assert removed == [0, 2, 4]  # 0.5 and 0.9 are outside the best two (0.1, 0.3); 4 pruned
    files = {p.name for p in (tmp_path / "store").iterdir()}
    for trial in trials:
        rows = _attr_rows(storage, trial._trial_id)
        preds = [k for k, v in rows.items() if k.startswith("artifacts:") and "predictions" in v]
        if trial.number in removed:
            assert not preds and REMOVED_ATTR in rows
        else:
            assert len(preds) == 1 and preds[0].removeprefix("artifacts:") in files
    assert len(files) == 3 + 1  # trials 1, 3, the running 5, and the user's notes.txt
    assert storage.get_study_system_attrs(study._study_id)[TRIALS_EDITED_ATTR] != marker
    # The reasons a reader is given, and the best trial by default.
    number, preds = predictions_for(storage, store, "keep")
    assert number == 1 and np.array_equal(preds.y_pred, _classification(seed=1).y_pred)
    with pytest.raises(ArtifactNotFound, match="fell out of the best 2"):
        predictions_for(storage, store, "keep", 0)
    with pytest.raises(ArtifactNotFound, match="was pruned"):
        predictions_for(storage, store, "keep", 4)
    with pytest.raises(TrialNotFound, match="no trial number 7"):
        predictions_for(storage, store, "keep", 7)
    with pytest.raises(ArtifactNotFound, match="reports are off"):
        predictions_for(storage, None, "keep", 1)
    # A second pass has nothing left to do.
    assert keep_best_predictions(storage, store, study._study_id, KeepPolicy(best=2)) == []


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Heartbeat")
def test_demo_study_report_matches_a_direct_computation(tmp_path, free_port, capsys, monkeypatch):
    from hpsearch.service.dashboard import start_dashboard
    from hpsearch.train import train
    from hpsearch.train.tabular.data import load_tabular
    from hpsearch.worker import run_worker

    monkeypatch.delenv("HPSEARCH_ARTIFACTS", raising=False)
    assert "predictions" in inspect.signature(train).parameters  # the trainer's hook (H8a)
    url = f"sqlite:///{tmp_path}/demo.db"
    storage = open_storage(url)
    spec = {
        "name": "digits",
        "space": "demo",
        "task": {"dataset": "digits", "epochs": 2},
        "budget": {"trials": 4},
        "pruner": "none",
        "seed": 0,
    }
    studies.create_study(storage, spec)
    assert run_worker(url, study="digits", keep_artifacts="best:2") == 4
    study = optuna.load_study(study_name="digits", storage=storage)
    ranked = sorted(study.trials, key=lambda t: (-t.value, t.number))
    best, outside = ranked[0], ranked[-1]
    # A pruned trial, to ask for its report below.
    pruned = study.ask()
    study.tell(pruned, state=TrialState.PRUNED)
    store_dir = tmp_path / "hpsearch-artifacts"  # the default beside the SQLite file
    # The best two trials' predictions and weights (hpsearch export), no more.
    assert len(list(store_dir.iterdir())) == 2 * 2

    # The direct computation: the best trial again, same config and seed, on CPU.
    direct: list[ValPredictions] = []
    task = studies.load_spec(storage, "digits").task
    value = train(
        best.user_attrs["config"],
        task,
        lambda v, s: None,
        metric="val_accuracy",
        seed=best.user_attrs["seed"],
        device="cpu",
        predictions=direct.append,
    )
    assert value == pytest.approx(best.value)
    (mine,) = direct
    data = load_tabular("digits", val_fraction=task.val_fraction, normalization="standard")
    assert np.array_equal(mine.y_true, data.val.y)  # labels in the validation split's order
    expected_confusion = confusion_matrix(mine.y_true, mine.y_pred, labels=range(10)).tolist()
    expected_worst = np.argsort(-mine.loss, kind="stable")[:16].tolist()

    # `hpsearch report`: the best trial by default.
    out = tmp_path / "report"
    assert cli.main(["report", "digits", "--storage", url, "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == str(out / "report.html")
    assert f"trial {best.number} of digits" in printed[1]
    assert (out / "confusion.png").read_bytes().startswith(PNG)
    html_text = (out / "report.html").read_text()
    assert 'src="confusion.png"' in html_text and "Highest-loss examples" in html_text

    # The REST route: the same numbers as the direct computation.
    app = create_app(Settings(storage=url, anonymous_reads=True))
    with TestClient(app) as client:
        got = client.get("/studies/digits/report")
        assert got.status_code == 200, got.text
        report = got.json()
        assert report["trial"] == best.number and report["examples"] == len(data.val.y)
        assert report["confusion"]["matrix"] == expected_confusion
        assert [w["index"] for w in report["worst"]][:16] == expected_worst
        rows = [list(w["row"].values()) for w in report["worst"][:5]]
        np.testing.assert_allclose(rows, data.val_raw[expected_worst[:5]])
        assert report["accuracy"] == pytest.approx(best.value, abs=1e-6)
        plot = client.get("/studies/digits/report/plots/confusion.png")
        assert plot.status_code == 200 and plot.content.startswith(PNG)
        assert plot.headers["content-type"] == "image/png"

        # Bad requests: a clear reason, 404, no traceback.
        cases = {
            "/studies/digits/report?trial=99": "no trial number 99",
            f"/studies/digits/report?trial={pruned.number}": "was pruned",
            f"/studies/digits/report?trial={outside.number}": "fell out of the best 2",
            "/studies/ghost/report": "no study named 'ghost'",
            "/studies/digits/report/plots/residuals.png": "has no plot 'residuals'",
        }
        for path, reason in cases.items():
            answer = client.get(path)
            assert answer.status_code == 404, (path, answer.text)
            assert reason in answer.json()["detail"] and "Traceback" not in answer.text

    # The CLI's error: one line, the same reason.
    assert cli.main(["report", "digits", "--storage", url, "--trial", str(outside.number)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("reading sqlite:")  # where it read, then the one error line
    assert len(err) == 2 and "fell out of the best 2" in err[1]

    # optuna-dashboard lists the kept trial's artifact and serves its file.
    dashboard = start_dashboard(
        url,
        port=free_port,
        artifact_store=open_artifact_store(storage_url=url),
        anonymous_reads=True,
    )
    try:
        base = f"http://127.0.0.1:{free_port}"
        with urllib.request.urlopen(f"{base}/api/studies/{study._study_id}?after=0") as r:
            detail = json.load(r)
        listed = {t["number"]: t["artifacts"] for t in detail["trials"]}
        filenames = sorted(a["filename"] for a in listed[best.number])
        assert filenames == ["model.safetensors", "predictions.npz"]
        assert listed[outside.number] == [] and listed[pruned.number] == []
        (artifact_id,) = [
            a["artifact_id"] for a in listed[best.number] if a["filename"] == "predictions.npz"
        ]
        trial_id = best._trial_id
        with urllib.request.urlopen(
            f"{base}/artifacts/{study._study_id}/{trial_id}/{artifact_id}"
        ) as r:
            served = ValPredictions.load(r.read())
        assert np.array_equal(served.y_pred, mine.y_pred)
    finally:
        dashboard.stop()


@pytest.mark.filterwarnings("ignore:Heartbeat")
def test_serving_a_report_does_not_import_torch(sqlite_url, tmp_path):
    import subprocess
    import sys

    storage = open_storage(sqlite_url)
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    trial = study.ask()
    store = open_artifact_store(storage_url=sqlite_url, create=True)
    upload_predictions(storage, store, trial._trial_id, _classification())
    study.tell(trial, 0.5)
    code = (
        "import sys\n"
        "from fastapi.testclient import TestClient\n"
        "from hpsearch.service import Settings, create_app\n"
        f"app = create_app(Settings(storage={sqlite_url!r}, anonymous_reads=True))\n"
        "with TestClient(app) as c:\n"
        "    assert c.get('/studies/s/report').json()['trial'] == 0\n"
        "    assert c.get('/studies/s/report/plots/confusion.png').status_code == 200\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
