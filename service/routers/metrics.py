"""Prometheus metrics: the study database's gauges and the API's request latency."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from hpsearch.service.deps import FleetAccess

router = APIRouter(tags=["metrics"], dependencies=[FleetAccess])


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(request: Request) -> Response:
    """Metrics in Prometheus' text format; the gauges are counted in the database per scrape.

    See ``hpsearch.service.prometheus`` for each metric and its labels.
    """
    body = generate_latest(request.app.state.metrics_registry)
    return Response(content=body, media_type=CONTENT_TYPE_LATEST)
