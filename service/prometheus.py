"""Prometheus metrics of one app: study-database gauges computed at scrape time, request latency.

Every app gets its own :class:`~prometheus_client.CollectorRegistry` (tests build many apps in
one process; the global registry would refuse the second). Two kinds of metrics live in it:

- gauges read from the study database when ``/metrics`` is scraped, by a few counting SQL
  queries that never load a trial (so a scrape costs the same with ten or a million trials):

  - ``hpsearch_trials{study,state}``: trials of each hpsearch study by state (``complete``,
    ``pruned``, ``fail``, ``running``, ``waiting``; states with no trial are 0);
  - ``hpsearch_studies{state}``: hpsearch studies that are ``open`` or ``done`` (budget
    spent, as :func:`hpsearch.studies.done_reason` decides);
  - ``hpsearch_trial_duration_seconds{study,state}``: a summary (``_count`` and ``_sum``) of
    the wall-clock durations of ``complete`` and ``pruned`` trials, so that
    ``_sum / _count`` is the mean duration; ``hpsearch_trial_duration_max_seconds`` is the
    longest one;
  - ``hpsearch_live_workers`` (all) and ``hpsearch_live_workers_by_device{device}``: workers
    whose heartbeat is within the grace period (see :mod:`hpsearch.db.fleet`);
  - ``hpsearch_database_up``: 1 when those queries answered, else 0 (and no other gauge).

- ``hpsearch_http_request_duration_seconds{method,route,status}``: a histogram of request
  latency observed by :class:`LatencyMiddleware`, labelled with the route's template
  (``/studies/{name}``), never the raw path, so that the label set stays bounded. Requests that
  match no route are labelled ``route="<unmatched>"``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import optuna
import sqlalchemy
from fastapi import FastAPI, Response
from optuna.trial import TrialState
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hpsearch.db import fleet
from hpsearch.db.queries import duration_sql, trial_counts_by_state
from hpsearch.errors import HpsearchError
from hpsearch.db.storage import open_storage
from hpsearch.studies import SPEC_ATTR, study_states
from hpsearch.service.settings import Settings

__all__ = [
    "METRICS_PATH",
    "UNMATCHED_ROUTE",
    "LatencyMiddleware",
    "StudyDatabaseCollector",
    "install_metrics",
]

log = logging.getLogger("service")

#: The ``route`` label of requests that matched no route (404s for unknown paths).
UNMATCHED_ROUTE = "<unmatched>"
#: Where ``hpsearch.service.routers.metrics`` serves the registry.
METRICS_PATH = "/metrics"

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

#: The hpsearch studies (those with a spec), as a condition on ``studies s``.
_HPSEARCH_STUDIES = (
    "EXISTS (SELECT 1 FROM study_user_attributes a WHERE a.study_id = s.study_id AND a.key = :key)"
)


def _durations_query(seconds: str) -> sqlalchemy.TextClause:
    return sqlalchemy.text(
        f"SELECT s.study_name, t.state, COUNT(*), SUM({seconds}), MAX({seconds}) FROM trials t "
        "JOIN studies s ON s.study_id = t.study_id "
        "JOIN study_user_attributes a ON a.study_id = s.study_id AND a.key = :key "
        "WHERE t.state IN ('COMPLETE', 'PRUNED') "
        "AND t.datetime_start IS NOT NULL AND t.datetime_complete IS NOT NULL "
        "GROUP BY s.study_name, t.state"
    )


class StudyDatabaseCollector(Collector):
    """Gauges of the study database at ``settings.storage``, read at every scrape.

    A database that does not answer gives ``hpsearch_database_up 0`` and no other gauge: the
    scrape itself still succeeds, so the outage is visible instead of a failed target.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def describe(self) -> list[Metric]:
        # Without describe(), registering would call collect() and hit the database.
        return []

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "hpsearch_database_up", "1 when the study database answered this scrape's queries."
        )
        try:
            families = self._families(open_storage(self._settings.storage))
        except (sqlalchemy.exc.SQLAlchemyError, HpsearchError) as e:
            log.warning("metrics: the study database did not answer: %s", e)
            yield from _database_down()
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _families(self, storage: optuna.storages.RDBStorage) -> list[Metric]:
        params = {"key": SPEC_ATTR}
        seconds = duration_sql(storage.engine.dialect.name)
        states = study_states(storage)  # the same state as every study's status
        with storage.engine.connect() as conn:
            by_name = trial_counts_by_state(
                conn, studies_where=_HPSEARCH_STUDIES, params=params, key="study_name"
            )
            result = conn.execute(_durations_query(seconds), params) if seconds else None
            duration_rows = result.all() if result is not None else []
        live = fleet.live_workers(storage)

        # Only studies with a state: not those whose spec this version cannot read.
        counts: dict[str, dict[TrialState, int]] = {
            name: by_name.get(name, dict.fromkeys(TrialState, 0)) for name in states
        }

        trials = GaugeMetricFamily(
            "hpsearch_trials", "Trials of each hpsearch study by state.", labels=["study", "state"]
        )
        studies = GaugeMetricFamily(
            "hpsearch_studies",
            "hpsearch studies that take trials (open), are stopped by a user, are done, or "
            "failed on an error that recurs on every trial.",
            labels=["state"],
        )
        by_state = {"open": 0, "stopped": 0, "done": 0, "failed": 0}
        for name in sorted(states):
            for state, n in counts[name].items():
                trials.add_metric([name, state.name.lower()], n)
            by_state[states[name]] += 1
        for study_state, n in by_state.items():
            studies.add_metric([study_state], n)

        durations = SummaryMetricFamily(
            "hpsearch_trial_duration_seconds",
            "Wall-clock duration of finished trials (complete or pruned) per study.",
            labels=["study", "state"],
        )
        longest = GaugeMetricFamily(
            "hpsearch_trial_duration_max_seconds",
            "The longest finished trial (complete or pruned) per study.",
            labels=["study", "state"],
        )
        for name, state, n, total, most in duration_rows:
            labels = [name, state.lower()]
            durations.add_metric(labels, count_value=n, sum_value=float(total or 0.0))
            longest.add_metric(labels, float(most or 0.0))

        workers = GaugeMetricFamily(
            "hpsearch_live_workers", "Workers whose heartbeat is within the grace period."
        )
        workers.add_metric([], len(live))
        by_device = GaugeMetricFamily(
            "hpsearch_live_workers_by_device", "Live workers by device.", labels=["device"]
        )
        devices: dict[str, int] = {}
        for worker in live:
            devices[worker.device] = devices.get(worker.device, 0) + 1
        for device, n in sorted(devices.items()):
            by_device.add_metric([device], n)
        return [trials, studies, durations, longest, workers, by_device]


def _database_down() -> Iterator[Metric]:
    up = GaugeMetricFamily(
        "hpsearch_database_up", "1 when the study database answered this scrape's queries."
    )
    up.add_metric([], 0)
    yield up


class _OutageCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        return _database_down()


def outage_metrics() -> Response:
    """The scrape's answer while the study database is down: 200, ``hpsearch_database_up 0``.

    The error handlers answer ``/metrics`` with it when the database fails before the route
    runs (its token check reads the database); nothing else is reported, since the token could
    not be checked.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_OutageCollector())
    return Response(content=generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


class LatencyMiddleware:
    """Observe each HTTP request's duration, labelled with method, route template and status."""

    def __init__(self, app: ASGIApp, *, histogram: Histogram) -> None:
        self.app = app
        self.histogram = histogram

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the client gets when the app raises before it answers

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            # The router writes the matched route into the same scope dict.
            route = getattr(scope.get("route"), "path", None) or UNMATCHED_ROUTE
            self.histogram.labels(scope["method"], route, str(status)).observe(
                time.perf_counter() - start
            )


def install_metrics(app: FastAPI, settings: Settings) -> CollectorRegistry:
    """Give ``app`` its own registry (on ``app.state.metrics_registry``) and the latency middleware.

    The ``/metrics`` route (``hpsearch.service.routers.metrics``) renders that registry.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StudyDatabaseCollector(settings))
    histogram = Histogram(
        "hpsearch_http_request_duration_seconds",
        "Latency of HTTP requests by method, route template and status.",
        labelnames=["method", "route", "status"],
        buckets=_LATENCY_BUCKETS,
        registry=registry,
    )
    app.add_middleware(LatencyMiddleware, histogram=histogram)
    app.state.metrics_registry = registry
    return registry
