"""A failed study's reason is one short line (issue 16).

A study with ``task.target: f5`` (a float feature) was accepted and the worker failed it with a
~1,200-character reason: scikit-learn's list of ~300 one-row classes. The loader now says the
column looks continuous, and any stored reason is cut to :data:`MAX_REASON_CHARS` with "…"
(the failed trial keeps the whole error).
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

import optuna
import pytest

from hpsearch import studies
from hpsearch.cli import main
from hpsearch.db.storage import open_storage
from hpsearch.studies.history import MAX_REASON_CHARS, fail_study


def _spec(name: str, dataset: str, target: str | None = None) -> dict[str, object]:
    return {
        "name": name,
        "space": "tabular",
        "task": {"dataset": dataset, "target": target, "epochs": 1},
        "budget": {"trials": 3},
        "pruner": "none",
    }


def test_a_float_target_fails_the_study_with_a_short_reason(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HPSEARCH_CPU_AMP", "0")
    data = tmp_path / "data"
    data.mkdir()
    rng = random.Random(0)
    with open(data / "mine.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["label", "f1", "f5"])
        for i in range(300):
            w.writerow([i % 3, f"{rng.random():.6f}", f"{rng.random():.6f}"])
    storage = open_storage(sqlite_url)
    studies.create_study(storage, _spec("f", str(data / "mine.csv"), "f5"))
    worker = ["worker", "--storage", sqlite_url, "--gpus", "none", "--data-root", str(data)]
    assert main([*worker, "--study", "f"]) == 1
    failure = studies.study_status(storage, "f").failure
    assert failure is not None
    assert failure.reason.startswith("TaskError: task.target 'f5' looks continuous (300 distinct")
    assert "Classes with too few members" not in failure.reason
    assert len(failure.reason) <= MAX_REASON_CHARS


def test_a_long_reason_is_cut_where_it_is_stored_and_shown(
    storage_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = open_storage(storage_url)
    long = "ValueError: Classes with too few members are: [" + ", ".join(map(str, range(300)))
    assert len(long) > 1200
    for name in ("new", "old"):
        studies.create_study(storage, _spec(name, "digits"))
    fail_study(storage, storage.get_study_id_from_name("new"), reason=long, trial=0)
    # A failure stored before the cap (by an older worker) reads as short.
    old = {"reason": long, "trial": 0, "worker": None, "at": "2026-01-01T00:00:00+00:00"}
    storage.set_study_user_attr(storage.get_study_id_from_name("old"), studies.FAILED_ATTR, old)

    stored = optuna.load_study(study_name="new", storage=storage_url).user_attrs
    assert len(stored[studies.FAILED_ATTR]["reason"]) == MAX_REASON_CHARS  # the dashboard's
    for name in ("new", "old"):
        status = studies.study_status(storage, name)
        assert status.state == "failed" and status.failure is not None
        assert len(status.failure.reason) == MAX_REASON_CHARS
        assert status.failure.reason.endswith("…") and status.failure.reason.startswith(long[:50])
        assert status.done_reason is not None and len(status.done_reason) < 500
        capsys.readouterr()
        assert main(["status", name, "--storage", storage_url]) == 0
        out = capsys.readouterr().out
        assert "Classes with too few members" in out
        assert max(len(line) for line in out.splitlines()) < 500, out
