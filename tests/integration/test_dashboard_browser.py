"""A person in a real (headless) browser logs in to the dashboard, writes, and logs out.

Chromium is driven over its DevTools protocol through a pipe (``--remote-debugging-pipe``: no
port, no extra package). Needs Debian's chromium (``apt-get install -y chromium``, as
``.ci/run`` does); skipped without it, except under CI, where it fails.

Set ``HPSEARCH_SCREENSHOT_DIR`` to keep screenshots of the login page and the dashboard.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import optuna
import pytest

from hpsearch.service.dashboard import DashboardServer, start_dashboard
from hpsearch.db.storage import open_storage

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,860",
    "--remote-debugging-pipe",
]


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _need_chromium() -> None:
    if os.access(CHROMIUM, os.X_OK):
        return
    if _in_ci():
        pytest.fail(
            f"chromium is required under CI but {CHROMIUM} is missing: "
            "`apt-get install -y chromium` (as .ci/run does)",
            pytrace=False,
        )
    pytest.skip(f"no chromium at {CHROMIUM}")


class Browser:
    """Chromium over the DevTools protocol: one page, commands answered in order of asking."""

    def __init__(self, user_data_dir: Path) -> None:
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        # Chromium reads commands from fd 3 and writes answers to fd 4; bash puts them there
        # (no preexec_fn: the dashboard's server thread is running; dash takes fds 0-9 only).
        self.proc = subprocess.Popen(
            [
                "bash",
                "-c",
                f'exec "$@" 3<&{to_chrome_r} 4>&{from_chrome_w}',
                "bash",
                CHROMIUM,
                *_FLAGS,
                f"--user-data-dir={user_data_dir}",
                "about:blank",
            ],
            pass_fds=(to_chrome_r, from_chrome_w),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._answers: dict[int, queue.Queue[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._next_id = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        self.call("Page.enable", session=True)

    def _read(self) -> None:
        buffer = b""
        while True:
            chunk = os.read(self._from_chrome, 65536)
            if not chunk:
                return
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for raw in messages:
                message = json.loads(raw)
                if "id" in message:
                    with self._lock:
                        box = self._answers.get(message["id"])
                    if box is not None:
                        box.put(message)

    def call(self, method: str, *, session: bool = False, **params: Any) -> dict[str, Any]:
        with self._lock:
            self._next_id += 1
            ident = self._next_id
            box: queue.Queue[dict[str, Any]] = queue.Queue()
            self._answers[ident] = box
        message: dict[str, Any] = {"id": ident, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        try:
            answer = box.get(timeout=60)
        except queue.Empty:
            raise AssertionError(f"chromium did not answer {method}") from None
        if "error" in answer:
            raise AssertionError(f"{method}: {answer['error']}")
        return answer["result"]

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.call(
            "Runtime.evaluate",
            session=True,
            expression=expression,
            awaitPromise=True,
            returnByValue=True,
        )
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.evaluate(expression)
            except AssertionError:  # the page is navigating: no context to evaluate in
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                url = self.evaluate("location.href")
                text = self.evaluate("document.body ? document.body.innerText : ''")
                raise AssertionError(f"never true: {expression} (at {url}: {text[:500]!r})")
            time.sleep(0.2)

    def go(self, url: str) -> None:
        self.call("Page.navigate", session=True, url=url)

    def screenshot(self, name: str) -> None:
        folder = os.environ.get("HPSEARCH_SCREENSHOT_DIR")
        if not folder:
            return
        data = self.call("Page.captureScreenshot", session=True, format="png")["data"]
        Path(folder, name).write_bytes(base64.b64decode(data))

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except (AssertionError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_chrome)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    _need_chromium()
    b = Browser(tmp_path / "chromium-profile")
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def served(sqlite_url: str, free_port: int) -> Iterator[tuple[DashboardServer, int]]:
    storage = open_storage(sqlite_url)
    study = optuna.create_study(storage=storage, study_name="browser-study")
    study.optimize(lambda t: t.suggest_float("x", -1, 1) ** 2, n_trials=5)
    server = start_dashboard(sqlite_url, port=free_port, anonymous_reads=False, allowed_hosts=[])
    try:
        yield server, study._study_id
    finally:
        server.stop()


def _note(sqlite_url: str, study_id: int) -> str:
    attrs = open_storage(sqlite_url).get_study_system_attrs(study_id)
    return json.dumps(attrs)


_PUT_NOTE = (
    "fetch('/api/studies/{sid}/note', {{method: 'PUT', headers: {{'Content-Type': "
    "'application/json'}}, body: JSON.stringify({{version: {version}, body: {body!r}}})}})"
    ".then(r => r.status)"
)


def _put_note_from(browser: Browser, base: str, sid: int, version: int, body: str) -> int:
    """Try to save a note with fetch() from a page of the dashboard's origin (the login page
    forbids scripts any connection), as the dashboard's own page would; its status."""
    browser.go(f"{base}/no-such-page")  # the dashboard's (JSON) refusal: a page of its origin
    browser.wait_for("location.pathname === '/no-such-page' && document.readyState === 'complete'")
    return browser.evaluate(_PUT_NOTE.format(sid=sid, version=version, body=body))


def test_a_person_logs_in_writes_a_note_and_logs_out(
    browser: Browser, served: tuple[DashboardServer, int], sqlite_url: str, make_api_token
) -> None:
    server, sid = served
    base = server.url.rsplit("/dashboard", 1)[0]
    write = make_api_token(sqlite_url, "write")

    # Without a login, the dashboard's page sends the browser to the login form.
    browser.go(server.url)
    browser.wait_for("location.pathname === '/dashboard/login'")
    browser.wait_for("!!document.getElementById('token')")
    browser.screenshot("dashboard-login.png")
    assert _put_note_from(browser, base, sid, 1, "anonymous") == 401
    browser.go(server.url)
    browser.wait_for("!!document.getElementById('token')")

    # A wrong token: a clear error, and still the form.
    browser.evaluate("document.getElementById('token').value = 'hps_wrong'")
    browser.evaluate("document.querySelector('#login button').click()")
    browser.wait_for("!!document.getElementById('error')")
    assert "unknown or revoked" in browser.evaluate("document.getElementById('error').innerText")

    # The right one: back to the dashboard, which lists the study.
    browser.evaluate(f"document.getElementById('token').value = {write!r}")
    browser.evaluate("document.querySelector('#login button').click()")
    browser.wait_for("location.pathname === '/dashboard'")
    browser.wait_for("document.body.innerText.includes('browser-study')")
    assert browser.evaluate("document.cookie") == "", "the login cookie must be HttpOnly"

    # A note, saved from the page with the login (no token in the page's script).
    status = browser.evaluate(_PUT_NOTE.format(sid=sid, version=1, body="saved from the browser"))
    assert status == 204
    assert "saved from the browser" in _note(sqlite_url, sid)
    browser.go(f"{base}/dashboard/studies/{sid}/note")
    browser.wait_for("document.body.innerText.includes('saved from the browser')")
    browser.screenshot("dashboard-logged-in.png")

    # Log out: the note can no longer be changed.
    browser.go(f"{base}/dashboard/logout")
    browser.wait_for("!!document.getElementById('logout')")
    browser.evaluate("document.querySelector('#logout button').click()")
    browser.wait_for("!!document.getElementById('note')")
    assert "logged out" in browser.evaluate("document.body.innerText")
    assert _put_note_from(browser, base, sid, 2, "after logout") == 401
    assert "after logout" not in _note(sqlite_url, sid)
    browser.go(server.url)
    browser.wait_for("location.pathname === '/dashboard/login'")


class _AttackerPage(BaseHTTPRequestHandler):
    """A page of another origin on the same host: it posts a form to the dashboard."""

    target = ""

    def do_GET(self) -> None:
        body = (
            "<!doctype html><form id=f method=post enctype=text/plain "
            f'action="{self.target}"><input name=\'{{"version":1,"body":"forged","x":"\' '
            "value='\"}'></form><script>document.getElementById('f').submit()</script>"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_page_on_another_port_cannot_write_through_a_login(
    browser: Browser, served: tuple[DashboardServer, int], sqlite_url: str, make_api_token
) -> None:
    server, sid = served
    base = server.url.rsplit("/dashboard", 1)[0]
    write = make_api_token(sqlite_url, "write")
    browser.go(f"{base}/dashboard/login")
    browser.wait_for("!!document.getElementById('token')")
    browser.evaluate(f"document.getElementById('token').value = {write!r}")
    browser.evaluate("document.querySelector('#login button').click()")
    browser.wait_for("location.pathname === '/dashboard'")

    # Same host, another port: the same *site*, so the SameSite cookie goes along; the
    # dashboard refuses the write by its Origin.
    handler = type("Attacker", (_AttackerPage,), {"target": f"{base}/api/studies/{sid}/note"})
    attacker = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=attacker.serve_forever, daemon=True)
    thread.start()
    try:
        before = _note(sqlite_url, sid)
        browser.go(f"http://127.0.0.1:{attacker.server_address[1]}/")
        browser.wait_for("document.body && document.body.innerText.includes('own page')")
        assert _note(sqlite_url, sid) == before
        assert "forged" not in _note(sqlite_url, sid)
    finally:
        attacker.shutdown()
        attacker.server_close()
