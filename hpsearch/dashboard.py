"""optuna-dashboard over the study database (through the trial cache), served on its own port."""

from __future__ import annotations

import threading
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import optuna_dashboard

from hpsearch.artifacts import ArtifactStore
from hpsearch.storage import open_storage
from hpsearch.trial_cache import CachedStorage

__all__ = ["DashboardServer", "start_dashboard"]


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib's name
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
) -> DashboardServer:
    """Serve optuna-dashboard over the study database in a background thread.

    With ``artifact_store`` (:func:`hpsearch.artifacts.open_artifact_store`) the dashboard's
    trial view lists and serves the trials' artifacts (the kept ``predictions.npz``). Raises
    ``OSError`` when the port is taken.
    """
    # The dashboard reads whole studies on every poll: through the trial cache it reads only
    # what changed since the last poll (hpsearch.trial_cache).
    app = optuna_dashboard.wsgi(
        CachedStorage(open_storage(storage_url)), artifact_store=artifact_store
    )
    server = make_server(
        host, port, app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, name="dashboard", daemon=True)
    thread.start()
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return DashboardServer(server, thread, f"http://{shown}:{server.server_port}/dashboard")
