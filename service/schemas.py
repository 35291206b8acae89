"""Response schemas of the API: one family per resource; handlers never return library objects."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import BaseModel, Field

from hpsearch.spaces import SearchSpace
from hpsearch.studies import ParetoFront, PrunerSpec, StudySpec, StudyStatus, TrialRecord

__all__ = [
    "MAX_DB_INT",
    "Offset",
    "ParetoPublic",
    "TrialNumber",
    "EnqueuePublic",
    "EnqueueRequest",
    "Health",
    "PrunerUpdate",
    "SpacePublic",
    "SpacesPublic",
    "StudiesPublic",
    "StudyCreate",
    "StudyPublic",
    "TrialPublic",
    "TrialsPublic",
]

#: The largest integer every study database stores (PostgreSQL's INTEGER): trial numbers and
#: offsets above it answer 422 before they reach a query.
MAX_DB_INT = 2**31 - 1

#: A trial number in a path (``/studies/{name}/trials/{number}``).
TrialNumber = Annotated[int, Path(ge=0, le=MAX_DB_INT, description="the trial's number")]
#: How many items a page skips.
Offset = Annotated[int, Query(ge=0, le=MAX_DB_INT, description="items to skip")]

StudyCreate = StudySpec
StudyPublic = StudyStatus
TrialPublic = TrialRecord
ParetoPublic = ParetoFront
PrunerUpdate = PrunerSpec
SpacePublic = SearchSpace


class StudiesPublic(BaseModel):
    data: list[StudyStatus]
    count: int


class EnqueueRequest(BaseModel):
    """Configs to run before sampling: ``{param: value}`` mappings of the study's space."""

    configs: list[dict[str, Any]] = Field(min_length=1, max_length=1000)


class EnqueuePublic(BaseModel):
    """How many configs became waiting trials (a config equal to an existing trial's is not)."""

    enqueued: int
    given: int


class TrialsPublic(BaseModel):
    data: list[TrialRecord]
    count: int


class SpacesPublic(BaseModel):
    data: list[str]
    count: int


class Health(BaseModel):
    status: str
