"""Map hpsearch's errors to HTTP statuses with messages a person can act on."""

from __future__ import annotations

import logging

import sqlalchemy
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from hpsearch.errors import (
    ArtifactNotFound,
    HpsearchError,
    NotEnoughTrials,
    NotFound,
    SpaceError,
    SpaceNotFound,
    SpecError,
    StorageUnavailable,
    StudyBusy,
    StudyExists,
    StudyNotFound,
    TokenExists,
    TokenNotFound,
    TrialNotFound,
    TrialNotRunning,
)
from hpsearch.spaces.messages import clean_errors
from hpsearch.service.prometheus import METRICS_PATH, outage_metrics

__all__ = ["install_error_handlers"]

log = logging.getLogger("service")

# First match wins: SpaceNotFound is a SpaceError too, and must answer 404, not 422.
_STATUS: list[tuple[type[HpsearchError], int]] = [
    (StudyNotFound, 404),
    (SpaceNotFound, 404),
    (TrialNotFound, 404),
    (ArtifactNotFound, 404),
    (TokenNotFound, 404),
    (NotFound, 404),
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
    """Answer every :class:`HpsearchError` with its status and ``{"detail": message}``, and a
    request that fails validation with FastAPI's 422 list, its paths free of pydantic's
    union-member labels (:func:`hpsearch.spaces.messages.clean_errors`)."""

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_request: Request, error: RequestValidationError) -> JSONResponse:
        detail = jsonable_encoder(clean_errors(error.errors()))
        return JSONResponse(status_code=422, content={"detail": detail})

    @app.exception_handler(HpsearchError)
    async def _hpsearch_error(request: Request, error: HpsearchError) -> Response:
        if isinstance(error, StorageUnavailable) and _is_scrape(request):
            return outage_metrics()
        return JSONResponse(status_code=_status_of(error), content={"detail": str(error)})

    @app.exception_handler(sqlalchemy.exc.DBAPIError)
    async def _database_error(request: Request, error: sqlalchemy.exc.DBAPIError) -> Response:
        # Connection lost, server restarting, lock timeout: the request may succeed on retry.
        log.warning("study database error: %s", error)
        if _is_scrape(request):
            return outage_metrics()
        detail = "the study database is not answering right now; retry in a moment"
        return JSONResponse(status_code=503, content={"detail": detail})

    @app.exception_handler(sqlalchemy.exc.DataError)
    async def _bad_value(_request: Request, error: sqlalchemy.exc.DataError) -> JSONResponse:
        # The database refused a value (out of its integer range, a NUL byte): the request's
        # fault, and retrying cannot help. Inputs are bounded before this; this is the net.
        log.warning("study database refused a value: %s", error)
        detail = (
            "a value in the request is out of the study database's range or holds a NUL byte; "
            f"send integers from 0 to {2**31 - 1} and text without NUL bytes"
        )
        return JSONResponse(status_code=422, content={"detail": detail})

    @app.exception_handler(OverflowError)
    async def _overflow(_request: Request, error: OverflowError) -> JSONResponse:
        # An integer of hundreds of digits where a float is needed ("int too large to convert
        # to float"): the request's fault. Inputs are bounded before this; this is the net.
        log.warning("a number in the request overflowed: %s", error)
        detail = (
            "a number in the request is too large to compute with; send numbers within "
            "+-2**63 (about 9.2e18)"
        )
        return JSONResponse(status_code=422, content={"detail": detail})


def _is_scrape(request: Request) -> bool:
    # /metrics promises `hpsearch_database_up 0` in an outage, not a failed scrape: its token
    # check needs the database too, and the outage itself is no secret (see /readyz).
    return request.url.path == METRICS_PATH and request.method in ("GET", "HEAD")
