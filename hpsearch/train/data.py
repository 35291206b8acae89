"""Tabular datasets for the trainer: load, split into train/validation, encode and scale.

``digits`` is scikit-learn's bundled 8x8 digits (64 numeric features, 10 classes). Any other
dataset name is a path to a CSV file with a header row: the label is the column named
``target``, or the last column; non-numeric columns are categorical and are encoded as
integer codes for the model's embeddings. Loaded tables are cached in-process, so the trials a
worker runs one after another do not read the data again.
"""

from __future__ import annotations

import csv
import functools
import os
from dataclasses import dataclass

import numpy as np

from hpsearch.train.normalize import normalize_numeric
from hpsearch.train.splits import SPLIT_SEED, split_rows

__all__ = ["TabularSplit", "TabularData", "load_tabular", "SPLIT_SEED"]


@dataclass(frozen=True)
class TabularSplit:
    """One split: scaled numeric features, categorical codes (0 = unseen) and class labels."""

    x_num: np.ndarray  # float32, (rows, numeric columns)
    x_cat: np.ndarray  # int64, (rows, categorical columns)
    y: np.ndarray  # int64, (rows,)


@dataclass(frozen=True)
class TabularData:
    """A dataset ready to train on. Arrays are read-only: they are shared through the cache."""

    train: TabularSplit
    val: TabularSplit
    cardinalities: tuple[int, ...]  # per categorical column, counting the "unseen" code 0
    n_classes: int


@dataclass(frozen=True)
class _Table:
    x_num: np.ndarray  # float64, NaN where a value is missing
    x_cat: np.ndarray  # str (object), (rows, categorical columns)
    y: np.ndarray  # int64 class indices
    n_classes: int


@functools.lru_cache(maxsize=1)
def _digits() -> _Table:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return _Table(x.astype(np.float64), np.empty((len(x), 0), dtype=object), y.astype(np.int64), 10)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@functools.lru_cache(maxsize=4)
def _csv(path: str, mtime_ns: int) -> _Table:
    # mtime_ns is part of the cache key only: an edited file is read again.
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if len(rows) < 2:
        raise ValueError(f"dataset {path!r} needs a header row and at least one data row")
    header, body = rows[0], rows[1:]
    if any(len(r) != len(header) for r in body):
        raise ValueError(
            f"dataset {path!r}: every row must have {len(header)} fields like the header"
        )
    label_col = header.index("target") if "target" in header else len(header) - 1
    columns = list(zip(*body))
    numeric, categorical = [], []
    for i, col in enumerate(columns):
        if i == label_col:
            continue
        # A column is numeric when every non-empty value parses; empty cells become NaN.
        if all(v.strip() == "" or _is_number(v) for v in col) and any(v.strip() for v in col):
            numeric.append([float(v) if v.strip() else np.nan for v in col])
        else:
            categorical.append([v.strip() for v in col])
    if not numeric and not categorical:
        raise ValueError(f"dataset {path!r} has no feature columns besides the label")
    classes, y = np.unique(np.array([v.strip() for v in columns[label_col]]), return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"dataset {path!r}: the label column {header[label_col]!r} has one class")
    x_num = np.array(numeric, dtype=np.float64).T.reshape(len(body), len(numeric))
    x_cat = np.array(categorical, dtype=object).T.reshape(len(body), len(categorical))
    return _Table(x_num, x_cat, y.astype(np.int64), len(classes))


def _load_table(dataset: str) -> _Table:
    if dataset == "digits":
        return _digits()
    if not os.path.isfile(dataset):
        raise ValueError(
            f"unknown dataset {dataset!r}: use 'digits' or the path of a CSV file on this machine"
        )
    return _csv(dataset, os.stat(dataset).st_mtime_ns)


def _encode_categories(
    train: np.ndarray, val: np.ndarray
) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    # Codes come from the training rows only; a value first seen in validation maps to 0.
    codes_train = np.zeros(train.shape, dtype=np.int64)
    codes_val = np.zeros(val.shape, dtype=np.int64)
    cardinalities = []
    for j in range(train.shape[1]):
        vocab = {v: i + 1 for i, v in enumerate(sorted(set(train[:, j])))}
        codes_train[:, j] = [vocab[v] for v in train[:, j]]
        codes_val[:, j] = [vocab.get(v, 0) for v in val[:, j]]
        cardinalities.append(len(vocab) + 1)
    return codes_train, codes_val, tuple(cardinalities)


def _read_only(*arrays: np.ndarray) -> None:
    for a in arrays:
        a.flags.writeable = False


@functools.lru_cache(maxsize=16)
def _prepare(
    dataset: str, mtime_ns: int | None, val_fraction: float, normalization: str
) -> TabularData:
    # mtime_ns only keys the cache.
    table = _load_table(dataset)
    train_rows, val_rows = split_rows(
        table.y,
        val_fraction,
        stratify=True,
        what=f"cannot split dataset {dataset!r} with val_fraction={val_fraction}",
    )
    x_num_train, x_num_val = table.x_num[train_rows], table.x_num[val_rows]
    if np.isnan(x_num_train).any() or np.isnan(x_num_val).any():
        medians = np.nan_to_num(np.nanmedian(x_num_train, axis=0))
        x_num_train = np.where(np.isnan(x_num_train), medians, x_num_train)
        x_num_val = np.where(np.isnan(x_num_val), medians, x_num_val)
    x_num_train, x_num_val = normalize_numeric(x_num_train, x_num_val, normalization)
    x_cat_train, x_cat_val, cardinalities = _encode_categories(
        table.x_cat[train_rows], table.x_cat[val_rows]
    )
    train = TabularSplit(x_num_train, x_cat_train, table.y[train_rows])
    val = TabularSplit(x_num_val, x_cat_val, table.y[val_rows])
    _read_only(*vars(train).values(), *vars(val).values())
    return TabularData(train, val, cardinalities, table.n_classes)


def load_tabular(dataset: str, *, val_fraction: float, normalization: str) -> TabularData:
    """Load ``dataset`` (``digits`` or a CSV path), split it stratified by class with
    :data:`SPLIT_SEED`, encode categorical columns and scale numeric ones.

    Raises ``ValueError`` for an unknown dataset, an unreadable CSV, or a split that cannot be
    stratified (a class with too few rows).
    """
    key = None
    if dataset != "digits" and os.path.isfile(dataset):
        # An absolute path and the file's mtime key the cache: an edited CSV is prepared again.
        dataset = os.path.abspath(dataset)
        key = os.stat(dataset).st_mtime_ns
    return _prepare(dataset, key, val_fraction, normalization)
