"""The FastAPI application factory."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

import hpsearch
from hpsearch.errors import StorageUnavailable
from hpsearch.storage import open_storage
from service.deps import ReadAccess
from service.errors import install_error_handlers
from service.metrics import install_metrics
from service.routers import (
    health,
    importance,
    metrics,
    reports,
    spaces,
    studies,
    trials,
    workers,
)
from service.settings import Settings

__all__ = ["create_app"]

#: Routers every route of which needs a token with scope read (write routes also ask for
#: write), or none when ``anonymous_reads`` is on. Add new resource routers here.
_GUARDED_ROUTERS = (
    studies.router,
    trials.router,
    importance.router,
    reports.router,
    spaces.router,
    workers.router,
    metrics.router,  # scrapers send a read token (Prometheus: `authorization:`)
)
#: Routers open to anyone: liveness and readiness probes (``/docs`` and ``/openapi.json`` are
#: FastAPI's own and open too).
_OPEN_ROUTERS = (health.router,)


def _connect_with_retry(settings: Settings) -> None:
    # In compose the API may start before PostgreSQL accepts connections.
    deadline = time.monotonic() + settings.startup_retry_seconds
    delay = 0.5
    while True:
        try:
            open_storage(settings.storage)
            return
        except StorageUnavailable:
            if time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The hpsearch API over the study database that ``settings`` names.

    Every route but the health probes and the docs needs an API token from that database
    (:mod:`hpsearch.tokens`): scope read for reads (unless ``settings.anonymous_reads``), scope
    write for writes.
    """
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(_connect_with_retry, settings)
        yield

    app = FastAPI(
        title="hpsearch",
        version=hpsearch.__version__,
        description=(
            "Hyperparameter search for neural-network training. Submit a study spec; workers "
            "attached to the same study database run its trials; read the results here."
        ),
        lifespan=lifespan,
        # Refuse bodies over the limit with 413 before parsing them (a spec is a few kB).
        max_body_size=settings.max_body_bytes,
    )
    app.state.settings = settings
    install_error_handlers(app)
    install_metrics(app, settings)
    for router in _GUARDED_ROUTERS:
        app.include_router(router, dependencies=[ReadAccess])
    for router in _OPEN_ROUTERS:
        app.include_router(router)
    return app
