"""What a trained model predicts on the validation split: the input to error analysis.

The trainer fills a :class:`ValPredictions` from the final weights when asked
(``train(..., predictions=callback)``); the worker keeps it as an Optuna artifact of the trial
(:mod:`hpsearch.analysis.artifacts`), and :mod:`hpsearch.analysis.report` builds the report from it later,
in any process, without the weights or the data. It is saved as one ``.npz`` file (no pickle).
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

__all__ = ["WORST_KEPT", "ValPredictions"]

#: How many of the highest-loss validation examples keep their inputs (images, rows, files).
WORST_KEPT = 32


@dataclass
class ValPredictions:
    """Per-example outputs of the final model on the validation split, in the split's order.

    ``kind`` is ``classification`` (``y_true``/``y_pred`` class indices, ``probs`` the softmax
    per class, ``loss`` plain cross-entropy per example) or ``regression`` (``y_true``/``y_pred``
    in the target's own units, ``loss`` the squared error). ``worst`` holds the indices (into the
    split) of the up to :data:`WORST_KEPT` highest-loss examples, highest first, and the inputs
    of exactly those, whichever fits the family: ``worst_images`` (K, H, W, C) uint8,
    ``worst_rows`` (K, F) with ``feature_names``, or ``worst_files`` (audio file names).
    """

    kind: Literal["classification", "regression"]
    family: str
    y_true: np.ndarray
    y_pred: np.ndarray
    loss: np.ndarray
    worst: np.ndarray
    probs: np.ndarray | None = None
    class_names: list[str] | None = None
    worst_images: np.ndarray | None = None
    worst_rows: np.ndarray | None = None
    feature_names: list[str] | None = None
    worst_files: list[str] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    _ARRAYS = ("y_true", "y_pred", "loss", "worst", "probs", "worst_images", "worst_rows")
    _LISTS = ("class_names", "feature_names", "worst_files")

    def to_bytes(self) -> bytes:
        """The ``.npz`` file's bytes (arrays plus one JSON header; loadable without pickle)."""
        header = {"kind": self.kind, "family": self.family, "meta": self.meta}
        header.update({name: getattr(self, name) for name in self._LISTS})
        arrays = {n: getattr(self, n) for n in self._ARRAYS if getattr(self, n) is not None}
        buf = io.BytesIO()
        np.savez_compressed(buf, header=np.array(json.dumps(header)), **arrays)
        return buf.getvalue()

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the ``.npz`` file at ``path``."""
        with open(path, "wb") as f:
            f.write(self.to_bytes())

    @classmethod
    def load(cls, source: str | os.PathLike[str] | io.BufferedIOBase | bytes) -> ValPredictions:
        """Read a file written by :meth:`save` (a path, an open binary file, or its bytes)."""
        if isinstance(source, bytes):
            source = io.BytesIO(source)
        with np.load(source, allow_pickle=False) as npz:
            header = json.loads(str(npz["header"]))
            arrays = {n: npz[n] for n in cls._ARRAYS if n in npz.files}
        return cls(
            kind=header["kind"],
            family=header["family"],
            meta=header.get("meta") or {},
            **{n: header.get(n) for n in cls._LISTS},
            **arrays,
        )

    @staticmethod
    def worst_indices(loss: np.ndarray, k: int = WORST_KEPT) -> np.ndarray:
        """The indices of the ``k`` largest losses, largest first (ties: lower index first)."""
        order = np.lexsort((np.arange(len(loss)), -np.asarray(loss, dtype=np.float64)))
        return order[:k].astype(np.int64)
