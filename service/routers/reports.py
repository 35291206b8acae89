"""Error-analysis reports of a study's trials: the numbers as JSON, and the plots as PNG."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from hpsearch.analysis.artifacts import ArtifactStore, open_artifact_store
from hpsearch.analysis.report import ErrorReport, PlotName, render_plot, study_report
from hpsearch.service.deps import SettingsDep, StorageDep, StudyAccess
from hpsearch.service.settings import Settings

router = APIRouter(prefix="/studies/{name}/report", tags=["reports"], dependencies=[StudyAccess])

_TRIAL = Query(ge=0, le=2**31 - 1, description="trial number (default: the study's best trial)")
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such study or trial, or the trial kept no predictions (says why)."}
}


def _store(settings: Settings) -> ArtifactStore | None:
    return open_artifact_store(settings.artifacts, storage_url=settings.storage)


@router.get("", responses=_NOT_FOUND)
def get_report(
    name: str,
    storage: StorageDep,
    settings: SettingsDep,
    trial: Annotated[int | None, _TRIAL] = None,
) -> ErrorReport:
    """The error analysis of a trial on the validation split: per-class metrics and confusion
    matrix (classification) or residuals (regression), and the highest-loss examples."""
    report, _preds = study_report(storage, _store(settings), name, trial)
    return report


@router.get(
    "/plots/{plot}.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "the plot"}, **_NOT_FOUND},
)
def get_plot(
    name: str,
    plot: PlotName,
    storage: StorageDep,
    settings: SettingsDep,
    trial: Annotated[int | None, _TRIAL] = None,
) -> Response:
    """One plot of the report: ``confusion``, ``residuals`` (regression) or ``worst`` (images)."""
    report, preds = study_report(storage, _store(settings), name, trial)
    return Response(render_plot(report, preds, plot), media_type="image/png")
