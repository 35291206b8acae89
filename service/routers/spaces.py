"""Search spaces bundled with hpsearch."""

from __future__ import annotations

from fastapi import APIRouter

from hpsearch.spaces import list_spaces, load_space
from hpsearch.service.schemas import SpacePublic, SpacesPublic

router = APIRouter(prefix="/spaces", tags=["spaces"])


@router.get("")
def get_spaces() -> SpacesPublic:
    """The names of the bundled search spaces."""
    names = list_spaces()
    return SpacesPublic(data=names, count=len(names))


@router.get("/{name}")
def get_space(name: str) -> SpacePublic:
    """One space: its parameters with impact tiers, checklist rows, conditions and defaults."""
    return load_space(name, allow_paths=False)
