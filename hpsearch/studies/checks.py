"""Checks of a study's task made before any worker reads it, so a mistake costs no trial.

- :func:`check_bundled_task` (the service, at submit and on every change): a bundled dataset's
  name, the family it is bundled for, and a ``task.target`` given for one. It reads no file.
- :func:`check_local_task` (``hpsearch submit``, on the user's own machine, with the user's own
  rights): that a dataset path exists here, and that ``task.target`` is a column of a local
  CSV or Parquet file. The file is the user's, so its column names may be suggested.

What a worker finds when it reads the data (a file outside its data roots, a column that is not
there) it reports itself, and fails the study at the first trial (:mod:`hpsearch.worker`).
"""

from __future__ import annotations

import csv
import difflib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hpsearch.data_roots import bundled_for
from hpsearch.errors import SpecError, UsageError
from hpsearch.families import BUNDLED_DATASETS, TASK_FAMILIES, USER_OBJECTIVE_FAMILY, TaskSpec

__all__ = ["check_bundled_task", "check_local_task", "did_you_mean", "looks_like_a_name"]


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

    Raises :class:`UsageError` when ``task.dataset`` is a path that does not exist here, and when
    ``task.target`` is not a column of a local CSV or Parquet file (naming the closest column).
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
    if not isinstance(target, str) or not path.is_file():
        return
    header = _header(path)
    if header is not None and target not in header:
        raise UsageError(
            f"task.target {target!r} is not a column of {dataset!r} (it has {len(header)} "
            "columns): set task.target to the exact name in its header row"
            f"{did_you_mean(target, header)}"
        )
