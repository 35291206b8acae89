"""Studies: create from a spec, list, status, the stored spec."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from hpsearch import studies
from service.deps import StorageDep, WriteAccess
from service.schemas import StudiesPublic, StudyCreate, StudyPublic

router = APIRouter(prefix="/studies", tags=["studies"])


@router.post("", status_code=status.HTTP_201_CREATED, dependencies=[WriteAccess])
def create_study(spec: StudyCreate, storage: StorageDep) -> StudyPublic:
    """Validate the spec against its space and create the study; workers pick it up."""
    created = studies.create_study(storage, spec, allow_space_paths=False)
    return studies.study_status(storage, created.name)


@router.get("")
def list_studies(
    storage: StorageDep,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> StudiesPublic:
    """Every hpsearch study in the database, oldest first."""
    all_studies = studies.list_studies(storage)
    return StudiesPublic(data=all_studies[offset : offset + limit], count=len(all_studies))


@router.get("/{name}")
def get_study(name: str, storage: StorageDep) -> StudyPublic:
    """Trial counts by state, budget used, the best value so far, whether it is done."""
    return studies.study_status(storage, name)


@router.get("/{name}/spec")
def get_spec(name: str, storage: StorageDep) -> StudyCreate:
    """The resolved spec stored with the study (space inline, every default filled)."""
    return studies.load_spec(storage, name)
