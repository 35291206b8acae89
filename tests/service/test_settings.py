"""The one settings object: every ``HPSEARCH_*`` variable reaches the code that uses it, a
change of the environment is seen, a bad value is one line naming the variable, and the
heartbeat grace is one rule (3 heartbeats) wherever it is asked."""

from __future__ import annotations

import os
import subprocess
import sys

import optuna
import pytest

from hpsearch.client import Client
from hpsearch.data_roots import DataRoots
from hpsearch.db.cache import CachedStorage
from hpsearch.db.storage import grace_seconds, open_storage, resolve_storage_url
from hpsearch.errors import UsageError
from hpsearch.service import Settings as ServiceSettings
from hpsearch.settings import GRACE_HEARTBEATS, Settings, get_settings


def test_the_variables_reach_the_code_that_uses_them(monkeypatch, tmp_path, sqlite_url):
    db = sqlite_url
    monkeypatch.setenv("HPSEARCH_STORAGE", db)
    monkeypatch.setenv("HPSEARCH_HEARTBEAT_SECONDS", "2")
    monkeypatch.setenv("HPSEARCH_CACHE_TRIALS", "7")
    monkeypatch.setenv("HPSEARCH_SERVER", "http://gpu-box.lan:9000/")
    monkeypatch.setenv("HPSEARCH_API_TOKEN", "hps_secret")
    monkeypatch.setenv("HPSEARCH_DATA_ROOTS", str(tmp_path))
    assert resolve_storage_url() == db
    storage = open_storage()
    assert storage.get_heartbeat_interval() == 2 and grace_seconds(storage) == 6
    assert CachedStorage(storage).max_trials == 7
    with Client() as client:
        assert client.server == "http://gpu-box.lan:9000"
        assert client._http.headers["Authorization"] == "Bearer hps_secret"
    assert DataRoots.from_options().roots == (tmp_path.resolve(),)
    # A later change of the environment is seen by the next read, not hidden by a cache.
    monkeypatch.setenv("HPSEARCH_CACHE_TRIALS", "9")
    assert CachedStorage(storage).max_trials == 9
    monkeypatch.delenv("HPSEARCH_SERVER")
    with Client() as client:
        assert client.server == "http://127.0.0.1:8000"


def test_defaults_are_those_documented(monkeypatch):
    for name in list(Settings.model_fields):
        monkeypatch.delenv(f"HPSEARCH_{name.upper()}", raising=False)
    settings = get_settings()
    assert settings.storage is None and resolve_storage_url() == "sqlite:///hpsearch.db"
    assert (settings.heartbeat_seconds, settings.max_retries) == (10, 3)
    assert settings.grace_seconds == 30  # a trial silent for 3 heartbeats is dead
    assert settings.cache_trials == 300_000 and settings.max_body_bytes == 1024 * 1024
    assert settings.anonymous_reads is False and settings.cpu_amp is False
    assert settings.api_token is None  # no secret has a working default
    assert get_settings() is settings  # cached while the environment stays the same


@pytest.mark.parametrize(
    ("name", "value", "said"),
    [
        ("HPSEARCH_MAX_RETRIES", "-1", "greater than or equal to 0"),
        ("HPSEARCH_HEARTBEAT_SECONDS", "fast", "valid integer"),
        ("HPSEARCH_ANONYMOUS_READS", "perhaps", "use true or false"),
        ("HPSEARCH_CPU_AMP", "maybe", "set it to 1"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(monkeypatch, name, value, said):
    monkeypatch.setenv(name, value)
    with pytest.raises(UsageError) as bad:
        get_settings()
    message = str(bad.value)
    assert message.startswith(f"{name}={value!r}") and said in message and "\n" not in message


def test_blank_variables_count_as_unset(monkeypatch):
    monkeypatch.setenv("HPSEARCH_HEARTBEAT_SECONDS", "  ")
    monkeypatch.setenv("HPSEARCH_STORAGE", "")
    assert get_settings().heartbeat_seconds == 10 and get_settings().storage is None


def test_the_cli_says_a_bad_variable_in_one_line(sqlite_url):
    url = sqlite_url
    open_storage(url)  # a study database exists: the bad variable is what fails
    env = {**os.environ, "HPSEARCH_MAX_RETRIES": "many"}
    done = subprocess.run(
        [sys.executable, "-m", "hpsearch", "status", "--storage", url],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1, done
    assert "Traceback" not in done.stderr, done.stderr
    assert "HPSEARCH_MAX_RETRIES='many'" in done.stderr and "unset it" in done.stderr


def test_grace_is_three_heartbeats_for_every_storage(sqlite_url):
    # A storage opened without a grace period (another tool's) gets the same rule, not
    # Optuna's internal fallback of 2 intervals.
    foreign = optuna.storages.RDBStorage(sqlite_url, heartbeat_interval=4)
    assert grace_seconds(foreign) == GRACE_HEARTBEATS * 4 == 12


def test_the_service_settings_are_the_same_settings_with_host_names_checked(monkeypatch):
    monkeypatch.setenv("HPSEARCH_MAX_BODY_BYTES", "2048")
    service = ServiceSettings(allowed_hosts="Dash.Example.com,[::1]")
    assert isinstance(service, Settings) and service.max_body_bytes == 2048
    assert service.allowed_hosts == ["dash.example.com", "::1"]
    with pytest.raises(ValueError, match="without scheme, port or path"):
        ServiceSettings(allowed_hosts="http://dash.example.com:8080")
