"""Studies: create from a spec, list, status, change (PATCH), the stored spec, stop/resume/delete,
pruner, enqueue."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Response, status

from hpsearch import studies
from hpsearch.service.deps import (
    CurrentToken,
    ProjectSpec,
    StorageDep,
    StudyAccess,
    StudyPrefix,
    WriteAccess,
)
from hpsearch.service.schemas import (
    EnqueuePublic,
    EnqueueRequest,
    Offset,
    PrunerUpdate,
    StudiesPublic,
    StudyCreate,
    StudyPublic,
)

router = APIRouter(prefix="/studies", tags=["studies"], dependencies=[StudyAccess])


@router.post("", status_code=status.HTTP_201_CREATED, dependencies=[WriteAccess])
def create_study(spec: ProjectSpec, storage: StorageDep) -> StudyPublic:
    """Validate the spec against its space and create the study; workers pick it up.

    With ``warm_start``, the best configs of that study are enqueued first; the response's
    ``warm_start`` says how many and which were skipped.
    """
    created = studies.create_study(storage, spec, allow_space_paths=False)
    assert created.name is not None  # create_study names every study it creates
    return studies.study_status(storage, created.name)


@router.get("")
def list_studies(
    storage: StorageDep,
    prefix: StudyPrefix,  # the query's name prefix, narrowed to the token's project
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    state: Annotated[Literal["open", "stopped", "done", "failed"] | None, Query()] = None,
) -> StudiesPublic:
    """Hpsearch studies, oldest first; ``count`` is how many match the filters in all."""
    data, count = studies.page_studies(
        storage, offset=offset, limit=limit, state=state, prefix=prefix
    )
    return StudiesPublic(data=data, count=count)


@router.get("/{name}")
def get_study(name: str, storage: StorageDep) -> StudyPublic:
    """Counts by state, budget used, best value, state, ETA, pruning savings, live workers."""
    return studies.study_status(storage, name)


@router.delete(
    "/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    dependencies=[WriteAccess],
)
def delete_study(
    name: str,
    storage: StorageDep,
    force: Annotated[bool, Query(description="delete even with running trials")] = False,
) -> None:
    """Delete the study and its trials; 409 while trials run, unless ``force=true``."""
    studies.delete_study(storage, name, force=force)


@router.patch("/{name}", dependencies=[WriteAccess])
def patch_study(
    name: str,
    storage: StorageDep,
    token: CurrentToken,
    changes: Annotated[
        dict[str, Any],
        Body(
            description="Any of budget.trials, budget.seconds, budget.max_failures, "
            "task.dataset, task.target, task.pretrained_weights (totals, not increments), e.g. "
            '{"budget": {"trials": 40, "max_failures": 20}, "task": {"target": "label"}}.',
        ),
    ],
) -> StudyPublic:
    """Change the study's budget or task data and let it continue (a failed study runs again).

    Validated like a new spec (422 with one line); the change goes into the study's
    ``history``. Changing the space or the metric is refused: submit a new study.
    """
    return studies.patch_study(storage, name, changes, by=token.name if token else None)


@router.get("/{name}/spec")
def get_spec(name: str, storage: StorageDep) -> StudyCreate:
    """The resolved spec stored with the study (space inline, every default filled)."""
    return studies.load_spec(storage, name)


@router.post("/{name}/stop", dependencies=[WriteAccess])
def stop_study(name: str, storage: StorageDep) -> StudyPublic:
    """Stop the study: workers start no new trial of it; running trials finish normally."""
    return studies.stop_study(storage, name)


@router.post("/{name}/resume", dependencies=[WriteAccess])
def resume_study(name: str, storage: StorageDep, token: CurrentToken) -> StudyPublic:
    """Let a stopped or failed study take trials again (a failed one unchanged: see PATCH)."""
    return studies.resume_study(storage, name, by=token.name if token else None)


@router.put("/{name}/pruner", dependencies=[WriteAccess])
def set_pruner(name: str, pruner: PrunerUpdate, storage: StorageDep) -> StudyCreate:
    """Replace the study's pruner (checked by building it); workers use it for new trials."""
    return studies.set_pruner(storage, name, pruner)


@router.post("/{name}/enqueue", dependencies=[WriteAccess])
def enqueue(name: str, body: EnqueueRequest, storage: StorageDep) -> EnqueuePublic:
    """Queue configs for workers to run before sampling; all are checked before any is queued."""
    enqueued = studies.enqueue_configs(storage, name, body.configs)
    return EnqueuePublic(enqueued=enqueued, given=len(body.configs))
