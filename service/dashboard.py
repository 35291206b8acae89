"""optuna-dashboard over the study database (through the trial cache), served on its own port.

Behind the API tokens and the allowed host names (:mod:`hpsearch.service.dashboard_auth`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from socketserver import ThreadingMixIn
from typing import Any, cast
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import bottle
import optuna
import optuna_dashboard

from hpsearch.service import hosts
from hpsearch.analysis.artifacts import ArtifactStore
from hpsearch.service.dashboard_auth import DashboardGuard
from hpsearch.service.dashboard_detail import install_study_details
from hpsearch.db.storage import open_storage_when_up
from hpsearch.db.cache import CachedStorage
from hpsearch.settings import get_settings

__all__ = ["DashboardServer", "start_dashboard"]

log = logging.getLogger(__name__)


def _search_space_cursor_stays_behind() -> bool:
    """Whether this optuna-dashboard rescans every trial on each poll once all have finished.

    Its per-study cache of the search space (``_CachedExtraStudyProperty``) walks the trials
    from the newest back to its cursor, and moves the cursor only to an unfinished trial: with
    none, the cursor stays at -1 and every poll walks the whole study again (23 s of each poll
    at 100,000 trials). Checked by behaviour, so a dashboard that fixed it is left alone.
    """
    from optuna_dashboard import _inmemory_cache

    trial = optuna.trial.create_trial(value=0.0)
    trial.number = 0
    prop = _inmemory_cache._CachedExtraStudyProperty()
    prop.update([trial])
    return prop._cursor < 1


def _move_search_space_cursor_on() -> None:
    """Make optuna-dashboard's search-space cache skip trials it has already seen finished.

    Its own ``update``, with the cursor then set past the newest trial when no trial it walked
    is unfinished (finished trials never change in Optuna, so they need no second look).
    """
    from optuna_dashboard import _inmemory_cache

    cls = _inmemory_cache._CachedExtraStudyProperty
    if getattr(cls.update, "_hpsearch", False) or not _search_space_cursor_stays_behind():
        return
    original = cls.update

    def update(self: Any, trials: list[optuna.trial.FrozenTrial]) -> None:
        cursor = self._cursor
        walked_all_finished = True
        for trial in reversed(trials):  # the trials it is about to walk, as it walks them
            if trial.number < cursor:
                break
            if not trial.state.is_finished():
                walked_all_finished = False
                break
        original(self, trials)
        if trials and walked_all_finished:
            self._cursor = max(self._cursor, trials[-1].number + 1)

    update._hpsearch = True  # type: ignore[attr-defined]
    cls.update = update
    log.debug("optuna-dashboard %s: search-space cursor moved on", optuna_dashboard.__version__)


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass  # the dashboard polls constantly; one line per poll would drown the worker logs


class DashboardServer:
    """A running dashboard: its URL, and ``stop()``."""

    def __init__(self, server: WSGIServer, thread: threading.Thread, url: str) -> None:
        self._server = server
        self._thread = thread
        self.url = url

    def stop(self) -> None:
        """Stop serving and wait for the server thread."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def start_dashboard(
    storage_url: str | None,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    artifact_store: ArtifactStore | None = None,
    anonymous_reads: bool | None = None,
    allowed_hosts: Sequence[str] | None = None,
) -> DashboardServer:
    """Serve optuna-dashboard over the study database in a background thread.

    The dashboard answers to the API tokens of that database (:mod:`hpsearch.service.dashboard_auth`):
    reads need scope read unless ``anonymous_reads`` (default ``$HPSEARCH_ANONYMOUS_READS``),
    writes always need scope write; people log in at ``/dashboard/login``. It answers only to
    the loopback names, ``host`` and ``allowed_hosts`` (default ``$HPSEARCH_ALLOWED_HOSTS``;
    :mod:`hpsearch.service.hosts`). With ``artifact_store``
    (:func:`hpsearch.analysis.artifacts.open_artifact_store`) the dashboard's trial view lists and serves
    the trials' artifacts (the kept ``predictions.npz``). Raises ``OSError`` when the port is
    taken.
    """
    # The dashboard reads whole studies on every poll: through the trial cache it reads only
    # what changed since the last poll (hpsearch.db.cache).
    _move_search_space_cursor_on()
    storage = open_storage_when_up(storage_url, within=get_settings().startup_retry_seconds)
    cached = CachedStorage(storage)
    dashboard = optuna_dashboard.wsgi(cached, artifact_store=artifact_store)
    # A big study's view shows within seconds and fills in over a few polls.
    install_study_details(cast(bottle.Bottle, dashboard), cached)
    if anonymous_reads is None:
        anonymous_reads = get_settings().anonymous_reads
    app = DashboardGuard(
        dashboard,
        storage=storage,
        anonymous_reads=anonymous_reads,
        allowed_hosts=hosts.allowed_hosts(allowed_hosts, bind_host=host),
    )
    server = make_server(
        host, port, app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, name="dashboard", daemon=True)
    thread.start()
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return DashboardServer(server, thread, f"http://{shown}:{server.server_port}/dashboard")
