"""A continuous column taken as a classification label is refused in one line (issue 16).

A float feature as the label (the last column by default, or a wrong ``task.target``) used to
become ~300 classes and fail the stratified split with scikit-learn's message listing every
class number (a 1,200-character fail reason). The loader now says the column looks continuous
and what to do, before any split.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest

from hpsearch.errors import TaskError
from hpsearch.train.tabular.data import TabularData, load_tabular
from hpsearch.train.tabular.labels import continuous_label


def _table(path: Path, *, rows: int = 300) -> Path:
    """`label` (3 classes) first, then features; the last column `f5` is a float."""
    rng = random.Random(0)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["label", "f1", "f2", "count", "f5"])
        for i in range(rows):
            w.writerow(
                [i % 3, f"{rng.random():.4f}", f"{rng.random():.4f}", i, f"{rng.random():.4f}"]
            )
    return path


def _load(path: Path, *, target: str | None = None, regression: bool = False) -> TabularData:
    return load_tabular(
        str(path), val_fraction=0.2, normalization="standard", target=target, regression=regression
    )


@pytest.mark.parametrize(
    "target, named, why",
    [
        (None, "the label column (the last one)", "distinct values, not whole numbers"),
        ("f5", "task.target 'f5'", "distinct values, not whole numbers"),
        ("count", "task.target 'count'", "300 distinct whole numbers, 300 of them in one row"),
    ],
)
def test_a_continuous_label_is_refused_in_one_line(
    tmp_path: Path, target: str | None, named: str, why: str
) -> None:
    path = _table(tmp_path / "mine.csv")
    with pytest.raises(TaskError) as e:
        _load(path, target=target)
    message = str(e.value)
    assert message.startswith(f"{named} looks continuous (") and why in message, message
    assert "tabular_regression" in message and "--target" in message
    assert "\n" not in message and len(message) < 300
    assert "Classes with too few members" not in message


def test_the_right_label_and_regression_still_load(tmp_path: Path) -> None:
    path = _table(tmp_path / "mine.csv")
    data = _load(path, target="label")
    assert data.n_classes == 3
    assert _load(path, target="f5", regression=True).n_classes == 0


def test_what_counts_as_continuous() -> None:
    assert continuous_label(["0.5", "1.5", "2.5"]) is not None  # fractional, one row each
    assert continuous_label(["0.5", "0.5", "1.5", "1.5"]) is None  # few fractional classes
    assert continuous_label([str(i % 3) for i in range(30)]) is None  # integer classes
    assert continuous_label(["1", "1", "2"]) is None  # few classes; one row is the split's to say
    assert continuous_label(["cat", "dog"] * 30) is None  # text labels
    # The first rows only (hpsearch submit): a value seen once may recur further down.
    many_ints = [str(i) for i in range(50)]
    assert continuous_label(many_ints) is not None
    assert continuous_label(many_ints, complete=False) is None
    assert continuous_label([f"{i / 7:.3f}" for i in range(50)], complete=False) is not None
