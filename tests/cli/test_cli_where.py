"""Where the `hpsearch` command reads and writes, as a user runs it: real processes, real pipes.

One rule for --storage against --server, a line on stderr saying where each read went, reads
that never create a database, a quiet end when the reader of a pipe leaves, `serve` beside a
taken dashboard port, `demo` stopped by SIGTERM, and /docs in a browser with no network.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy.engine import make_url

from hpsearch import studies
from hpsearch.db import tokens
from hpsearch.db.storage import open_storage

HPSEARCH = [sys.executable, "-m", "hpsearch"]


def _env(**extra: str) -> dict[str, str]:
    """This process's environment without the variables that pick a source, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in ("HPSEARCH_STORAGE", "HPSEARCH_SERVER")}
    return {**env, **extra}


def _run_all(
    runs: dict[str, tuple[list[str], dict[str, str]]], *, cwd: Path | None = None
) -> dict[str, subprocess.CompletedProcess[str]]:
    """Run several `hpsearch` commands at once (each start imports optuna: seconds apiece)."""
    procs = {
        key: subprocess.Popen(
            [*HPSEARCH, *args],
            env=env,
            cwd=cwd,
            text=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for key, (args, env) in runs.items()
    }
    done = {}
    for key, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        done[key] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    return done


def _study_with_a_result(url: str, name: str, value: float = 0.9) -> None:
    storage = open_storage(url)
    studies.create_study(storage, {"name": name, "space": "demo", "budget": {"trials": 5}})
    study, _ = studies.open_study(storage, name)
    trial = study.ask()
    trial.set_user_attr("config", {"optim.lr": 0.01, "model.width": 64})
    study.tell(trial, value)


def test_one_rule_for_storage_and_server_and_each_read_says_where(
    tmp_path, live_service, sqlite_url, make_api_token
):
    a, b = f"sqlite:///{tmp_path}/a.db", f"sqlite:///{tmp_path}/b.db"
    _study_with_a_result(a, "in-a")
    _study_with_a_result(b, "in-b")
    _study_with_a_result(sqlite_url, "in-served")  # the database live_service serves
    token = make_api_token(sqlite_url, "write")
    configs = tmp_path / "configs.yaml"
    configs.write_text("- {optim.lr: 0.003}\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: made-here\nspace: demo\nbudget: {trials: 2}\n")
    c = f"sqlite:///{tmp_path}/c.db"
    on_a = _env(HPSEARCH_STORAGE=a, HPSEARCH_API_TOKEN=token)
    runs = _run_all(
        {
            "env storage": (["status"], on_a),
            "flag storage beats env": (["status", "--storage", b], on_a),
            "flag server beats env": (["status", "--server", live_service], on_a),
            "both env: storage wins": (
                ["status"], {**on_a, "HPSEARCH_SERVER": live_service}
            ),
            "env server": (
                ["trials", "in-served", "--json"],
                _env(HPSEARCH_SERVER=live_service, HPSEARCH_API_TOKEN=token),
            ),
            "both flags": (["best", "in-a", "--storage", a, "--server", live_service], on_a),
            "password hidden": (
                ["status"], _env(HPSEARCH_SERVER="http://ann:hunter2@127.0.0.1:9")
            ),
            # Writes straight to the database, as Optuna's CLI does: no service, no token.
            "stop": (["stop", "in-b", "--storage", b], _env()),
            "pruner": (["pruner", "in-a", "asha", "--arg", "reduction_factor=2"], on_a),
            "enqueue": (["enqueue", "in-a", str(configs)], on_a),
            "trials": (["trials", "in-b", "--storage", b], _env()),
            "submit": (["submit", str(spec), "--storage", c], _env()),  # may create c.db
        }
    )  # fmt: skip
    for key, out in runs.items():
        assert "Traceback" not in out.stderr, (key, out.stderr)

    def said(key: str, where: str, why: str) -> None:
        first = runs[key].stderr.splitlines()[0]
        assert first.startswith(f"reading {where}") and why in first, (key, runs[key].stderr)

    assert "in-a" in runs["env storage"].stdout and "in-b" not in runs["env storage"].stdout
    said("env storage", a, "($HPSEARCH_STORAGE)")
    flag = runs["flag storage beats env"]
    assert "in-b" in flag.stdout and "in-a" not in flag.stdout, flag.stderr
    said("flag storage beats env", b, "(--storage)")
    served = runs["flag server beats env"]
    assert "in-served" in served.stdout and "in-a" not in served.stdout, served.stderr
    said("flag server beats env", live_service, "(--server)")
    both = runs["both env: storage wins"]
    assert "in-a" in both.stdout and "in-served" not in both.stdout
    said("both env: storage wins", a, "wins over $HPSEARCH_SERVER")
    assert json.loads(runs["env server"].stdout)["count"] == 1
    said("env server", live_service, "($HPSEARCH_SERVER)")
    clash = runs["both flags"]
    assert clash.returncode == 1 and "not both" in clash.stderr
    assert len(clash.stderr.strip().splitlines()) == 1
    hidden = runs["password hidden"]
    assert hidden.returncode == 1 and "ann:***@127.0.0.1:9" in hidden.stderr
    assert "hunter2" not in hidden.stderr

    for key in ("stop", "pruner", "enqueue", "trials", "submit"):
        assert runs[key].returncode == 0, (key, runs[key].stderr)
    assert "#" in runs["trials"].stdout and "complete" in runs["trials"].stdout
    said("trials", b, "(--storage)")
    assert studies.study_status(open_storage(b), "in-b").state == "stopped"
    assert studies.load_spec(open_storage(a), "in-a").pruner.name == "asha"
    assert "enqueued 1 of 1" in runs["enqueue"].stdout
    assert runs["submit"].stdout.strip() == "made-here"
    assert [s.name for s in studies.list_studies(open_storage(c))] == ["made-here"]
    assert studies.study_status(open_storage(a), "in-a").counts["waiting"] == 1
    # A write says nothing extra on success, and names where it went when it fails.
    gone = _run_all({"delete": (["delete", "ghost", "--yes", "--storage", b], _env())})["delete"]
    assert gone.returncode == 1 and len(gone.stderr.strip().splitlines()) == 1
    assert "ghost" in gone.stderr and f"[writing {b} (--storage)]" in gone.stderr


def test_reads_never_create_a_database(tmp_path):
    typo = tmp_path / "typo.db"
    runs = _run_all(
        {
            "flag": (["status", "--storage", "sqlite:///typo.db"], _env()),
            "env": (["best", "x"], _env(HPSEARCH_STORAGE="sqlite:///typo.db")),
            "write": (["stop", "x", "--storage", "sqlite:///typo.db"], _env()),
            "report": (["report", "x", "--storage", "sqlite:///typo.db"], _env()),
            "token list": (["token", "list", "--storage", "sqlite:///typo.db"], _env()),
        },
        cwd=tmp_path,
    )
    for key, out in runs.items():
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 1 and len(lines) == 1, (key, out.stderr)
        assert "does not exist" in lines[0] and str(typo) in lines[0], (key, out.stderr)
        assert "Traceback" not in out.stderr
    assert not typo.exists() and list(tmp_path.iterdir()) == []
    assert "$HPSEARCH_STORAGE" in runs["env"].stderr  # it says where the URL came from

    empty = tmp_path / "empty.db"
    empty.touch()  # a file, but no study database
    out = _run_all({"empty": (["status", "--storage", f"sqlite:///{empty}"], _env())})["empty"]
    assert out.returncode == 1 and "not a study database" in out.stderr
    assert empty.stat().st_size == 0


@pytest.mark.postgres
def test_reads_never_create_postgres_tables_or_databases(postgres_url, fresh_postgres_url):
    missing = make_url(postgres_url).set(database="no_such_database")
    missing_url = missing.render_as_string(hide_password=False)
    runs = _run_all(
        {
            "missing": (["status", "--storage", missing_url], _env()),
            "empty": (["status", "--storage", fresh_postgres_url], _env()),
        }
    )
    for key, out in runs.items():
        assert out.returncode == 1 and len(out.stderr.strip().splitlines()) == 1, (key, out)
        assert "Traceback" not in out.stderr
    assert "no_such_database" in runs["missing"].stderr
    assert "does not exist" in runs["missing"].stderr
    assert "not a study database" in runs["empty"].stderr
    engine = sqlalchemy.create_engine(fresh_postgres_url, poolclass=sqlalchemy.pool.NullPool)
    assert sqlalchemy.inspect(engine).get_table_names() == []  # the read created no table


def test_a_reader_that_leaves_the_pipe_ends_it_quietly(tmp_path, sqlite_url):
    _study_with_a_result(sqlite_url, "piped")
    hpsearch = " ".join(HPSEARCH)
    script = (
        f"{hpsearch} best piped --storage {sqlite_url} 2>{tmp_path}/best.err | true; "
        "echo best=${PIPESTATUS[0]}; "
        f"{hpsearch} spaces image 2>{tmp_path}/spaces.err | head -n 1 >/dev/null; "
        "echo spaces=${PIPESTATUS[0]}; "
        f"{hpsearch} spaces image --json 2>{tmp_path}/json.err | true; "
        "echo json=${PIPESTATUS[0]}"
    )
    out = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.stdout.split() == ["best=0", "spaces=0", "json=0"], out.stdout + out.stderr
    assert (tmp_path / "best.err").read_text().splitlines() == [f"reading {sqlite_url} (--storage)"]
    for name in ("spaces.err", "json.err"):
        assert (tmp_path / name).read_text() == "", name


def _port_taken(port: int) -> socket.socket | None:
    """Listen on ``port`` (None when something else already does: taken either way)."""
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        s.close()
        return None
    s.listen()
    return s


def _lines_until(proc: subprocess.Popen[str], prefix: str, timeout: float = 60) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"exited before {prefix!r}:\n" + "".join(lines))
        lines.append(line)
        if line.startswith(prefix):
            return lines
    raise AssertionError(f"no {prefix!r} in {timeout} s:\n" + "".join(lines))


def _wait_for(url: str, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, f"{url} never answered"
            time.sleep(0.2)


@pytest.fixture
def port_8080_taken() -> Iterator[None]:
    holder = _port_taken(8080)
    try:
        yield
    finally:
        if holder is not None:
            holder.close()


def test_serve_beside_a_taken_dashboard_port(port_8080_taken, sqlite_url, free_port):
    proc = subprocess.Popen(
        [*HPSEARCH, "serve", "--storage", sqlite_url, "--port", str(free_port)],
        env=_env(), text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        lines = _lines_until(proc, "API:")
        text = "".join(lines)
        assert "Traceback" not in text
        assert "dashboard port 8080 is taken" in text, text
        (dashboard,) = [line.split()[1] for line in lines if line.startswith("dashboard:")]
        assert ":8080/" not in dashboard
        with urllib.request.urlopen(dashboard, timeout=10) as r:  # it answers there
            assert r.status == 200 and "/dashboard/login" in r.url
        _wait_for(f"http://127.0.0.1:{free_port}/healthz", proc)
        # The API's own port taken: one line that says what to do, not a traceback.
        again = _run_all(
            {"clash": (["serve", "--storage", sqlite_url, "--port", str(free_port)], _env())}
        )["clash"]
        assert again.returncode == 1 and "Traceback" not in again.stderr
        assert len(again.stderr.strip().splitlines()) == 1 and "--port" in again.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_sigterm_stops_the_demo_and_all_it_started(tmp_path, free_port):
    taken = _port_taken(free_port)  # the demo's --port is taken: it moves, and says so
    assert taken is not None
    db = tmp_path / "demo.db"
    proc = subprocess.Popen(
        [*HPSEARCH, "demo", "--storage", f"sqlite:///{db}", "--port", str(free_port),
         "--dashboard-port", "0", "--workers", "1", "--trials", "500", "--epochs", "30"],
        env=_env(), cwd=tmp_path, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        lines = _lines_until(proc, "submitted with API token", timeout=90)
        lines.append(proc.stdout.readline())  # the first progress line: the worker is started
        text = "".join(lines)
        (export,) = [line.split()[1] for line in lines if "export HPSEARCH_SERVER=" in line]
        server = export.split("=", 1)[1]
        assert server != f"http://127.0.0.1:{free_port}", text
        with urllib.request.urlopen(f"{server}/healthz", timeout=10) as r:  # the exact URL
            assert r.status == 200
        assert f"export HPSEARCH_STORAGE=sqlite:///{db}" in text  # absolute: any folder
        children = _children(proc.pid)
        assert len(children) == 2, text  # serve (with the dashboard) and one worker
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        assert time.monotonic() - started < 20
    finally:
        taken.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert [pid for pid in children if _alive(pid)] == []
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{server}/healthz", timeout=5)
    (token,) = tokens.list_tokens(open_storage(f"sqlite:///{db}"))
    assert token.name.startswith("demo-") and token.revoked


def test_docs_render_offline_in_a_browser(monkeypatch, live_service, tmp_path):
    import browser as chromium  # tests/browser.py

    chromium._need_chromium()
    # No name resolves but loopback: a page that needs a CDN stays blank.
    offline = [*chromium._FLAGS, "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]
    monkeypatch.setattr(chromium, "_FLAGS", offline)
    browser = chromium.Browser(tmp_path / "profile")
    try:
        browser.go(f"{live_service}/docs")
        browser.wait_for("document.querySelectorAll('.opblock').length > 10", timeout=60)
        text = browser.evaluate("document.body.innerText")
        assert "/studies/{name}/trials" in text and "hpsearch" in text
        scripts = browser.evaluate(
            "performance.getEntriesByType('resource').map(e => e.name).join(' ')"
        )
        assert "swagger-ui-bundle.js" in scripts and "cdn" not in scripts
        browser.screenshot("docs-offline.png")
    finally:
        browser.close()
