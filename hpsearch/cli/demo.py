"""``hpsearch demo``: the whole path on bundled data, in one command.

It starts the real pieces as separate processes, as a user would: the service (with the
dashboard) and local workers over one SQLite file, submits the demo study over HTTP, shows
progress, and prints the best config and where to look. The demo creates an API token with
scope write for itself in that database (``demo-<random>``), submits with it and revokes it
when it stops; its local service allows anonymous reads so the printed links open in a browser.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from hpsearch.api_types import StudyStatus
from hpsearch.client import Client, ServiceUnreachable
from hpsearch.cli.output import format_config, progress_line
from hpsearch.errors import HpsearchError
from hpsearch.db.storage import open_storage, redact, resolve_storage_url
from hpsearch.db.tokens import create_token, revoke_token

__all__ = ["demo_spec", "run_demo"]


def demo_spec(*, trials: int, epochs: int) -> dict[str, Any]:
    """The demo study: the `demo` space on scikit-learn's digits, the impact prior, median pruning."""
    return {
        "name": f"demo-{dt.datetime.now():%Y%m%d-%H%M%S}",
        "space": "demo",
        "task": {"dataset": "digits", "epochs": epochs},
        "metric": "val_accuracy",
        "budget": {"trials": trials},
        "strategy": "impact",
        "pruner": {"name": "median"},
        "seed": 0,
    }


def _free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise HpsearchError("no free TCP port on 127.0.0.1")


def _absolute(url: str) -> str:
    """The storage URL with a relative SQLite path made absolute: it works from any folder."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return url
    if parsed.database == ":memory:" or os.path.isabs(parsed.database):
        return url
    return parsed.set(database=os.path.abspath(parsed.database)).render_as_string(
        hide_password=False
    )


def _export_lines(server: str, storage: str, dashboard: str, *, moved: bool) -> list[str]:
    """The shell lines that point this shell's `hpsearch status`, `best`, ... at the demo.

    Printed when the demo's ports moved, or when the environment points elsewhere: without
    them `hpsearch status` would silently read another service or database.
    """
    from hpsearch.settings import get_settings

    settings = get_settings()
    env_server = (settings.server or "").strip().rstrip("/")
    env_storage = (settings.storage or "").strip()
    if not moved and env_server in ("", server) and env_storage in ("", storage):
        return []
    lines = ["to read this demo's studies from another shell (`hpsearch status`, `best`, ...):"]
    if env_storage and env_storage != storage:
        lines.append("  unset HPSEARCH_STORAGE   # it wins over HPSEARCH_SERVER")
    lines.append(f"  export HPSEARCH_SERVER={server}")
    lines.append(f"  (or read the database itself: export HPSEARCH_STORAGE={storage})")
    lines.append(f"the dashboard of this demo: {dashboard}")
    return lines


def _no_orphans() -> None:
    # Runs in each child before it starts: it gets SIGTERM when the demo dies, even by SIGKILL.
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):
        pass


@contextmanager
def _stopped_like_ctrl_c() -> Iterator[Callable[[], None]]:
    """SIGTERM and SIGHUP stop the demo as Ctrl-C does (children stopped, token revoked).

    Yields a function to call before the clean-up: from then on those signals are ignored, so
    that a second one cannot cut the clean-up short.
    """
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signals = (signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, interrupt) for sig in signals}

    def cleaning_up() -> None:
        for sig in signals:
            signal.signal(sig, signal.SIG_IGN)

    try:
        yield cleaning_up
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _Processes:
    """Child processes with their logs, all stopped together."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        self._cleanups: list[Callable[[], object]] = []

    def on_stop(self, cleanup: Callable[[], object]) -> None:
        self._cleanups.append(cleanup)

    def start(
        self, name: str, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log_path = self.log_dir / f"{name}.log"
        log = open(log_path, "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [sys.executable, "-m", "hpsearch", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            preexec_fn=_no_orphans if sys.platform == "linux" else None,  # noqa: PLW1509
        )
        self.children.append((name, proc, log_path))
        return proc

    def tail(self, name: str, lines: int = 15) -> str:
        for child_name, _proc, log_path in self.children:
            if child_name == name:
                return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        for cleanup in self._cleanups:
            try:
                cleanup()
            except Exception as e:  # noqa: BLE001 - the children must be stopped regardless
                print(f"while stopping: {e}", file=sys.stderr)
        for _name, proc, _log in self.children:
            if proc.poll() is None:
                proc.terminate()
        for _name, proc, _log in self.children:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def _wait_for_service(client: Client, procs: _Processes, serve: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while True:
        if serve.poll() is not None:
            raise HpsearchError(f"the service exited at start-up:\n{procs.tail('serve')}")
        try:
            client.health()
            return
        except ServiceUnreachable:
            if time.monotonic() > deadline:
                raise HpsearchError(
                    f"the service did not answer in 60 s:\n{procs.tail('serve')}"
                ) from None
            time.sleep(0.3)


def _show_progress(
    client: Client, name: str, procs: _Processes, workers: list[subprocess.Popen[bytes]]
) -> StudyStatus:
    interactive = sys.stdout.isatty()
    last_print = 0.0
    while True:
        status = client.study(name)
        line = progress_line(status)
        now = time.monotonic()
        if interactive:
            print(f"\r{line}", end="", flush=True)
        elif now - last_print >= 5 or status["done"]:
            print(line, flush=True)
            last_print = now
        if status["done"]:
            if interactive:
                print()
            return status
        if all(w.poll() is not None for w in workers):
            if interactive:
                print()
            raise HpsearchError(
                f"every worker exited before the study was done:\n{procs.tail('worker-1')}"
            )
        time.sleep(1.0)


def run_demo(
    *,
    storage: str | None,
    port: int,
    dashboard_port: int,
    workers: int,
    trials: int,
    epochs: int,
    keep_serving: bool,
) -> int:
    """Run the demo end to end; returns the exit status."""
    if workers < 1 or trials < 1 or epochs < 1:
        raise HpsearchError("--workers, --trials and --epochs must be at least 1")
    url = _absolute(resolve_storage_url(storage))  # the export line works from any folder
    api_port = _free_port(port)
    dash_port = _free_port(dashboard_port)
    moved = bool((port and api_port != port) or (dashboard_port and dash_port != dashboard_port))
    if moved:
        print(f"ports {port}/{dashboard_port} are taken; using {api_port}/{dash_port}")
    exports = _export_lines(
        f"http://127.0.0.1:{api_port}",
        redact(url),
        f"http://127.0.0.1:{dash_port}/dashboard",
        moved=moved,
    )
    if exports:
        print("\n".join(exports), flush=True)
    log_dir = Path(tempfile.mkdtemp(prefix="hpsearch-demo-"))
    procs = _Processes(log_dir)
    started = time.monotonic()
    with _stopped_like_ctrl_c() as cleaning_up:
        try:
            return _run(
                procs, url=url, api_port=api_port, dash_port=dash_port, workers=workers,
                trials=trials, epochs=epochs, keep_serving=keep_serving, started=started,
                log_dir=log_dir, exports=exports,
            )  # fmt: skip
        except KeyboardInterrupt:
            print("\nstopping", flush=True)
            return 0
        finally:
            cleaning_up()
            procs.stop()


def _run(
    procs: _Processes,
    *,
    url: str,
    api_port: int,
    dash_port: int,
    workers: int,
    trials: int,
    epochs: int,
    keep_serving: bool,
    started: float,
    log_dir: Path,
    exports: list[str],
) -> int:
    """The demo's steps; run_demo stops everything they started, however they end."""
    token_name = f"demo-{secrets.token_hex(4)}"
    storage = open_storage(url)
    _info, secret = create_token(storage, token_name, scopes="write")
    procs.on_stop(lambda: revoke_token(storage, token_name))
    serve = procs.start(
        "serve",
        "serve",
        "--storage",
        url,
        "--port",
        str(api_port),
        "--dashboard-port",
        str(dash_port),
        env={"HPSEARCH_ANONYMOUS_READS": "true"},  # a local demo: links open in a browser
    )
    client = Client(f"http://127.0.0.1:{api_port}", token=secret)
    procs.on_stop(client.close)
    _wait_for_service(client, procs, serve)
    spec = demo_spec(trials=trials, epochs=epochs)
    name = client.create_study(spec)["name"]
    print(f"study {name}: {trials} trials of up to {epochs} epochs on digits, {workers} workers")
    print(f"storage {url}; logs in {log_dir}")
    print(f"submitted with API token {token_name} (write), revoked when the demo stops")
    worker_procs = [
        procs.start(
            f"worker-{i + 1}",
            "worker",
            "--storage",
            url,
            "--study",
            name,
            "--gpus",
            "none",
            "--threads",
            "1",
        )
        for i in range(workers)
    ]
    status = _show_progress(client, name, procs, worker_procs)
    for w in worker_procs:
        w.wait()
    best = client.best(name)
    print(f"\ndone in {time.monotonic() - started:.0f} s: {status['done_reason']}")
    print(f"best trial #{best['number']}: {status['metric']} = {best['value']:.4f}")
    print("\n".join(format_config(best["config"])))
    print(
        f"\nAPI docs:   http://127.0.0.1:{api_port}/docs"
        f"\nstudy:      http://127.0.0.1:{api_port}/studies/{name}"
        f"\nbest:       http://127.0.0.1:{api_port}/studies/{name}/best"
        f"\nreport:     http://127.0.0.1:{api_port}/studies/{name}/report"
        f"\ndashboard:  http://127.0.0.1:{dash_port}/dashboard (read-only; to write notes "
        f"or tell trials, log in at /dashboard/login with a token from "
        f"`hpsearch token create NAME --scope write --storage {url}`)"
        f"\nerror analysis of the best trial as HTML: hpsearch report {name} "
        f"--storage {url}"
    )
    if exports:  # again, as the first ones have scrolled away
        print("\n" + "\n".join(exports))
    if keep_serving:
        print("\nserving until Ctrl-C (or SIGTERM) ...", flush=True)
        serve.wait()
    return 0
