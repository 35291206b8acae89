"""Parameter importance of a study, beside the checklist's impact tiers."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from hpsearch.analysis.importance import ImportanceReport, parameter_importance
from hpsearch.service.deps import StorageDep, StudyAccess

router = APIRouter(prefix="/studies/{name}", tags=["importance"], dependencies=[StudyAccess])


@router.get("/importance", responses={409: {"description": "Fewer than 2 complete trials."}})
def get_importance(
    name: str,
    storage: StorageDep,
    evaluator: Annotated[
        Literal["ped_anova", "fanova"],
        Query(description="ped_anova (fast, any size) or fanova (latest 2000 complete trials)"),
    ] = "ped_anova",
) -> ImportanceReport:
    """Which parameters mattered in the complete trials, each beside its checklist tier."""
    return parameter_importance(storage, name, evaluator=evaluator)
