"""Response schemas of the API: one family per resource; handlers never return library objects."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from hpsearch.spaces import SearchSpace
from hpsearch.studies import PrunerSpec, StudySpec, StudyStatus, TrialRecord

__all__ = [
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

StudyCreate = StudySpec
StudyPublic = StudyStatus
TrialPublic = TrialRecord
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
