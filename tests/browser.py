"""Headless Chromium for the tests that look at a page: driven over its DevTools protocol through
a pipe (``--remote-debugging-pipe``: no port, no extra package). Needs Debian's chromium
(``apt-get install -y chromium``, as ``.ci/run`` does); a test that needs it is skipped without
it, except under CI, where it fails.
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
from pathlib import Path
from typing import Any

import pytest

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
