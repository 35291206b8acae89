"""Tabular datasets for the trainer: load, split into train/validation, encode and scale.

``digits`` is scikit-learn's bundled 8x8 digits (64 numeric features, 10 classes) and
``diabetes`` its bundled regression table (10 numeric features, a disease-progression score).
Any other dataset name is a path to a CSV file with a header row, or a ``.parquet`` file (read
with pandas and pyarrow): the label is the column ``target`` names, else the column named
``target``, else the last column; non-numeric columns are categorical and are encoded as
integer codes for the model's embeddings. A regression target is standardized with the
training split's mean and standard deviation. Loaded tables are cached in-process, so the trials a
worker runs one after another do not read the data again.
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import functools
import os
from dataclasses import dataclass

import numpy as np

from hpsearch.errors import TaskError, WorkerSetupError
from hpsearch.train.tabular.normalize import normalize_numeric
from hpsearch.train.tabular.labels import continuous_label, continuous_label_error
from hpsearch.train.core.splits import SPLIT_SEED, split_rows

__all__ = ["SPLIT_SEED", "TabularData", "TabularSplit", "load_tabular"]


@dataclass(frozen=True)
class TabularSplit:
    """One split: scaled numeric features, categorical codes (0 = unseen) and the labels."""

    x_num: np.ndarray  # float32, (rows, numeric columns)
    x_cat: np.ndarray  # int64, (rows, categorical columns)
    y: np.ndarray  # int64 class indices, or float32 standardized regression targets; (rows,)


@dataclass(frozen=True)
class TabularData:
    """A dataset ready to train on. Arrays are read-only: they are shared through the cache."""

    train: TabularSplit
    val: TabularSplit
    cardinalities: tuple[int, ...]  # per categorical column, counting the "unseen" code 0
    n_classes: int  # 0 for a regression target
    y_mean: float = 0.0  # a regression target's training mean and standard deviation
    y_std: float = 1.0
    #: The validation rows as read, float64 (rows, numeric + categorical columns): numeric
    #: values unscaled (NaN where missing), then each categorical column's code.
    val_raw: np.ndarray | None = None
    feature_names: tuple[str, ...] = ()  # the columns of ``val_raw``
    #: Per categorical column, its training values in code order: code ``i`` is ``[i - 1]``.
    categories: tuple[tuple[str, ...], ...] = ()
    classes: tuple[str, ...] = ()  # the class names, in index order (empty for regression)


@dataclass(frozen=True)
class _Table:
    x_num: np.ndarray  # float64, NaN where a value is missing
    x_cat: np.ndarray  # str (object), (rows, categorical columns)
    y: np.ndarray  # int64 class indices, or float64 regression targets
    n_classes: int  # 0 for a regression target
    feature_names: tuple[str, ...] = ()  # the numeric columns', then the categorical ones'
    classes: tuple[str, ...] = ()  # class names in index order


@functools.lru_cache(maxsize=2)
def _bundled(name: str) -> _Table:
    from sklearn import datasets

    bunch = datasets.load_digits() if name == "digits" else datasets.load_diabetes()
    x = bunch.data.astype(np.float64)
    no_categories = np.empty((len(x), 0), dtype=object)
    names = tuple(bunch.feature_names)
    if name == "digits":
        classes = tuple(str(c) for c in range(10))
        return _Table(x, no_categories, bunch.target.astype(np.int64), 10, names, classes)
    return _Table(x, no_categories, bunch.target.astype(np.float64), 0, names)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_csv(path: str) -> tuple[list[str], list[tuple[str, ...]]]:
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except OSError as e:  # unreadable (permissions, a folder): the same on every trial
        raise TaskError(
            f"dataset {path!r} cannot be read on this worker ({e.strerror or type(e).__name__})"
        ) from None
    except (csv.Error, UnicodeDecodeError) as e:
        # Parse errors can quote the file's bytes: the message says where, never what.
        raise TaskError(
            f"dataset {path!r} is not a readable CSV file ({type(e).__name__}): save it as "
            "UTF-8 CSV with a header row"
        ) from None
    if len(rows) < 2:
        raise TaskError(f"dataset {path!r} needs a header row and at least one data row")
    header, body = rows[0], rows[1:]
    if any(len(r) != len(header) for r in body):
        raise TaskError(
            f"dataset {path!r}: every row must have {len(header)} fields like the header"
        )
    return header, list(zip(*body))


def _read_parquet(path: str) -> tuple[list[str], list[tuple[str, ...]]]:
    try:
        import pandas as pd
        import pyarrow  # noqa: F401  (pandas reads Parquet through it)
    except ImportError as e:  # this worker's environment, not the study: another may have them
        raise WorkerSetupError(
            f"dataset {path!r} is a Parquet file, which needs pandas and pyarrow on this "
            "worker: pip install pandas pyarrow (or convert it to CSV)"
        ) from e
    try:
        frame = pd.read_parquet(path)
    except Exception as e:  # noqa: BLE001 - pyarrow's errors vary; some quote the file's bytes
        raise TaskError(
            f"dataset {path!r} is not a readable Parquet file ({type(e).__name__})"
        ) from None
    if len(frame) < 1:
        raise TaskError(f"dataset {path!r} has no rows")
    # Cells go through text like a CSV's, so both formats are typed by the same rules;
    # missing values become empty cells.
    columns = [
        tuple("" if pd.isna(v) else str(v) for v in frame[c].tolist()) for c in frame.columns
    ]
    return [str(c) for c in frame.columns], columns


@functools.lru_cache(maxsize=4)
def _file(path: str, mtime_ns: int, target: str | None, regression: bool) -> _Table:
    # mtime_ns is part of the cache key only: an edited file is read again.
    is_parquet = path.lower().endswith((".parquet", ".pq"))
    header, columns = _read_parquet(path) if is_parquet else _read_csv(path)
    # Messages never quote the file (its header, its values): a trial's failure reason is
    # readable with any read token. They name only what the spec itself says.
    if target is not None:
        if target not in header:
            # The file is under the worker's data roots (checked before it was read): the one
            # closest column name may be named, never the header itself.
            close = difflib.get_close_matches(target, header, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise TaskError(
                f"task.target {target!r} is not a column of dataset {path!r} (it has "
                f"{len(header)} columns): set task.target to the exact name in its header "
                f"row{hint}"
            )
        label_col = header.index(target)
        label = f"task.target {target!r}"
    elif "target" in header:
        label_col, label = header.index("target"), "the label column 'target'"
    else:
        label_col, label = len(header) - 1, "the label column (the last one)"
    n_rows = len(columns[0]) if columns else 0
    numeric, categorical, numeric_names, categorical_names = [], [], [], []
    for i, col in enumerate(columns):
        if i == label_col:
            continue
        # A column is numeric when every non-empty value parses; empty cells become NaN.
        if all(v.strip() == "" or _is_number(v) for v in col) and any(v.strip() for v in col):
            numeric.append([float(v) if v.strip() else np.nan for v in col])
            numeric_names.append(header[i])
        else:
            categorical.append([v.strip() for v in col])
            categorical_names.append(header[i])
    names = tuple(numeric_names + categorical_names)
    if not numeric and not categorical:
        raise TaskError(f"dataset {path!r} has no feature columns besides the label")
    x_num = np.array(numeric, dtype=np.float64).T.reshape(n_rows, len(numeric))
    x_cat = np.array(categorical, dtype=object).T.reshape(n_rows, len(categorical))
    labels = [v.strip() for v in columns[label_col]]
    if regression:
        if not all(_is_number(v) for v in labels):
            raise TaskError(
                f"dataset {path!r}: {label} must be a number in every row for regression"
            )
        y = np.array([float(v) for v in labels], dtype=np.float64)
        if not np.isfinite(y).all():
            raise TaskError(f"dataset {path!r}: {label} has a value that is not finite")
        return _Table(x_num, x_cat, y, 0, feature_names=names)
    why = continuous_label(labels)
    if why is not None:  # a float feature as the label: hundreds of one-row classes
        raise TaskError(continuous_label_error(label, why))
    classes, codes = np.unique(np.array(labels), return_inverse=True)
    if len(classes) < 2:
        raise TaskError(f"dataset {path!r}: {label} has one class; it needs at least two")
    return _Table(
        x_num,
        x_cat,
        codes.astype(np.int64),
        len(classes),
        feature_names=names,
        classes=tuple(str(c) for c in classes),
    )


def _load_table(dataset: str, target: str | None, regression: bool) -> _Table:
    if dataset in ("digits", "diabetes"):
        if target is not None:
            raise TaskError(
                f"task.target applies to CSV and Parquet files; bundled {dataset!r} has its own"
            )
        if dataset == "diabetes" and not regression:
            raise TaskError(
                "dataset 'diabetes' has a numeric target: train it as tabular_regression"
            )
        table = _bundled(dataset)
        if regression and table.n_classes:
            return dataclasses.replace(table, y=table.y.astype(np.float64), n_classes=0, classes=())
        return table
    dataset = os.path.expanduser(dataset)  # as the workers' data-root check reads it
    if not os.path.isfile(dataset):
        bundled = "'diabetes'" if regression else "'digits'"
        what = "is a folder, not" if os.path.isdir(dataset) else "does not exist: name"
        raise TaskError(
            f"dataset {dataset!r} {what} a CSV or Parquet file on this worker's machine "
            f"(or use the bundled {bundled})"
        )
    return _file(dataset, os.stat(dataset).st_mtime_ns, target, regression)


def _encode_categories(
    train: np.ndarray, val: np.ndarray
) -> tuple[np.ndarray, np.ndarray, tuple[tuple[str, ...], ...]]:
    # Codes come from the training rows only; a value first seen in validation maps to 0.
    codes_train = np.zeros(train.shape, dtype=np.int64)
    codes_val = np.zeros(val.shape, dtype=np.int64)
    categories = []
    for j in range(train.shape[1]):
        values = tuple(sorted(set(train[:, j])))
        vocab = {v: i + 1 for i, v in enumerate(values)}
        codes_train[:, j] = [vocab[v] for v in train[:, j]]
        codes_val[:, j] = [vocab.get(v, 0) for v in val[:, j]]
        categories.append(values)
    return codes_train, codes_val, tuple(categories)


def _read_only(*arrays: np.ndarray) -> None:
    for a in arrays:
        a.flags.writeable = False


@functools.lru_cache(maxsize=16)
def _prepare(
    dataset: str,
    mtime_ns: int | None,
    val_fraction: float,
    normalization: str,
    target: str | None,
    regression: bool,
) -> TabularData:
    # mtime_ns only keys the cache.
    table = _load_table(dataset, target, regression)
    train_rows, val_rows = split_rows(
        table.y,
        val_fraction,
        stratify=not regression,
        what=f"cannot split dataset {dataset!r} with val_fraction={val_fraction}",
    )
    x_num_train, x_num_val = table.x_num[train_rows], table.x_num[val_rows]
    val_raw_num = x_num_val
    if np.isnan(x_num_train).any() or np.isnan(x_num_val).any():
        medians = np.nan_to_num(np.nanmedian(x_num_train, axis=0))
        x_num_train = np.where(np.isnan(x_num_train), medians, x_num_train)
        x_num_val = np.where(np.isnan(x_num_val), medians, x_num_val)
    x_num_train, x_num_val = normalize_numeric(x_num_train, x_num_val, normalization)
    x_cat_train, x_cat_val, categories = _encode_categories(
        table.x_cat[train_rows], table.x_cat[val_rows]
    )
    cardinalities = tuple(len(values) + 1 for values in categories)
    val_raw = np.concatenate([val_raw_num, x_cat_val.astype(np.float64)], axis=1)
    y_train, y_val = table.y[train_rows], table.y[val_rows]
    y_mean, y_std = 0.0, 1.0
    if regression:
        # Standardized on the training rows, so the loss scale (and Huber's delta) is the same
        # for every dataset and the metrics read in standard deviations of the target.
        y_mean = float(y_train.mean())
        y_std = float(y_train.std()) or 1.0
        y_train = ((y_train - y_mean) / y_std).astype(np.float32)
        y_val = ((y_val - y_mean) / y_std).astype(np.float32)
    train = TabularSplit(x_num_train, x_cat_train, y_train)
    val = TabularSplit(x_num_val, x_cat_val, y_val)
    _read_only(*vars(train).values(), *vars(val).values(), val_raw)
    return TabularData(
        train,
        val,
        cardinalities,
        table.n_classes,
        y_mean,
        y_std,
        val_raw=val_raw,
        feature_names=table.feature_names,
        categories=categories,
        classes=table.classes,
    )


def load_tabular(
    dataset: str,
    *,
    val_fraction: float,
    normalization: str,
    target: str | None = None,
    regression: bool = False,
) -> TabularData:
    """Load ``dataset`` (``digits``, ``diabetes``, or a CSV or Parquet path), split it with
    :data:`SPLIT_SEED` (stratified by class unless ``regression``), encode categorical columns
    and scale numeric ones; a ``regression`` target is standardized on the training split.

    ``target`` names the label column of a file (default: ``target``, else the last column).
    Raises ``ValueError`` for an unknown dataset or target column, an unreadable file (or a
    Parquet file without pandas and pyarrow), a non-numeric regression target, a
    classification label that looks continuous (:func:`~hpsearch.train.tabular.labels.continuous_label`),
    or a split that cannot be stratified (a class with too few rows).
    """
    key = None
    if dataset not in ("digits", "diabetes") and os.path.isfile(dataset):
        # An absolute path and the file's mtime key the cache: an edited file is prepared again.
        dataset = os.path.abspath(dataset)
        key = os.stat(dataset).st_mtime_ns
    return _prepare(dataset, key, val_fraction, normalization, target, regression)
