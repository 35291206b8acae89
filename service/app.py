"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

import hpsearch
from hpsearch.service.hosts import allowed_hosts, host_allowed, wrong_host_message
from hpsearch.db.storage import open_storage_when_up
from hpsearch.service.deps import ReadAccess
from hpsearch.service.errors import install_error_handlers
from hpsearch.service.input_guard import refuse_unsafe_input
from hpsearch.service.prometheus import install_metrics
from hpsearch.service.routers import (
    health,
    importance,
    metrics,
    models,
    reports,
    spaces,
    studies,
    trials,
    workers,
)
from hpsearch.service.settings import Settings

__all__ = ["create_app"]

#: Routers every route of which needs a token with scope read (write routes also ask for
#: write), or none when ``anonymous_reads`` is on. Add new resource routers here.
_GUARDED_ROUTERS = (
    studies.router,
    trials.router,
    importance.router,
    reports.router,
    models.router,
    spaces.router,
    workers.router,
    metrics.router,  # scrapers send a read token (Prometheus: `authorization:`)
)
#: Routers open to anyone: liveness and readiness probes (``/docs``, ``/redoc``, their assets
#: and ``/openapi.json`` are open too).
_OPEN_ROUTERS = (health.router,)


class AllowedHostsMiddleware:
    """Answer 400 to requests whose ``Host`` is not an allowed host name (:mod:`hpsearch.service.hosts`).

    Starlette's ``TrustedHostMiddleware`` would do, but it cuts ``[::1]:8000`` at the first
    colon and says only "Invalid host header"; this names the setting that allows a host.
    """

    def __init__(self, app: ASGIApp, *, allowed: Sequence[str]) -> None:
        self.app = app
        self.allowed = list(allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            host = Headers(scope=scope).get("host")
            if not host_allowed(host, self.allowed):
                response = PlainTextResponse(wrong_host_message(host, self.allowed), 400)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The hpsearch API over the study database that ``settings`` names.

    Every route but the health probes and the docs needs an API token from that database
    (:mod:`hpsearch.db.tokens`): scope read for reads (unless ``settings.anonymous_reads``), scope
    write for writes. Every request must name an allowed host (``settings.allowed_hosts``
    besides the loopback names) in ``Host``, else it gets 400.
    """
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # In compose the API may start before PostgreSQL accepts connections: wait for it.
        await run_in_threadpool(
            open_storage_when_up, settings.storage, within=settings.startup_retry_seconds
        )
        yield

    # FastAPIOffline: FastAPI with /docs and /redoc loading their scripts and styles from the
    # installed package (under /static-offline-docs), not a CDN: the docs work offline.
    app = FastAPIOffline(
        title="hpsearch",
        version=hpsearch.__version__,
        description=(
            "Hyperparameter search for neural-network training. Submit a study spec; workers "
            "attached to the same study database run its trials; read the results here."
        ),
        lifespan=lifespan,
        # Refuse bodies over the limit with 413 before parsing them (a spec is a few kB).
        max_body_size=settings.max_body_bytes,
        # NUL bytes and NaN/Infinity answer 422 before any route runs (service.input_guard).
        dependencies=[Depends(refuse_unsafe_input)],
    )
    app.state.settings = settings
    install_error_handlers(app)
    install_metrics(app, settings)
    # Outermost: a request naming a foreign host (DNS rebinding) reaches nothing of the app.
    app.add_middleware(AllowedHostsMiddleware, allowed=allowed_hosts(settings.allowed_hosts))
    for router in _GUARDED_ROUTERS:
        app.include_router(router, dependencies=[ReadAccess])
    for router in _OPEN_ROUTERS:
        app.include_router(router)
    return app
