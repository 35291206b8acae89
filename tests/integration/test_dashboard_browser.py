"""A person in a real (headless) browser logs in to the dashboard, writes, and logs out.

Chromium is driven over its DevTools protocol through a pipe (``--remote-debugging-pipe``: no
port, no extra package). Needs Debian's chromium (``apt-get install -y chromium``, as
``.ci/run`` does); skipped without it, except under CI, where it fails.

Set ``HPSEARCH_SCREENSHOT_DIR`` to keep screenshots of the login page and the dashboard.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import optuna
import pytest

from hpsearch.service.dashboard import DashboardServer, start_dashboard
from hpsearch.db.storage import open_storage

from browser import Browser, _need_chromium


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


def test_the_dashboard_plots_the_pareto_front_with_the_objectives_names(
    browser: Browser, sqlite_url: str, free_port: int
) -> None:
    from hpsearch import studies
    from hpsearch.worker import run_worker

    spec = {
        "name": "trade-off",
        "space": {
            "params": {
                "x": {"type": "float", "low": 0.0, "high": 1.0, "default": 0.5},
                "y": {"type": "float", "low": 0.0, "high": 1.0, "default": 0.5},
            }
        },
        "objectives": {"error": "minimize", "size": "minimize"},
        "budget": {"trials": 6},
    }
    studies.create_study(open_storage(sqlite_url), spec)
    assert run_worker(sqlite_url, study="trade-off", objective="objectives:trade_off") == 6
    sid = open_storage(sqlite_url).get_study_id_from_name("trade-off")
    server = start_dashboard(sqlite_url, port=free_port, anonymous_reads=True, allowed_hosts=[])
    try:
        browser.go(f"{server.url}/studies/{sid}")
        browser.wait_for("document.body.innerText.includes('Pareto Front')")
        text = browser.evaluate("document.body.innerText")
        # The plot's axes are the objectives by name (the study's metric names), not "Objective 0".
        x_axis = text.split("Objective X:", 1)[1].split("Objective Y:", 1)
        assert x_axis[0].strip().startswith("error"), text[:2000]
        assert x_axis[1].strip().startswith("size"), text[:2000]
    finally:
        server.stop()


def test_a_big_study_opens_at_once_and_the_page_fills_in_every_trial(
    browser: Browser, sqlite_url: str, free_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Answers cut short (service/dashboard_detail.py): the page shows the first trials, then
    asks for the rest on its own polls until its trial list counts every trial."""
    from hpsearch.db import cache
    from hpsearch.service import dashboard_detail

    n = 1_100
    study = optuna.create_study(storage=sqlite_url, study_name="big")
    study.add_trials(
        [
            optuna.trial.create_trial(params={"x": i / n}, distributions={"x": _X}, value=i / n)
            for i in range(n)
        ]  # fmt: skip
    )
    monkeypatch.setattr(dashboard_detail, "ANSWER_SECONDS", 0.01)  # every answer cut short
    monkeypatch.setattr(cache, "_FILL_CHUNK", 100)
    server = start_dashboard(sqlite_url, port=free_port, anonymous_reads=True, allowed_hosts=[])
    try:
        browser.go(f"{server.url}/studies/{study._study_id}/trials")
        first = browser.wait_for(_ROWS_OF)
        assert first < n, first  # shown before the page has them all ...
        browser.wait_for(f"({_ROWS_OF}) === {n}", timeout=90)  # ... then every one
    finally:
        server.stop()


_X = optuna.distributions.FloatDistribution(0.0, 1.0)
#: The count atop the trial list ("1100 Trials"), or 0 before it shows.
_ROWS_OF = (
    "(() => { const m = document.body.innerText.match(/([0-9,]+) Trials/); "
    "return m ? Number(m[1].replace(/,/g, '')) : 0 })()"
)
