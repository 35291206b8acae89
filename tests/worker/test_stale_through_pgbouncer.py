"""Through PgBouncer a worker may not see a PostgreSQL restart at all (its queries wait in the
pooler's queue), so it must not take every trial for dead the moment the server is back.

Real PostgreSQL, restarted; the URL carries ``?pgbouncer=true`` (what the option changes is
the client's behaviour, so no pooler is needed to see it). Heartbeats every 1 s, grace 3 s.
"""

from __future__ import annotations

import time

import optuna
import pytest
from optuna.trial import TrialState

from hpsearch.db.storage import open_storage
from hpsearch.worker.stale import fail_stale_trials

pytestmark = pytest.mark.postgres


def test_a_trial_beaten_before_a_restart_gets_a_grace_period_after_it(
    restartable_postgres, monkeypatch
):
    monkeypatch.setenv("HPSEARCH_HEARTBEAT_SECONDS", "1")
    url, cluster = restartable_postgres
    storage = open_storage(url + "?pgbouncer=true")
    study = optuna.create_study(study_name="s", storage=storage)
    trial_id = study.ask()._trial_id
    storage.record_heartbeat(trial_id)
    beaten = time.monotonic()
    storage.engine.dispose()  # this process's connections die with the server
    cluster.restart(down_seconds=1)
    back = time.monotonic()
    time.sleep(max(0.0, beaten + 3.3 - time.monotonic()))  # its heartbeat is past the grace
    fail_stale_trials(storage, study)
    assert storage.get_trial(trial_id).state == TrialState.RUNNING  # its worker may be alive
    # A grace period after the server came back the trial has not beaten again: it is dead.
    time.sleep(max(0.0, back + 3.3 - time.monotonic()))
    fail_stale_trials(storage, study)
    assert storage.get_trial(trial_id).state == TrialState.FAIL
