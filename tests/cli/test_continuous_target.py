"""A float column as a classification label, caught by `try` and `submit` (issue 16).

A newcomer's `hpsearch try tabular --dataset mine.csv` (no --target; the last column `f5` is
a float feature) trained and then failed with scikit-learn's "cannot split dataset ...
Classes with too few members are: [0, 1, 2, ... 297]". `try` now says in one line that the
column looks continuous; `hpsearch submit` says so before sending, naming the column (the file
is the user's own).
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest

from hpsearch.cli import main


@pytest.fixture
def mine_csv(tmp_path: Path) -> Path:
    """300 rows: the label `label` first, the float feature `f5` last."""
    rng = random.Random(0)
    path = tmp_path / "mine.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["label", "f1", "f2", "f5"])
        for i in range(300):
            w.writerow([i % 3, *(f"{rng.random():.6f}" for _ in range(3))])
    return path


def test_try_says_the_last_column_looks_continuous(
    mine_csv: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HPSEARCH_CPU_AMP", "0")
    assert main(["try", "tabular", "--dataset", str(mine_csv), "--epochs", "1"]) == 1
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert "the label column (the last one) looks continuous" in out, out
    assert "tabular_regression" in out and "--target" in out
    assert "Classes with too few members" not in out and "Traceback" not in out
    (line,) = [ln for ln in out.splitlines() if "looks continuous" in ln]
    assert len(line) < 400, line


def test_submit_refuses_a_continuous_label_before_sending(
    mine_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], free_port: int
) -> None:
    spec_file = tmp_path / "study.yaml"
    server = f"http://127.0.0.1:{free_port}"  # nothing listens: the check comes first
    for target, named in [
        ("f5", "task.target 'f5' looks continuous"),
        (None, "the label column 'f5' (the last one; task.target is not set) looks continuous"),
    ]:
        task = {"dataset": str(mine_csv), "epochs": 1, **({"target": target} if target else {})}
        spec_file.write_text(f"space: tabular\ntask: {task}\nbudget: {{trials: 2}}\n")
        assert main(["submit", str(spec_file), "--server", server]) == 1
        err = capsys.readouterr().err
        (line,) = [ln for ln in err.splitlines() if "error:" in ln]
        assert named in line and "(300 distinct values, not whole numbers)" in line, line
        assert "space: tabular_regression" in line and "Traceback" not in err
    # The right column passes the check (and then finds no server, which is another error).
    task = {"dataset": str(mine_csv), "epochs": 1, "target": "label"}
    spec_file.write_text(f"space: tabular\ntask: {task}\nbudget: {{trials: 2}}\n")
    assert main(["submit", str(spec_file), "--server", server]) == 1
    err = capsys.readouterr().err
    assert "looks continuous" not in err and f"no hpsearch service answers at {server}" in err, err
    # A regression study of the same column is what the message suggests: not refused here.
    task = {"dataset": str(mine_csv), "epochs": 1, "target": "f5"}
    spec_file.write_text(f"space: tabular_regression\ntask: {task}\nbudget: {{trials: 2}}\n")
    assert main(["submit", str(spec_file), "--server", server]) == 1
    err = capsys.readouterr().err
    assert "looks continuous" not in err and f"no hpsearch service answers at {server}" in err, err
