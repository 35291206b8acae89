"""Liveness and readiness."""

from __future__ import annotations

import sqlalchemy
from fastapi import APIRouter

from hpsearch.errors import StorageUnavailable
from hpsearch.service.deps import StorageDep
from hpsearch.service.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz")
def live() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get("/readyz")
def ready(storage: StorageDep) -> Health:
    """The study database answers."""
    try:
        with storage.engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
    except sqlalchemy.exc.SQLAlchemyError as e:  # the driver's text stays in the server log
        raise StorageUnavailable("the study database does not answer") from e
    return Health(status="ready")
