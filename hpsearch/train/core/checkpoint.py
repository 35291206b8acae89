"""Resumable runs: the training state after a run's last finished epoch, in one file.

:func:`hpsearch.train.train` takes a ``checkpoint`` path; the epoch loop
(:func:`hpsearch.train.core.loop.run_epochs`) saves the state there after every epoch and, when a
retried trial finds the file, continues from the epoch after the saved one. The file holds
tensors and plain Python values only, so it loads with ``torch.load(..., weights_only=True)``.
A file that cannot be read, or that another run wrote (a different config, task, metric or
seed: see :func:`run_fingerprint`), is ignored with a logged warning and the run starts over.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hpsearch.families import TaskSpec

__all__ = ["Checkpoint", "capture_rng", "restore_rng", "run_fingerprint"]

logger = logging.getLogger(__name__)

#: Bumped when the layout of the saved state changes: older files are then ignored.
FORMAT = 1

#: What every checkpoint holds beside the format and fingerprint (checked before resuming).
_REQUIRED = {
    "epoch": int,
    "num_updates": int,
    "metrics": dict,
    "model": Mapping,
    "optimizer": dict,
    "schedule": dict,
    "generator": torch.Tensor,
    "rng": dict,
}


def run_fingerprint(
    *, config: Mapping[str, Any], task: TaskSpec, metric: str, seed: int | None
) -> str:
    """A digest of what decides a run's course: a checkpoint resumes only the run it was made
    by (same config, task, metric and seed, and the same checkpoint :data:`FORMAT`)."""
    payload = {
        "format": FORMAT,
        "config": dict(config),
        "task": task.model_dump(mode="json"),
        "metric": metric,
        "seed": seed,
    }
    text = json.dumps(payload, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


class Checkpoint:
    """The checkpoint file of one run, at ``path``, tagged with the run's ``fingerprint``.

    :meth:`load` reads the file once (later calls return the same answer) and returns the
    saved state only when it belongs to this run and fits its model; :meth:`save` replaces the
    file atomically, creating its folder. The file is never deleted here: the caller decides.
    """

    def __init__(self, path: str | os.PathLike[str], *, fingerprint: str) -> None:
        self.path = Path(path)
        self.fingerprint = fingerprint
        self._loaded = False
        self._state: dict[str, Any] | None = None

    @classmethod
    def for_run(
        cls,
        path: str | os.PathLike[str],
        *,
        config: Mapping[str, Any],
        task: TaskSpec,
        metric: str,
        seed: int | None,
    ) -> Checkpoint:
        """The checkpoint at ``path`` of the run :func:`run_fingerprint` describes."""
        fingerprint = run_fingerprint(config=config, task=task, metric=metric, seed=seed)
        return cls(path, fingerprint=fingerprint)

    @property
    def resumed_metrics(self) -> dict[str, float] | None:
        """The metrics of the saved epoch when :meth:`load` found a state to resume, else None."""
        return None if self._state is None else dict(self._state["metrics"])

    def load(self, model: nn.Module) -> dict[str, Any] | None:
        """The saved state to resume ``model``'s run from, or None to start from scratch.

        None when the file does not exist; also (with a logged warning) when it cannot be read,
        was written by another run, or its weights do not fit ``model``. Never raises.
        """
        if not self._loaded:
            self._loaded = True
            self._state = self._read(model)
        return self._state

    def save(self, state: Mapping[str, Any]) -> None:
        """Write ``state`` (tensors and plain values) to the file, replacing it atomically.

        A run is not stopped by a checkpoint it cannot write: the error is logged as a warning
        and training goes on (a retry then starts from the last checkpoint that was written).
        """
        payload = {"format": FORMAT, "fingerprint": self.fingerprint, **state}
        tmp: str | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # A temp file in the same folder, then a rename: a reader (or a kill mid-write)
            # sees the old checkpoint or the new one, never half of one.
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
            with os.fdopen(fd, "wb") as f:
                torch.save(payload, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            tmp = None
        except OSError as e:
            logger.warning("could not write checkpoint %s: %s; training goes on", self.path, e)
        finally:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)

    def _read(self, model: nn.Module) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unreadable file means start over
            self._ignore(f"it cannot be read ({type(e).__name__}: {e})")
            return None
        problem = _problem(state, self.fingerprint, model)
        if problem is not None:
            self._ignore(problem)
            return None
        logger.info("resuming from checkpoint %s after epoch %d", self.path, state["epoch"])
        return state

    def _ignore(self, why: str) -> None:
        logger.warning(
            "ignoring checkpoint %s: %s; training starts from epoch 1 and will overwrite it",
            self.path,
            why,
        )


def _problem(state: Any, fingerprint: str, model: nn.Module) -> str | None:
    """Why ``state`` cannot resume this run, or None when it can."""
    if not isinstance(state, dict):
        return f"it holds a {type(state).__name__}, not a checkpoint"
    if state.get("format") != FORMAT:
        return f"its format is {state.get('format')!r}, this trainer writes {FORMAT}"
    if state.get("fingerprint") != fingerprint:
        return "it was written by a run with another config, task, metric or seed"
    for key, kind in _REQUIRED.items():
        if not isinstance(state.get(key), kind):
            return f"its {key!r} is missing or not a {kind.__name__}"
    if state["epoch"] < 1:
        return f"its epoch is {state['epoch']}"
    if not {"python", "numpy", "torch"} <= state["rng"].keys():
        return "its random states are incomplete"
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    saved = {
        k: tuple(v.shape) if isinstance(v, torch.Tensor) else None
        for k, v in state["model"].items()
    }
    if saved != expected:
        return "its model weights do not fit this run's model"
    return None


def capture_rng(device: torch.device) -> dict[str, Any]:
    """The global random states a training step may draw from: Python's, NumPy's (timm's Mixup
    uses it), torch's CPU one and, on CUDA, ``device``'s."""
    legacy = np.random.get_state()
    assert isinstance(legacy, tuple)  # the global RandomState is an MT19937: a tuple, not a dict
    kind, keys, pos, has_gauss, cached = legacy
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: Mapping[str, Any], device: torch.device) -> None:
    """Set the global random states :func:`capture_rng` captured (the CUDA one only when it
    was captured on CUDA and this run is on CUDA too)."""
    random.setstate(_as_tuple(state["python"]))
    npy = state["numpy"]
    keys = npy["keys"].numpy().astype(np.uint32)
    np.random.set_state((npy["kind"], keys, npy["pos"], npy["has_gauss"], npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _as_tuple(value: Any) -> Any:
    # random.setstate wants tuples all the way down.
    return tuple(_as_tuple(v) for v in value) if isinstance(value, list | tuple) else value
