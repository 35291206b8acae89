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
from service.errors import install_error_handlers
from service.routers import health, spaces, studies, trials
from service.settings import Settings

__all__ = ["create_app"]


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
    """The hpsearch API over the study database that ``settings`` names."""
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
    )
    app.state.settings = settings
    install_error_handlers(app)
    for router in (studies.router, trials.router, spaces.router, health.router):
        app.include_router(router)
    return app
