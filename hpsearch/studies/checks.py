"""Checks of a study's task made before any worker reads it, so a mistake costs no trial.

- :func:`check_bundled_task` (the service, at submit and on every change): a bundled dataset's
  name, the family it is bundled for, and a ``task.target`` given for one. It reads no file.
- :func:`check_local_task` (``hpsearch submit`` and ``hpsearch extend``, on the user's own
  machine, with the user's own rights): that a dataset path exists here, that ``task.target`` is a column of a local
  CSV or Parquet file, and that a classification label does not look continuous. The file is
  the user's, so its column names may be suggested.

What a worker finds when it reads the data (a column that is not there, a missing file) it
reports itself, and fails the study at the first trial (:mod:`hpsearch.worker`). A file outside
that worker's data roots is the worker's mistake, not the study's: the worker stops serving the
study, and :func:`dataset_folder` names the ``--data-root`` it needs.
"""

from __future__ import annotations

import csv
import difflib
import os
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hpsearch.data_roots import bundled_for
from hpsearch.errors import SpecError, UsageError
from hpsearch.families import BUNDLED_DATASETS, TASK_FAMILIES, USER_OBJECTIVE_FAMILY, TaskSpec

__all__ = [
    "check_bundled_task",
    "check_local_task",
    "dataset_folder",
    "did_you_mean",
    "looks_like_a_name",
]


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """``"; did you mean 'x'?"`` for the one choice closest to ``word``, or ``""`` for none."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def looks_like_a_name(dataset: str) -> bool:
    """Whether ``dataset`` reads as a bundled dataset's name rather than a path: no folder
    separator, no file extension, no ``~``."""
    return not any(c in dataset for c in "/\\.~")


def _families_of(dataset: str) -> list[str]:
    return [f for f in TASK_FAMILIES if dataset in bundled_for(f)]


def check_bundled_task(task: TaskSpec, family: str) -> None:
    """Refuse (:class:`SpecError`, one line) what no worker could train for ``family``.

    A bundled dataset given a ``task.target`` (its label is built in); ``diabetes`` (a numeric
    target) for classification; a bundled name of another family; a name that is not bundled
    but close to one that is (``digts``). Any other name is a path on the workers' machines,
    which only a worker can check. Families without a built-in trainer are not checked.
    """
    if family not in TASK_FAMILIES:
        return  # your own function (--objective) reads whatever it reads
    dataset = task.dataset
    bundled = bundled_for(family)
    if dataset in bundled:
        if task.target is not None:
            raise SpecError(
                f"task.target {task.target!r} names a column of a CSV or Parquet file, but "
                f"bundled dataset {dataset!r} has its own label: leave task.target out"
            )
        if dataset == "diabetes" and family != "tabular_regression":
            raise SpecError(
                f"bundled dataset 'diabetes' has a numeric target, which {family} cannot "
                "train: use a regression space (space: tabular_regression)"
            )
        return
    if not looks_like_a_name(dataset):
        return
    if dataset in BUNDLED_DATASETS:
        raise SpecError(
            f"task.dataset {dataset!r} is bundled for {', '.join(_families_of(dataset))}, not "
            f"for {family}: use {' or '.join(map(repr, bundled))}, or a path to your own data"
        )
    hint = did_you_mean(dataset.lower(), bundled)
    if hint:
        raise SpecError(
            f"task.dataset {dataset!r} is not a dataset bundled for {family} "
            f"({', '.join(bundled)}){hint} A file or folder of your own is named by its path "
            f"on the workers' machines, e.g. ./{dataset}.csv"
        )


def _header(path: Path) -> list[str] | None:
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            import pyarrow.parquet as pq
        except ImportError:
            return None  # the worker says what it needs
        try:
            return [str(c) for c in pq.read_schema(path).names]
        except Exception:  # noqa: BLE001 - the worker reports an unreadable file itself
            return None
    try:
        with open(path, newline="") as f:
            return next(csv.reader(f), None)
    except (OSError, UnicodeDecodeError, csv.Error):
        return None


def check_local_task(spec: dict[str, Any]) -> None:
    """Check a spec's dataset on this machine before it is sent (``hpsearch submit``).

    Raises :class:`UsageError` when ``task.dataset`` is a path that does not exist here, when
    ``task.target`` is not a column of a local CSV or Parquet file (naming the closest column),
    and when a classification study's label column looks continuous in the first
    :data:`SNIFF_ROWS` rows of a local CSV (a float feature taken as the label).
    Bundled names and specs for your own function pass. Data that is on the workers' machines
    only skips this check (``hpsearch submit --remote-data``).
    """
    task = spec.get("task")
    if not isinstance(task, dict) or task.get("family") == USER_OBJECTIVE_FAMILY:
        return
    dataset = task.get("dataset")
    if not isinstance(dataset, str) or not dataset or dataset in BUNDLED_DATASETS:
        return
    if looks_like_a_name(dataset) and not os.path.exists(dataset):
        return  # the service checks names (a typo of a bundled one)
    path = Path(dataset).expanduser()
    if not path.exists():
        raise UsageError(
            f"task.dataset {dataset!r} does not exist on this machine: fix the path, or pass "
            "--remote-data if it exists only on the workers' machines"
        )
    target = task.get("target")
    if not path.is_file():
        return
    if isinstance(target, str):
        header = _header(path)
        if header is not None and target not in header:
            raise UsageError(
                f"task.target {target!r} is not a column of {dataset!r} (it has {len(header)} "
                "columns): set task.target to the exact name in its header row"
                f"{did_you_mean(target, header)}"
            )
    if _family(spec) == "tabular_classification" and path.suffix.lower() not in (
        ".parquet",
        ".pq",
    ):
        _check_csv_label(path, dataset, target if isinstance(target, str) else None)


#: The rows of a local CSV that :func:`check_local_task` reads to judge its label column.
SNIFF_ROWS = 5000


def _family(spec: dict[str, Any]) -> str | None:
    """The task family ``spec`` trains: ``task.family``, else its space's ``task``; None
    without a space (a change to a study's task, which names neither)."""
    task = spec.get("task") or {}
    if isinstance(task.get("family"), str):
        return str(task["family"])
    space = spec.get("space")
    if isinstance(space, dict):
        family = space.get("task")
        return family if isinstance(family, str) else None
    if not isinstance(space, str):
        return None
    from hpsearch.spaces import load_space

    try:
        return load_space(space).task
    except Exception:  # noqa: BLE001 - the service says what is wrong with the space
        return None


def _check_csv_label(path: Path, dataset: str, target: str | None) -> None:
    """Refuse a classification label column that looks continuous in the file's first rows."""
    from hpsearch.train.tabular.labels import continuous_label, continuous_label_error

    try:
        with open(path, newline="") as f:
            reader = csv.reader(f)
            header = next(reader, [])
            rows = [row for _, row in zip(range(SNIFF_ROWS + 1), reader, strict=False)]
    except (OSError, UnicodeDecodeError, csv.Error):
        return  # the worker reports an unreadable file itself
    if not header or (target is not None and target not in header):
        return
    if target is not None:
        column, label = header.index(target), f"task.target {target!r}"
    elif "target" in header:
        column, label = header.index("target"), "the label column 'target'"
    else:
        column = len(header) - 1
        label = f"the label column {header[-1]!r} (the last one; task.target is not set)"
    complete = len(rows) <= SNIFF_ROWS
    values = [row[column].strip() for row in rows[:SNIFF_ROWS] if len(row) > column]
    why = continuous_label(values, complete=complete)
    if why is not None:
        raise UsageError(f"task.dataset {dataset!r}: {continuous_label_error(label, why)}")


def dataset_folder(task: dict[str, Any]) -> str | None:
    """The folder a worker needs as ``--data-root`` for ``task``'s dataset (shell-quoted, made
    absolute from here), or ``None`` for a bundled dataset or your own function's task."""
    dataset = task.get("dataset")
    if task.get("family") == USER_OBJECTIVE_FAMILY or not isinstance(dataset, str) or not dataset:
        return None
    if dataset in bundled_for(task.get("family")) or (
        looks_like_a_name(dataset) and not os.path.exists(dataset)
    ):
        return None
    path = Path(dataset).expanduser().absolute()
    return shlex.quote(str(path if path.is_dir() else path.parent))
