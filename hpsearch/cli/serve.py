"""The verbs that serve: ``serve`` (the REST API, and the dashboard on its own port) and
``dashboard`` (optuna-dashboard alone)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from hpsearch.cli import options
from hpsearch.cli.command import Command
from hpsearch.cli.sources import database_source
from hpsearch.errors import UsageError

if TYPE_CHECKING:
    from hpsearch.service.settings import Settings

__all__ = ["Dashboard", "Serve", "serve_settings"]

#: The dashboard's port when --dashboard-port is not given (another free one if it is taken).
_DASHBOARD_PORT = 8080


def _allowed_hosts(args: argparse.Namespace) -> list[str]:
    """The host names `serve` and `dashboard` answer to: loopback, --host, env, --allowed-host."""
    from hpsearch.service.hosts import allowed_hosts
    from hpsearch.settings import get_settings

    extra = [*get_settings().allowed_hosts, *args.allowed_host]
    return allowed_hosts(extra, bind_host=args.host)


def serve_settings(args: argparse.Namespace) -> Settings:
    """The service's settings for ``hpsearch serve``: its options over the environment's.

    The app gets them as an object (:func:`hpsearch.service.app.create_app`); nothing is
    written into ``os.environ``.
    """
    from pydantic import ValidationError

    from hpsearch.service.settings import Settings
    from hpsearch.settings import settings_error

    chosen: dict[str, Any] = {
        "storage": database_source(args.storage).url,
        "allowed_hosts": _allowed_hosts(args),
    }
    if args.artifacts is not None:
        chosen["artifacts"] = args.artifacts
    try:
        return Settings(**chosen)
    except ValidationError as e:  # an HPSEARCH_* variable that does not parse
        raise UsageError(settings_error(e)) from None


def _check_port_free(host: str, port: int, *, flag: str, what: str) -> None:
    """Raise UsageError in one line when ``port`` cannot be listened on at ``host``."""
    import socket

    if port == 0:
        return
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM
        )[0]
    except socket.gaierror as e:
        raise UsageError(f"--host {host!r}: {e.strerror}") from e
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as e:
            raise UsageError(
                f"{what} port {port} on {host} is not free ({e.strerror}; another hpsearch "
                f"serve?): pass {flag} with a free port, or {flag} 0 for any"
            ) from e


def _start_dashboard_on_a_port(args: argparse.Namespace, **kwargs: Any) -> Any:
    """The dashboard on --dashboard-port, or without it on 8080 or else any free port."""
    from hpsearch.service.dashboard import start_dashboard

    if args.dashboard_port is not None:
        if args.dashboard_port == args.port and args.port != 0:
            raise UsageError(
                f"--dashboard-port {args.dashboard_port} is the API's --port: give them "
                "different ports"
            )
        try:
            return start_dashboard(host=args.host, port=args.dashboard_port, **kwargs)
        except OSError as e:
            raise UsageError(
                f"dashboard port {args.dashboard_port} on {args.host} is not free "
                f"({e.strerror}): pass --dashboard-port with a free port, 0 for any, or "
                "--no-dashboard"
            ) from e
    preferred = _DASHBOARD_PORT if args.port != _DASHBOARD_PORT else 0
    try:
        return start_dashboard(host=args.host, port=preferred, **kwargs)
    except OSError:
        from urllib.parse import urlsplit

        dashboard = start_dashboard(host=args.host, port=0, **kwargs)
        print(
            f"dashboard port {_DASHBOARD_PORT} is taken: the dashboard uses "
            f"{urlsplit(dashboard.url).port} instead (choose one with --dashboard-port)",
            flush=True,
        )
        return dashboard


class Serve(Command, name="serve", options=(options.STORAGE, options.LISTEN, options.ARTIFACTS)):
    """run the REST service (and the dashboard on its own port)

    Serve the REST API (OpenAPI docs at /docs) and optuna-dashboard over the study database.
    Both answer to the API tokens of that database (`hpsearch token create`): reads need scope
    read unless HPSEARCH_ANONYMOUS_READS=true, changes scope write; in a browser, log in to the
    dashboard at /dashboard/login.
    """

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--port", type=int, default=8000, help="API port (default 8000)")
        parser.add_argument(
            "--dashboard-port", type=int,
            help="dashboard port (default 8080, or another free one if it is taken)",
        )  # fmt: skip
        parser.add_argument("--no-dashboard", action="store_true", help="serve the API only")

    def run(self, args: argparse.Namespace) -> int:
        import uvicorn

        from hpsearch.db.storage import open_storage_when_up, redact
        from hpsearch.service.app import create_app

        settings = serve_settings(args)
        url = settings.storage
        assert url is not None  # serve_settings resolves it
        _check_port_free(args.host, args.port, flag="--port", what="API")  # before the dashboard
        if not args.no_dashboard:
            from hpsearch.analysis.artifacts import open_artifact_store

            # Wait for a PostgreSQL still starting, and create the tables before two servers race
            open_storage_when_up(url, within=settings.startup_retry_seconds)
            store = open_artifact_store(args.artifacts, storage_url=url)
            dashboard = _start_dashboard_on_a_port(
                args, storage_url=url, artifact_store=store, allowed_hosts=settings.allowed_hosts
            )
            print(f"dashboard: {dashboard.url} (log in at {dashboard.url}/login)", flush=True)
        shown = "127.0.0.1" if args.host == "0.0.0.0" else args.host
        print(f"API: http://{shown}:{args.port} (docs at /docs) over {redact(url)}", flush=True)
        uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="warning")
        return 0


class Dashboard(
    Command, name="dashboard", options=(options.STORAGE, options.LISTEN, options.ARTIFACTS)
):
    """run optuna-dashboard over the study database

    Serve optuna-dashboard over the study database, behind its API tokens: reads need a token of
    scope read (unless HPSEARCH_ANONYMOUS_READS=true), changes (notes, tell, rename, delete,
    artifacts) one of scope write. In a browser, log in at /dashboard/login with a token and log
    out at /dashboard/logout; scripts send 'Authorization: Bearer <token>'. The trial view lists
    and serves the --artifacts store's files.
    """

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--port", type=int, default=8080, help="port (default 8080)")

    def run(self, args: argparse.Namespace) -> int:
        import threading

        from hpsearch.analysis.artifacts import open_artifact_store
        from hpsearch.service.dashboard import start_dashboard

        store = open_artifact_store(args.artifacts, storage_url=args.storage)
        try:
            dashboard = start_dashboard(
                args.storage,
                host=args.host,
                port=args.port,
                artifact_store=store,
                allowed_hosts=_allowed_hosts(args),
            )
        except OSError as e:
            raise UsageError(
                f"port {args.port} on {args.host} is not free ({e.strerror}): pass --port with a "
                "free port, or --port 0 for any"
            ) from e
        print(f"dashboard: {dashboard.url} (log in at {dashboard.url}/login)", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            dashboard.stop()
        return 0
