"""Map hpsearch's errors to HTTP statuses with messages a person can act on."""

from __future__ import annotations

import logging

import sqlalchemy
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from hpsearch.errors import (
    HpsearchError,
    NotEnoughTrials,
    SpaceError,
    SpaceNotFound,
    SpecError,
    StorageUnavailable,
    StudyExists,
    StudyNotFound,
    TokenExists,
    TokenNotFound,
    TrialNotFound,
    TrialNotRunning,
)
from hpsearch.studies import StudyBusy

__all__ = ["install_error_handlers"]

log = logging.getLogger("service")

_STATUS: list[tuple[type[HpsearchError], int]] = [
    (StudyNotFound, 404),
    (SpaceNotFound, 404),
    (TrialNotFound, 404),
    (TokenNotFound, 404),
    (StudyExists, 409),
    (TokenExists, 409),
    (TrialNotRunning, 409),
    (StudyBusy, 409),
    (NotEnoughTrials, 409),
    (SpecError, 422),
    (SpaceError, 422),
    (StorageUnavailable, 503),
]


def _status_of(error: HpsearchError) -> int:
    return next((code for kind, code in _STATUS if isinstance(error, kind)), 400)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every :class:`HpsearchError` with its status and ``{"detail": message}``."""

    @app.exception_handler(HpsearchError)
    async def _hpsearch_error(_request: Request, error: HpsearchError) -> JSONResponse:
        return JSONResponse(status_code=_status_of(error), content={"detail": str(error)})

    @app.exception_handler(sqlalchemy.exc.DBAPIError)
    async def _database_error(_request: Request, error: sqlalchemy.exc.DBAPIError) -> JSONResponse:
        # Connection lost, server restarting, lock timeout: the request may succeed on retry.
        log.warning("study database error: %s", error)
        detail = "the study database is not answering right now; retry in a moment"
        return JSONResponse(status_code=503, content={"detail": detail})
