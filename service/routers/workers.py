"""The fleet of workers: who is live, on which device, running which trial."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from hpsearch.db import fleet
from hpsearch.service.deps import FleetAccess, StorageDep

router = APIRouter(prefix="/workers", tags=["workers"], dependencies=[FleetAccess])


class WorkersPublic(BaseModel):
    """A list of workers and how many there are."""

    data: list[fleet.WorkerRecord]
    count: int


@router.get("")
def list_workers(
    storage: StorageDep,
    include_all: Annotated[
        bool, Query(alias="all", description="also list stopped and dead workers")
    ] = False,
    study: Annotated[
        str | None, Query(description="only workers running a trial of this study now")
    ] = None,
) -> WorkersPublic:
    """Workers by last heartbeat, newest first: the live ones unless ``all=true``."""
    data = fleet.list_workers(storage, live_only=not include_all, study=study)
    return WorkersPublic(data=data, count=len(data))
