"""What users do to studies: create, open, stop, resume, change, enqueue into and delete them.

Every operation reads and writes the study database only (the spec as a study user attribute,
the stop mark as a system attribute, the history of changes: :mod:`hpsearch.studies.attrs`),
and every read-modify-write of a study's spec holds its study lock, so that the REST service,
the CLI and the workers can all act on one study at once.
"""

from __future__ import annotations

import datetime as dt
import logging
import warnings
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.trial import TrialState
from pydantic import ValidationError

from hpsearch.db.queries import count_trials_by_state
from hpsearch.db.storage import study_lock
from hpsearch.errors import SpecError, StudyBusy, StudyExists, StudyNotFound
from hpsearch.families import TaskSpec
from hpsearch.strategy import make_pruner, make_sampler
from hpsearch.studies._lookup import find_study
from hpsearch.studies.attrs import SPEC_ATTR, STOPPED_ATTR, WARM_START_ATTR
from hpsearch.studies.checks import did_you_mean
from hpsearch.studies.objectives import spec_directions
from hpsearch.studies.history import StudyChange, append_change, clear_failure, study_failure
from hpsearch.studies.spec import Budget, PrunerSpec, StudySpec, resolve_spec, validation_message
from hpsearch.studies.status import StudyStatus, parse_stopped_at, study_status
from hpsearch.studies.warm_start import (
    WarmStartReport,
    check_configs,
    enqueue_params,
    warm_start_params,
)

__all__ = [
    "PATCHABLE",
    "create_study",
    "delete_study",
    "enqueue_configs",
    "is_stopped",
    "load_spec",
    "open_study",
    "patch_study",
    "resume_study",
    "set_pruner",
    "stop_study",
]

log = logging.getLogger("hpsearch.studies")


def create_study(
    storage: optuna.storages.RDBStorage,
    spec: StudySpec | dict[str, Any],
    *,
    allow_space_paths: bool = True,
) -> StudySpec:
    """Validate ``spec`` and create its study, with the resolved spec stored alongside.

    Raises :class:`SpecError` before anything is written, :class:`StudyExists` on a name clash.
    """
    spec = resolve_spec(spec, allow_space_paths=allow_space_paths)
    warm: tuple[list[dict[str, Any]], list[str]] | None = None
    if spec.warm_start is not None:  # read and check the source before anything is written
        if spec.warm_start.study == spec.name:
            raise SpecError(f"warm_start.study {spec.name!r} is the study itself; name another")
        warm = warm_start_params(storage, spec.warm_start, spec.search_space, spec.fixed)
    try:
        study = optuna.create_study(
            storage=storage, study_name=spec.name, directions=spec_directions(spec)
        )
    except optuna.exceptions.DuplicatedStudyError as e:
        raise StudyExists(f"a study named {spec.name!r} already exists; pick another name") from e
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # The dashboard labels its axes (and its Pareto-front plot) with them.
        study.set_metric_names([o.metric for o in spec.objectives] or [spec.metric])
    if warm is not None:  # waiting trials first: a worker that sees the spec finds them queued
        assert spec.warm_start is not None
        params_list, notes = warm
        enqueued = enqueue_params(storage, study, study._study_id, params_list)
        for note in notes:
            log.warning("study %s: warm start skipped %s", spec.name, note)
        report = WarmStartReport(source=spec.warm_start.study, enqueued=enqueued, skipped=notes)
        storage.set_study_system_attr(study._study_id, WARM_START_ATTR, report.model_dump())
    study.set_user_attr(SPEC_ATTR, spec.model_dump(mode="json"))
    return spec


def load_spec(storage: optuna.storages.BaseStorage, name: str) -> StudySpec:
    """The resolved spec stored with study ``name``."""
    return StudySpec.model_validate(find_study(storage, name).spec_json)


def open_study(
    storage: optuna.storages.BaseStorage, name: str, *, seed_offset: int = 0
) -> tuple[optuna.Study, StudySpec]:
    """The Optuna study with the sampler and pruner its spec names, and the spec.

    Keep the study for as long as you sample from it: a new sampler restarts its random
    stream. Workers pass a ``seed_offset`` of their own, so that two workers of a seeded study
    do not draw the same configs.
    """
    spec = load_spec(storage, name)
    seed = None if spec.seed is None else (spec.seed + seed_offset) % 2**32
    sampler = make_sampler(
        spec.strategy,
        spec.search_space,
        seed=seed,
        n_trials=spec.budget.trials,
        fixed=spec.fixed,
    )
    pruner = make_pruner(spec.pruner.name, epochs=spec.task.epochs, **spec.pruner.args)
    study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    return study, spec


def is_stopped(storage: optuna.storages.BaseStorage, study_id: int) -> bool:
    """Whether a user stopped the study (it takes no new trials until resumed); one query."""
    return parse_stopped_at(storage.get_study_system_attrs(study_id)) is not None


def stop_study(storage: optuna.storages.RDBStorage, name: str) -> StudyStatus:
    """Stop the study: it takes no new trials until resumed; running trials finish normally.

    Stopping a stopped study keeps its first stop time.
    """
    study_id = find_study(storage, name).study_id
    if not is_stopped(storage, study_id):
        now = dt.datetime.now(dt.UTC).isoformat()
        storage.set_study_system_attr(study_id, STOPPED_ATTR, now)
    return study_status(storage, name)


def resume_study(
    storage: optuna.storages.RDBStorage, name: str, *, by: str | None = None
) -> StudyStatus:
    """Let a stopped or failed study take trials again (a no-op on an open one).

    Resuming a failed study unchanged suits a fix made on the workers' side (the data put in
    place, a worker given a --data-root); the failure it clears goes into the study's history.
    To change the study as well, see :func:`patch_study`.
    """
    study_id = find_study(storage, name).study_id
    if is_stopped(storage, study_id):
        storage.set_study_system_attr(study_id, STOPPED_ATTR, None)
    with study_lock(storage, study_id):
        failure = study_failure(storage, study_id)
        if failure is not None:
            now = dt.datetime.now(dt.UTC)
            append_change(
                storage, study_id, StudyChange(at=now, by=by, cleared_failure=failure.reason)
            )
            clear_failure(storage, study_id)
    return study_status(storage, name)


def delete_study(storage: optuna.storages.RDBStorage, name: str, *, force: bool = False) -> None:
    """Delete the study with its trials from the study database.

    Raises :class:`StudyBusy` while trials run, unless ``force``: their workers then fail to
    record their results. Held under the study lock, so no worker claims a trial meanwhile.
    """
    study_id = find_study(storage, name).study_id
    with study_lock(storage, study_id):
        running = count_trials_by_state(storage, study_id)[TrialState.RUNNING]
        if running and not force:
            raise StudyBusy(
                f"study {name!r} has {running} running trial(s): stop it and delete it once "
                f"they finish, or delete with force=true (`hpsearch delete {name} --force`)"
            )
        try:
            storage.delete_study(study_id)
        except KeyError as e:
            raise StudyNotFound(f"no study named {name!r}") from e


def set_pruner(
    storage: optuna.storages.RDBStorage, name: str, pruner: PrunerSpec | dict[str, Any]
) -> StudySpec:
    """Replace the study's pruner in its stored spec; workers use it for their next trials.

    The pruner is built first: a bad name or argument raises :class:`SpecError` and changes
    nothing. Returns the updated spec.
    """
    found = find_study(storage, name)
    study_id, spec_json = found.study_id, found.spec_json
    if not isinstance(pruner, PrunerSpec):
        try:
            pruner = PrunerSpec.model_validate(pruner)
        except ValidationError as e:
            raise SpecError(f"invalid pruner: {validation_message(e)}") from e
    epochs = StudySpec.model_validate(spec_json).task.epochs
    try:
        make_pruner(pruner.name, epochs=epochs, **pruner.args)
    except ValueError as e:
        raise SpecError(f"pruner: {e}") from e
    with study_lock(storage, study_id):  # read-modify-write of the spec, one writer at a time
        spec_json = find_study(storage, name).spec_json
        spec_json["pruner"] = pruner.model_dump(mode="json")
        storage.set_study_user_attr(study_id, SPEC_ATTR, spec_json)
    return StudySpec.model_validate(spec_json)


#: What a change to a study may set: its budget, and where its task's data is. Everything else
#: (the space, the metric, the epochs, the split...) decided how its trials were sampled and
#: scored, so changing it would mix incomparable trials: that is a new study.
PATCHABLE: dict[str, tuple[str, ...]] = {
    "budget": ("trials", "seconds", "max_failures"),
    "task": ("dataset", "target", "pretrained_weights"),
}


def _patchable_fields() -> str:
    return ", ".join(f"{key}.{field}" for key, fields in PATCHABLE.items() for field in fields)


def _new_study_hint(name: str) -> str:
    return (
        f"submit a new study instead (`warm_start: {{study: {name}}}` starts it from this "
        "one's best configs)"
    )


def _check_patch(name: str, changes: Any) -> None:
    """Refuse, in one line, a change that is not a mapping of what :data:`PATCHABLE` allows."""
    if not isinstance(changes, dict) or not changes:
        raise SpecError(
            f"give the study's changes as a mapping, e.g. {{budget: {{trials: 20}}}}; "
            f"a study's change may set {_patchable_fields()}"
        )
    for key, value in changes.items():
        if key == "pruner":
            raise SpecError(
                f"change the pruner with PUT /studies/{name}/pruner (`hpsearch pruner {name} "
                "NAME`); a study's change sets only its budget and task data"
            )
        if key not in PATCHABLE:
            if key in StudySpec.model_fields:
                raise SpecError(
                    f"`{key}` of study {name!r} cannot be changed: its trials were sampled and "
                    f"scored with it; {_new_study_hint(name)}"
                )
            raise SpecError(
                f"unknown field {key!r}{did_you_mean(str(key), list(PATCHABLE))}; a study's "
                f"change may set {_patchable_fields()}"
            )
        if not isinstance(value, dict) or not value:
            raise SpecError(
                f"`{key}` must be a mapping such as {{{PATCHABLE[key][0]}: ...}}, got {value!r}"
            )
        model = Budget if key == "budget" else TaskSpec
        for field in value:
            if field in PATCHABLE[key]:
                continue
            if field in model.model_fields:
                raise SpecError(
                    f"`{key}.{field}` of study {name!r} cannot be changed: its trials were "
                    f"trained and scored with it; {_new_study_hint(name)}"
                )
            raise SpecError(
                f"unknown field `{key}.{field}`"
                f"{did_you_mean(str(field), list(PATCHABLE[key]))}; a study's change may set "
                f"{_patchable_fields()}"
            )


def patch_study(
    storage: optuna.storages.RDBStorage,
    name: str,
    changes: dict[str, Any],
    *,
    by: str | None = None,
) -> StudyStatus:
    """Change a study's budget or task data, and let it continue: ``PATCH /studies/{name}``.

    ``changes`` sets any of :data:`PATCHABLE`, e.g. ``{"budget": {"trials": 40,
    "max_failures": 20}, "task": {"target": "label"}}`` (``target: null`` goes back to the
    default label column). The changed spec is validated as a new one is
    (:func:`resolve_spec`), so a bad value raises :class:`SpecError` and changes nothing;
    changing anything else (the space, the metric) is refused with a line saying to submit a
    new study. Values are totals: ``budget.trials`` counts the trials already finished.

    A failed study becomes runnable again (its failure is cleared); a study done by its budget
    runs again once the new budget has room. A stopped study stays stopped until resumed.
    Every change is recorded in the study's history (:class:`StudyChange`, with ``by``, the
    API token's name when known), and workers pick the new spec up before their next trial.
    """
    _check_patch(name, changes)
    study_id = find_study(storage, name).study_id
    with study_lock(storage, study_id):  # read-modify-write of the spec, one writer at a time
        spec_json = find_study(storage, name).spec_json
        before = StudySpec.model_validate(spec_json)
        merged = before.model_dump(mode="json")
        for key, value in changes.items():
            merged[key] = {**merged[key], **value}
        merged["created_at"] = None  # set by hpsearch; kept below (the time budget runs from it)
        after = resolve_spec(merged).model_copy(update={"created_at": before.created_at})
        old, new = before.model_dump(mode="json"), after.model_dump(mode="json")
        changed = {
            f"{key}.{field}": [old[key].get(field), new[key].get(field)]
            for key, fields in PATCHABLE.items()
            for field in fields
            if old[key].get(field) != new[key].get(field)
        }
        failure = study_failure(storage, study_id)
        if changed or failure is not None:
            if changed:
                storage.set_study_user_attr(study_id, SPEC_ATTR, after.model_dump(mode="json"))
            change = StudyChange(
                at=dt.datetime.now(dt.UTC),
                by=by,
                changes=changed,
                cleared_failure=failure.reason if failure is not None else None,
            )
            append_change(storage, study_id, change)
            if failure is not None:
                clear_failure(storage, study_id)
    if changed:
        log.info("study %s changed: %s", name, changed)
    return study_status(storage, name)


def enqueue_configs(
    storage: optuna.storages.RDBStorage, name: str, configs: Sequence[dict[str, Any]]
) -> int:
    """Enqueue configs (``{param: value}``) for the study's workers to run before sampling.

    Every config is checked against the study's space first (see
    :func:`hpsearch.studies.warm_start.check_config`); a bad one raises :class:`SpecError` naming its
    index and parameter, and nothing is enqueued. A config equal to an existing trial's params
    is skipped. Returns how many were enqueued; they count against the budget when they run.
    """
    if not configs:
        raise SpecError("configs is empty; give at least one {param: value} mapping")
    found = find_study(storage, name)
    study_id, spec_json = found.study_id, found.spec_json
    spec = StudySpec.model_validate(spec_json)
    if spec.strategy == "grid":  # an enqueued config would push grid points out of the budget
        raise SpecError(
            f"study {name!r} searches a grid, which runs each of its points once: configs cannot "
            "be enqueued into it; submit a study with another strategy to run them"
        )
    params_list = check_configs(spec.search_space, spec.fixed, configs)
    study = optuna.load_study(study_name=name, storage=storage)
    return enqueue_params(storage, study, study_id, params_list)
