"""The error tree: one place for every error, and what each kind means to a caller."""

from __future__ import annotations

import ast
from pathlib import Path

import optuna
import pytest
from fastapi.testclient import TestClient

from hpsearch import errors, studies
from hpsearch.analysis.artifacts import predictions_for
from hpsearch.db.storage import open_storage
from hpsearch.service import Settings, create_app

ROOT = Path(__file__).resolve().parents[2]


def test_every_error_class_lives_in_errors_py():
    """An error defined anywhere else would be missed by the service's and the CLI's mapping."""
    elsewhere = []
    for folder in ("hpsearch", "service"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == ROOT / "hpsearch" / "errors.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.ClassDef) or node.name.startswith("_"):
                    continue
                bases = [ast.unparse(b) for b in node.bases]
                if any(b.endswith(("Error", "Exception", "NotFound", "Busy", "Failed"))
                       or b in ("errors.HpsearchError",) for b in bases):  # fmt: skip
                    elsewhere.append(f"{path.relative_to(ROOT)}: {node.name}({', '.join(bases)})")
    assert elsewhere == []


def test_every_public_error_is_an_hpsearch_error_except_the_stop_signal():
    kinds = [getattr(errors, name) for name in errors.__all__]
    assert all(isinstance(k, type) and issubclass(k, BaseException) for k in kinds)
    outside = [k.__name__ for k in kinds if not issubclass(k, errors.HpsearchError)]
    assert outside == ["WorkerStopped"]  # must pass through a user objective's `except Exception`
    assert not issubclass(errors.WorkerStopped, Exception)


def test_old_import_paths_still_work():
    from hpsearch.client import ApiError, ServiceUnreachable
    from hpsearch.studies import StudyBusy
    from hpsearch.worker.loop import WorkerStopped
    from hpsearch.worker.oom import CudaOutOfMemory

    assert (ApiError, ServiceUnreachable, StudyBusy, WorkerStopped, CudaOutOfMemory) == (
        errors.ApiError,
        errors.ServiceUnreachable,
        errors.StudyBusy,
        errors.WorkerStopped,
        errors.CudaOutOfMemory,
    )


def test_a_missing_report_is_not_a_missing_trial_but_still_a_404(sqlite_url):
    url = sqlite_url
    studies.create_study(open_storage(url), {"name": "s", "space": "demo", "budget": {"trials": 3}})
    study = optuna.load_study(study_name="s", storage=url)
    study.tell(study.ask(), 0.5)  # a complete trial that kept no predictions

    with pytest.raises(errors.NotFound) as caught:
        predictions_for(open_storage(url), None, "s", 0)
    assert isinstance(caught.value, errors.ArtifactNotFound)
    assert not isinstance(caught.value, errors.TrialNotFound)  # the trial is there

    with TestClient(create_app(Settings(storage=url, anonymous_reads=True))) as client:
        answers = {
            "/studies/s/report?trial=0": "no report for trial 0",  # ArtifactNotFound
            "/studies/s/report?trial=9": "no trial number 9",  # TrialNotFound
            "/studies/ghost/report": "no study named 'ghost'",  # StudyNotFound
        }
        for path, reason in answers.items():
            answer = client.get(path)
            assert answer.status_code == 404, (path, answer.text)
            assert reason in answer.json()["detail"]
