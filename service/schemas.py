"""Response schemas of the API: one family per resource; handlers never return library objects."""

from __future__ import annotations

from pydantic import BaseModel

from hpsearch.spaces import SearchSpace
from hpsearch.studies import StudySpec, StudyStatus, TrialRecord

__all__ = [
    "StudyCreate",
    "StudyPublic",
    "StudiesPublic",
    "TrialPublic",
    "TrialsPublic",
    "SpacePublic",
    "SpacesPublic",
    "Health",
]

StudyCreate = StudySpec
StudyPublic = StudyStatus
TrialPublic = TrialRecord
SpacePublic = SearchSpace


class StudiesPublic(BaseModel):
    data: list[StudyStatus]
    count: int


class TrialsPublic(BaseModel):
    data: list[TrialRecord]
    count: int


class SpacesPublic(BaseModel):
    data: list[str]
    count: int


class Health(BaseModel):
    status: str
