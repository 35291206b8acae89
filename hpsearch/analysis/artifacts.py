"""Where trial artifacts live, which are kept, and reading a trial's kept files back.

Workers keep each complete trial's :class:`~hpsearch.analysis.predictions.ValPredictions` as an
Optuna artifact of the trial (``predictions.npz``), so that an error-analysis report can be
built later by any process that reaches the study database and the store
(:mod:`hpsearch.analysis.report`), and optuna-dashboard lists it in the trial's artifact view.
Beside it, the final model's weights (``model.safetensors``), which ``hpsearch export`` hands
over (:mod:`hpsearch.analysis.export_model`).

- The store: ``$HPSEARCH_ARTIFACTS`` / ``--artifacts``: a directory (Optuna's
  ``FileSystemArtifactStore``), ``s3://bucket/prefix`` (``Boto3ArtifactStore``; needs boto3),
  or ``off``. Unset: for a SQLite study database the folder ``hpsearch-artifacts`` beside the
  database file; for PostgreSQL (many machines, no shared folder to assume) reports are off.
- Keeping: ``$HPSEARCH_KEEP_ARTIFACTS`` / ``--keep-artifacts``: ``best:N`` (default ``best:3``)
  or ``all``. After each trial the worker removes the predictions and weights of complete
  trials outside the best N (:func:`trials_to_keep`), and of pruned or failed ones, from the
  store and from the trial's attributes.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import re
import threading
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
import optuna
import sqlalchemy
from optuna.artifacts import ArtifactMeta, FileSystemArtifactStore
from optuna.artifacts.exceptions import ArtifactNotFound as OptunaArtifactNotFound
from optuna.study import StudyDirection
from optuna.study._multi_objective import _fast_non_domination_rank
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from hpsearch.errors import (
    ArtifactNotFound,
    ArtifactStoreUnavailable,
    StudyNotFound,
    TrialNotFound,
    UsageError,
)
from hpsearch.db.incremental import rank_key
from hpsearch.db.storage import is_in_memory, mark_trials_edited, resolve_storage_url, study_lock
from hpsearch.settings import get_settings
from hpsearch.studies import best_trial_id
from hpsearch.analysis.predictions import ValPredictions  # numpy only: no torch for the service

if TYPE_CHECKING:
    from optuna.artifacts._protocol import ArtifactStore as OptunaArtifactStore

__all__ = [
    "ARTIFACTS_DIRNAME",
    "DEFAULT_KEEP",
    "KEPT_FILES",
    "PREDICTIONS_FILE",
    "REMOVED_ATTR",
    "WEIGHTS_FILE",
    "ArtifactStore",
    "KeepPolicy",
    "default_location",
    "is_artifact_id",
    "keep_best_predictions",
    "open_artifact_store",
    "parse_keep",
    "predictions_for",
    "trials_to_keep",
    "upload_predictions",
    "upload_weights",
    "weights_for",
]

log = logging.getLogger("hpsearch.analysis.artifacts")

#: The file name of a trial's kept predictions (what tells hpsearch's artifacts from others).
PREDICTIONS_FILE = "predictions.npz"
#: The file name of a trial's kept final weights (safetensors).
WEIGHTS_FILE = "model.safetensors"
#: The files workers keep per trial, under one keep policy (``--keep-artifacts``).
KEPT_FILES = (PREDICTIONS_FILE, WEIGHTS_FILE)
#: The folder beside a SQLite study database that holds its artifacts by default.
ARTIFACTS_DIRNAME = "hpsearch-artifacts"
#: What is kept when neither ``--keep-artifacts`` nor ``$HPSEARCH_KEEP_ARTIFACTS`` says.
DEFAULT_KEEP = "best:3"
#: Trial system attribute left when a trial's predictions and weights are removed: why (for
#: messages).
REMOVED_ATTR = "hpsearch:predictions_removed"
_PREFIX = "artifacts:"  # Optuna's key prefix of a trial's artifact rows (optuna.artifacts)
_ARTIFACT_ID_RE = re.compile(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")
_HOW_TO_TURN_ON = (
    "set HPSEARCH_ARTIFACTS (or --artifacts) to a directory every worker and reader can reach, "
    "or to s3://bucket/prefix"
)


def is_artifact_id(artifact_id: str) -> bool:
    """Whether ``artifact_id`` has the form Optuna and hpsearch give artifact ids (a UUID)."""
    return _ARTIFACT_ID_RE.fullmatch(artifact_id) is not None


def _checked_id(artifact_id: str) -> str:
    # Ids come back from the study database, which more than hpsearch can write (the dashboard,
    # Optuna itself): only the form Optuna and hpsearch give them (a UUID) becomes a file name.
    if not is_artifact_id(artifact_id):
        raise ValueError(
            f"artifact id {artifact_id[:80]!r} is not a UUID: the artifact store only holds "
            "files named by the ids Optuna and hpsearch create"
        )
    return artifact_id


class ArtifactStore:
    """An Optuna artifact store (directory or S3) that knows where it is, for messages.

    It implements Optuna's ``ArtifactStore`` protocol (``open_reader``, ``write``, ``remove``),
    so it can be given to ``optuna.artifacts`` and to ``optuna_dashboard.wsgi``. Artifact ids
    must be UUIDs (what Optuna and hpsearch create; never a study's name): any other id, such as
    ``../x``, raises ``ValueError`` before the store is touched.
    """

    def __init__(self, inner: OptunaArtifactStore, *, location: str) -> None:
        self._inner = inner
        self.location = location

    def open_reader(self, artifact_id: str) -> BinaryIO:
        return self._inner.open_reader(_checked_id(artifact_id))

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        self._inner.write(_checked_id(artifact_id), content_body)

    def remove(self, artifact_id: str) -> None:
        self._inner.remove(_checked_id(artifact_id))

    def __repr__(self) -> str:
        return f"ArtifactStore({self.location!r})"


class _PrefixedStore:
    """Keys under a prefix of an S3 bucket (``s3://bucket/prefix``)."""

    def __init__(self, inner: OptunaArtifactStore, prefix: str) -> None:
        self._inner = inner
        self._prefix = prefix

    def open_reader(self, artifact_id: str) -> BinaryIO:
        return self._inner.open_reader(self._prefix + artifact_id)

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        self._inner.write(self._prefix + artifact_id, content_body)

    def remove(self, artifact_id: str) -> None:
        self._inner.remove(self._prefix + artifact_id)


def default_location(storage_url: str | None = None) -> str | None:
    """The store used when none is set: beside a SQLite file, none for PostgreSQL or memory."""
    url = make_url(resolve_storage_url(storage_url))
    if url.get_backend_name() != "sqlite" or not url.database or is_in_memory(url):
        return None
    return str(Path(url.database).resolve().parent / ARTIFACTS_DIRNAME)


def open_artifact_store(
    location: str | None = None, *, storage_url: str | None = None, create: bool = False
) -> ArtifactStore | None:
    """The artifact store at ``location`` (else ``$HPSEARCH_ARTIFACTS``, else the default).

    ``None`` when reports are off: ``off``/``none`` was given, or nothing was given and the
    study database is not a SQLite file. ``create`` makes a directory store's folder (workers
    pass it; readers do not create folders). Raises :class:`UsageError` for an S3 location
    without boto3 installed or a malformed one.
    """
    raw = location if location is not None else get_settings().artifacts
    raw = (raw or "").strip()
    if raw.lower() in ("off", "none"):
        return None
    resolved = raw or default_location(storage_url)
    if resolved is None:
        return None
    return _open_store(resolved, create)


@functools.cache
def _open_store(location: str, create: bool) -> ArtifactStore:
    if location.startswith("s3://"):
        bucket, _, prefix = location[len("s3://") :].partition("/")
        if not bucket:
            raise UsageError(f"artifact store {location!r}: name a bucket, s3://bucket/prefix")
        try:
            import boto3  # noqa: F401 - only checks that it is installed
        except ImportError:
            raise UsageError(
                f"artifact store {location!r} needs boto3: pip install boto3 (it reads the usual "
                "AWS_* variables; set AWS_ENDPOINT_URL for an S3-compatible store)"
            ) from None
        from optuna.artifacts import Boto3ArtifactStore

        inner: OptunaArtifactStore = Boto3ArtifactStore(bucket)
        if prefix:
            inner = _PrefixedStore(inner, prefix.rstrip("/") + "/")
        return ArtifactStore(inner, location=location)
    path = Path(location).expanduser()
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"cannot create the artifact folder {str(path)!r}: {e}") from e
    return ArtifactStore(FileSystemArtifactStore(path), location=str(path))


@dataclass(frozen=True)
class KeepPolicy:
    """Which trials keep their predictions: the ``best`` N complete ones, or all (``None``)."""

    best: int | None

    def __str__(self) -> str:
        return "all" if self.best is None else f"best:{self.best}"


def parse_keep(value: str | None = None) -> KeepPolicy:
    """``best:N`` or ``all`` (else ``$HPSEARCH_KEEP_ARTIFACTS``, else ``best:3``)."""
    raw = value if value is not None else get_settings().keep_artifacts
    raw = (raw or DEFAULT_KEEP).strip().lower()
    if raw == "all":
        return KeepPolicy(best=None)
    kind, _, count = raw.partition(":")
    if kind == "best" and count.isdigit() and int(count) >= 1:
        return KeepPolicy(best=int(count))
    raise UsageError(
        f"--keep-artifacts / HPSEARCH_KEEP_ARTIFACTS takes best:N (N >= 1) or all, got {raw!r}"
    )


def upload_predictions(
    storage: optuna.storages.BaseStorage,
    store: ArtifactStore,
    trial_id: int,
    predictions: ValPredictions,
) -> str:
    """Keep a RUNNING trial's predictions as its artifact ``predictions.npz``; returns its id.

    Call it before the trial is told (Optuna refuses attribute writes on finished trials). The
    file is written before the trial's ``artifacts:<id>`` row (the one
    ``optuna.artifacts.upload_artifact`` writes), so a listed artifact always has its file.
    """
    return _upload(storage, store, trial_id, predictions.to_bytes(), PREDICTIONS_FILE)


def upload_weights(
    storage: optuna.storages.BaseStorage, store: ArtifactStore, trial_id: int, weights: bytes
) -> str:
    """Keep a RUNNING trial's final weights (a safetensors file's bytes) as its artifact
    ``model.safetensors``; returns its id. As :func:`upload_predictions`: before the tell,
    the file before its row. Kept and removed under the same policy as the predictions."""
    return _upload(storage, store, trial_id, weights, WEIGHTS_FILE)


def _upload(
    storage: optuna.storages.BaseStorage,
    store: ArtifactStore,
    trial_id: int,
    data: bytes,
    filename: str,
) -> str:
    artifact_id = str(uuid.uuid4())
    store.write(artifact_id, io.BytesIO(data))
    meta = ArtifactMeta(
        artifact_id=artifact_id,
        filename=filename,
        mimetype="application/octet-stream",
        encoding=None,
    )
    try:
        storage.set_trial_system_attr(trial_id, _PREFIX + artifact_id, json.dumps(asdict(meta)))
    except BaseException:
        _remove_quietly(store, artifact_id)
        raise
    return artifact_id


def _remove_quietly(store: ArtifactStore, artifact_id: str) -> None:
    try:
        store.remove(artifact_id)
    except OptunaArtifactNotFound:
        pass
    except Exception as e:  # noqa: BLE001 - the original error matters more
        log.warning("could not remove artifact %s from %s: %s", artifact_id, store.location, e)


_ARTIFACT_ROWS = sqlalchemy.text(
    "SELECT t.trial_id, t.number, t.state, v.objective, v.value, a.key, a.value_json"
    " FROM trial_system_attributes a JOIN trials t ON t.trial_id = a.trial_id"
    " LEFT JOIN trial_values v ON v.trial_id = t.trial_id"
    " WHERE t.study_id = :study_id AND a.key LIKE 'artifacts:%'"
)


def _kept_file(value_json: str | None) -> str | None:
    """Which of :data:`KEPT_FILES` an artifact row is; None for any other artifact."""
    # Optuna stores the meta as a JSON string value, so the column holds JSON of a JSON string.
    try:
        meta = json.loads(value_json or "null")
        if isinstance(meta, str):
            meta = json.loads(meta)
    except ValueError:
        return None
    filename = meta.get("filename") if isinstance(meta, dict) else None
    return filename if filename in KEPT_FILES else None


def keep_best_predictions(
    storage: optuna.storages.RDBStorage,
    store: ArtifactStore,
    study_id: int,
    keep: KeepPolicy,
) -> list[int]:
    """Remove the predictions and weights of trials that no longer keep them; returns those
    trial numbers.

    Complete trials outside the ``keep.best`` best (:func:`trials_to_keep`) and finished trials
    that did not complete lose their ``predictions.npz`` and ``model.safetensors``: each file
    from the store, then its ``artifacts:<id>`` row (so the dashboard lists no deleted file),
    and the trial gets a :data:`REMOVED_ATTR` row saying why. Running and waiting trials are
    left alone. One bounded query (only trials that hold predictions: about N), repeated under
    the study lock only when something is to go; :func:`hpsearch.db.storage.mark_trials_edited`
    tells trial caches. A file the
    store cannot remove keeps its row, to be tried again after the next trial.
    """
    if keep.best is None:
        return []
    directions = storage.get_study_directions(study_id)
    # Look first without the lock (claims wait on it): most trials leave nothing to remove.
    if not _to_remove(storage, study_id, directions, keep.best):
        return []
    with study_lock(storage, study_id):
        holders = _to_remove(storage, study_id, directions, keep.best)
        removed: dict[int, tuple[int, str]] = {}  # trial_id -> (number, why)
        for key, trials in holders.items():
            try:
                store.remove(key[len(_PREFIX) :])
            except OptunaArtifactNotFound:
                pass  # already gone: drop the row all the same
            except ValueError:
                pass  # not an id hpsearch or Optuna made (see _checked_id): no file to remove
            except Exception as e:  # noqa: BLE001 - the store is down: try again next time
                log.warning("could not remove %s from %s: %s", key, store.location, e)
                continue
            why_by_trial = {t: _why_removed(state, keep) for t, _n, state in trials}
            with storage.engine.begin() as conn:
                ids = list(why_by_trial)
                conn.execute(
                    sqlalchemy.text(
                        "DELETE FROM trial_system_attributes"
                        " WHERE key IN (:key, :marker) AND trial_id IN :ids"
                    ).bindparams(sqlalchemy.bindparam("ids", expanding=True)),
                    {"key": key, "marker": REMOVED_ATTR, "ids": ids},
                )
                conn.execute(
                    sqlalchemy.text(
                        "INSERT INTO trial_system_attributes (trial_id, key, value_json)"
                        " VALUES (:trial_id, :marker, :why)"
                    ),
                    [
                        {"trial_id": t, "marker": REMOVED_ATTR, "why": json.dumps(why)}
                        for t, why in why_by_trial.items()
                    ],
                )
            for t, number, _state in trials:
                removed[t] = (number, why_by_trial[t])
        if removed:
            mark_trials_edited(storage, study_id, removed)
    return sorted(number for number, _why in removed.values())


def _to_remove(
    storage: optuna.storages.RDBStorage,
    study_id: int,
    directions: Sequence[StudyDirection],
    best: int,
) -> dict[str, list[tuple[int, int, str]]]:
    """The kept artifacts to remove: key -> the trials holding it (id, number, state)."""
    with storage.engine.connect() as conn:
        rows = [
            r
            for r in conn.execute(_ARTIFACT_ROWS, {"study_id": study_id})
            if _kept_file(r[6]) is not None
        ]
    holders: dict[str, set[tuple[int, int, str]]] = {}
    values: dict[int, dict[int, float]] = {}  # trial_id -> objective -> value
    numbers: dict[int, int] = {}
    for trial_id, number, state, objective, value, key, _meta in rows:
        holders.setdefault(key, set()).add((trial_id, number, state))
        if state == TrialState.COMPLETE.name and value is not None:
            values.setdefault(trial_id, {})[objective] = value
            numbers[trial_id] = number
    complete = {
        t: ([v[i] for i in range(len(directions))], numbers[t])
        for t, v in values.items()
        if len(v) == len(directions)
    }
    kept = trials_to_keep(complete, directions, best)
    # A retried trial's copy inherits its artifact rows: a file goes only when no holder keeps it.
    unfinished = {TrialState.RUNNING.name, TrialState.WAITING.name}
    return {
        key: sorted(trials)
        for key, trials in holders.items()
        if not any(t in kept or state in unfinished for t, _n, state in trials)
    }


def trials_to_keep(
    complete: Mapping[int, tuple[Sequence[float], int]],
    directions: Sequence[StudyDirection],
    best: int,
) -> set[int]:
    """The trials that keep their predictions and weights under ``best:N``: of the complete
    trials ``complete`` (trial id -> (values, number)), the ``best`` best by the one direction
    (ties: the earlier trial); for several objectives, every trial of the front (none of the
    others beats it in every objective) and, when the front has fewer than ``best``, the best
    of the next fronts by the first objective.

    The one place the keep set is chosen.
    """
    if len(directions) == 1:
        one = directions[0]
        return set(
            sorted(complete, key=lambda t: rank_key(complete[t][0][0], complete[t][1], one))[:best]
        )
    if not complete:
        return set()
    ids = sorted(complete, key=lambda t: complete[t][1])
    signs = np.array([-1.0 if d == StudyDirection.MAXIMIZE else 1.0 for d in directions])
    losses = np.nan_to_num(np.array([complete[t][0] for t in ids], dtype=float) * signs, nan=np.inf)
    ranks = _fast_non_domination_rank(losses)
    order = sorted(range(len(ids)), key=lambda i: (ranks[i], losses[i][0], i))
    front = [i for i in order if ranks[i] == 0]
    return {ids[i] for i in (front if len(front) >= best else order[:best])}


def _why_removed(state: str, keep: KeepPolicy) -> str:
    if state == TrialState.COMPLETE.name:
        return (
            f"it fell out of the best {keep.best} complete trials, the only ones that keep "
            f"predictions and weights ({keep}; run workers with --keep-artifacts all to keep "
            "every trial's)"
        )
    return f"the trial ended {state.lower()}; only complete trials keep predictions and weights"


_CACHE_SIZE = 8
_cache: OrderedDict[tuple[str, str], ValPredictions] = OrderedDict()
_cache_lock = threading.Lock()


def predictions_for(
    storage: optuna.storages.RDBStorage,
    store: ArtifactStore | None,
    study_name: str,
    trial_number: int | None = None,
) -> tuple[int, ValPredictions]:
    """The kept validation predictions of a trial (the best complete trial by default).

    Returns ``(trial_number, predictions)``. Raises :class:`StudyNotFound`,
    :class:`TrialNotFound` (no such trial; no complete trial yet), :class:`ArtifactNotFound`
    saying why the trial has none (reports off, still running, pruned or failed, not among the
    best N kept, run by a user objective, a store that lacks the file) and
    :class:`ArtifactStoreUnavailable` when the store cannot be read.
    """
    trial_number, artifact_id, which = _kept_artifact(
        storage, store, study_name, trial_number, filename=PREDICTIONS_FILE
    )
    assert store is not None  # _kept_artifact refuses a missing store
    return trial_number, _load(store, artifact_id, which)


def weights_for(
    storage: optuna.storages.RDBStorage,
    store: ArtifactStore | None,
    study_name: str,
    trial_number: int | None = None,
) -> tuple[int, bytes]:
    """The kept final weights of a trial (the best complete trial by default): the bytes of
    its ``model.safetensors``.

    Returns ``(trial_number, data)``. Raises as :func:`predictions_for` does, saying why the
    trial kept no weights (no artifact store, still running, pruned or failed, not among the
    best N kept, run by a user objective).
    """
    trial_number, artifact_id, which = _kept_artifact(
        storage, store, study_name, trial_number, filename=WEIGHTS_FILE
    )
    assert store is not None  # _kept_artifact refuses a missing store
    return trial_number, _read(store, artifact_id, f"the weights of {which}")


def _kept_artifact(
    storage: optuna.storages.RDBStorage,
    store: ArtifactStore | None,
    study_name: str,
    trial_number: int | None,
    *,
    filename: str,
) -> tuple[int, str, str]:
    """``(trial_number, artifact_id, which)`` of a trial's kept ``filename`` (one of
    :data:`KEPT_FILES`); ``which`` names the trial for messages."""
    if trial_number is None:  # the same best trial as GET /studies/{name}/best
        trial_id, trial_number = best_trial_id(storage, study_name)
    else:
        try:
            study_id = storage.get_study_id_from_name(study_name)
        except KeyError as e:
            raise StudyNotFound(f"no study named {study_name!r}") from e
        try:
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial_number)
        except KeyError as e:
            raise TrialNotFound(f"study {study_name!r} has no trial number {trial_number}") from e
    which = f"trial {trial_number} of study {study_name!r}"
    weights = filename == WEIGHTS_FILE
    if store is None:
        if weights:
            raise ArtifactNotFound(
                f"no weights for {which}: there is no artifact store to keep them in (the "
                f"study database is not a SQLite file): {_HOW_TO_TURN_ON}, the same on the "
                "workers, and train again"
            )
        raise ArtifactNotFound(
            f"no report for {which}: reports are off (no artifact store; the study database is "
            f"not a SQLite file): {_HOW_TO_TURN_ON}, the same on the workers"
        )
    with storage.engine.connect() as conn:
        state = conn.execute(
            sqlalchemy.text("SELECT state FROM trials WHERE trial_id = :t"), {"t": trial_id}
        ).scalar_one()
        attrs = conn.execute(
            sqlalchemy.text(
                "SELECT key, value_json FROM trial_system_attributes WHERE trial_id = :t"
                " AND (key LIKE 'artifacts:%' OR key = :marker)"
                " ORDER BY trial_system_attribute_id DESC"
            ),
            {"t": trial_id, "marker": REMOVED_ATTR},
        ).all()
    artifact_id = next(
        (
            key[len(_PREFIX) :]
            for key, value in attrs
            if key.startswith(_PREFIX) and _kept_file(value) == filename
        ),
        None,
    )
    if artifact_id is None:
        removed = next((json.loads(v) for k, v in attrs if k == REMOVED_ATTR), None)
        if weights:
            raise ArtifactNotFound(f"no weights for {which}: {_why_no_weights(state, removed)}")
        raise ArtifactNotFound(f"no report for {which}: {_why_none(state, removed)}")
    return trial_number, artifact_id, which


def _why_none(state: str, removed: str | None) -> str:
    if state in (TrialState.RUNNING.name, TrialState.WAITING.name):
        return f"it is {state.lower()}; its predictions are kept when it completes"
    if state in (TrialState.PRUNED.name, TrialState.FAIL.name):
        word = "pruned" if state == TrialState.PRUNED.name else "failed"
        return f"it was {word}, and only complete trials keep predictions"
    if removed:
        return f"its predictions were removed: {removed}"
    return (
        "it kept no predictions: it ran with a user --objective (reports need the built-in "
        "trainer), or on a worker with reports off (" + _HOW_TO_TURN_ON + ")"
    )


def _why_no_weights(state: str, removed: str | None) -> str:
    if state in (TrialState.RUNNING.name, TrialState.WAITING.name):
        return f"it is {state.lower()}; its weights are kept when it completes"
    if state in (TrialState.PRUNED.name, TrialState.FAIL.name):
        word = "pruned" if state == TrialState.PRUNED.name else "failed"
        return (
            f"it was {word}, and only complete trials keep weights: export a complete one "
            "(--trial N; `hpsearch trials NAME --state complete` lists them)"
        )
    if removed:
        return f"its weights were removed: {removed}"
    return (
        "it kept no weights: it ran with a user --objective (only the built-in trainer hands "
        "its model over), on a worker with no artifact store (" + _HOW_TO_TURN_ON + "), or "
        "on a worker of an hpsearch version that kept no weights"
    )


def _read(store: ArtifactStore, artifact_id: str, what: str) -> bytes:
    """The bytes of a kept file; ``what`` names it for messages."""
    try:
        with store.open_reader(artifact_id) as reader:
            return reader.read()
    except OptunaArtifactNotFound as e:
        raise ArtifactNotFound(
            f"{what} (artifact {artifact_id}) are not in the store at {store.location}: point "
            "--artifacts / HPSEARCH_ARTIFACTS at the store the workers write to"
        ) from e
    except ValueError as e:  # an id that is no UUID (written outside hpsearch): nothing to read
        raise ArtifactNotFound(f"{what}: {e}") from e
    except Exception as e:
        raise ArtifactStoreUnavailable(
            f"cannot read {what} from the artifact store at {store.location}: {e}"
        ) from e


def _load(store: ArtifactStore, artifact_id: str, which: str) -> ValPredictions:
    cache_key = (store.location, artifact_id)
    with _cache_lock:
        if cache_key in _cache:
            _cache.move_to_end(cache_key)
            return _cache[cache_key]
    data = _read(store, artifact_id, f"the predictions of {which}")
    try:
        predictions = ValPredictions.load(data)
    except Exception as e:
        raise ArtifactNotFound(
            f"the predictions file of {which} (artifact {artifact_id}) is unreadable: {e}"
        ) from e
    with _cache_lock:
        _cache[cache_key] = predictions
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return predictions
