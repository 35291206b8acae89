"""Trials of a study: pages of them, CSV, one of them, the best one, and pruning on request."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status
from fastapi.responses import StreamingResponse

from hpsearch import studies
from hpsearch.db.export import trials_csv
from hpsearch.service.deps import StorageDep, StudyAccess, WriteAccess
from hpsearch.service.schemas import (
    Offset,
    ParetoPublic,
    TrialNumber,
    TrialPublic,
    TrialsPublic,
)

router = APIRouter(prefix="/studies/{name}", tags=["trials"], dependencies=[StudyAccess])


@router.get("/trials")
def list_trials(
    name: str,
    storage: StorageDep,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    state: Annotated[
        str | None, Query(description="running, complete, pruned, fail, waiting")
    ] = None,
) -> TrialsPublic:
    """A page of the study's trials in trial-number order, each with config and learning curve."""
    data, count = studies.list_trials(storage, name, offset=offset, limit=limit, state=state)
    return TrialsPublic(data=data, count=count)


@router.get(
    "/trials.csv",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "one row per trial"}},
)
def export_trials(
    name: str,
    storage: StorageDep,
    state: Annotated[
        str | None, Query(description="running, complete, pruned, fail, waiting")
    ] = None,
) -> StreamingResponse:
    """Every trial as CSV (number, state, value, times, worker, reasons, params_*), streamed."""
    lines = trials_csv(storage, name, state=state)
    return StreamingResponse(
        lines,
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}-trials.csv"'},
    )


@router.get("/best")
def best_trial(name: str, storage: StorageDep) -> TrialPublic:
    """The best complete trial and its full resolved config."""
    return studies.best_trial(storage, name)


@router.get("/pareto")
def pareto_front(name: str, storage: StorageDep) -> ParetoPublic:
    """The Pareto front of a study of several objectives (best in the first objective first),
    with its hypervolume against each objective's worst value so far; one objective: the best."""
    return studies.pareto_front(storage, name)


@router.get("/trials/{number}")
def get_trial(name: str, number: TrialNumber, storage: StorageDep) -> TrialPublic:
    """One trial by number."""
    return studies.get_trial(storage, name, number)


@router.post(
    "/trials/{number}/prune", status_code=status.HTTP_202_ACCEPTED, dependencies=[WriteAccess]
)
def prune_trial(name: str, number: TrialNumber, storage: StorageDep) -> TrialPublic:
    """Ask the worker running this trial to prune it at its next report (after its epoch)."""
    return studies.request_prune(storage, name, number)
