"""The dashboard's study view over hpsearch (service/dashboard_detail.py) against its own view.

A study bigger than one answer's budget is shown at once with its first trials and filled in by
the page's next polls (``?after=N``). Whatever the cuts, the trials the polls add up to, and
every other field, are those the plain optuna-dashboard answers over the same database, notes
included, over real HTTP.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import httpx
import optuna
import optuna_dashboard
import pytest
from optuna.distributions import FloatDistribution, IntDistribution
from optuna_dashboard._note import save_note_with_version

from hpsearch.db import cache
from hpsearch.db.storage import open_storage
from hpsearch.service import dashboard_detail
from hpsearch.service.dashboard import start_dashboard

optuna.logging.set_verbosity(optuna.logging.WARNING)
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

N = 1_300
DISTRIBUTIONS = {"lr": FloatDistribution(1e-4, 1.0, log=True), "width": IntDistribution(8, 64)}


def _fill(url: str, name: str, n: int, directions: list[str] | None = None) -> int:
    study = optuna.create_study(storage=url, study_name=name, directions=directions or ["minimize"])
    trials = []
    for i in range(n):
        lr, width = 10 ** (-4 + 4 * ((i * 37) % 101) / 100), 8 + (i * 13) % 57
        value = (lr - 0.01) ** 2 + width / 1000
        trials.append(
            optuna.trial.create_trial(
                params={"lr": lr, "width": width},
                distributions=DISTRIBUTIONS,
                values=[value] * len(study.directions),
                intermediate_values={1: value * 2, 2: value * 1.5},
                user_attrs={"seed": i},
            )
        )
    study.add_trials(trials)
    return study._study_id


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def plain(sqlite_url: str) -> Iterator[str]:
    """optuna-dashboard itself over the same database (its own view, Optuna's storage)."""
    storage = optuna.storages.RDBStorage(sqlite_url)
    server = make_server("127.0.0.1", 0, optuna_dashboard.wsgi(storage), handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def _get(base: str, study_id: int, after: int = 0) -> dict[str, Any]:
    response = httpx.get(f"{base}/api/studies/{study_id}", params={"after": after}, timeout=60)
    response.raise_for_status()
    return response.json()


def _poll_until_whole(base: str, study_id: int, n: int) -> list[dict[str, Any]]:
    """Answers as the page asks for them: each for the trials after those it has."""
    answers, have = [], 0
    for _ in range(200):
        answer = _get(base, study_id, after=have)
        answers.append(answer)
        numbers = [t["number"] for t in answer["trials"]]
        assert numbers == list(range(have, have + len(numbers)))  # the next ones, no gap
        have += len(numbers)
        if have == n:
            return answers
    raise AssertionError(f"the polls stopped at {have} of {n} trials")


def test_a_big_study_shows_at_once_and_polls_fill_it_in_as_the_dashboard_answers_it(
    sqlite_url: str, plain: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    study_id = _fill(sqlite_url, "big", N)
    storage = open_storage(sqlite_url)
    seventh = storage.get_trial_id_from_study_id_trial_number(study_id, 7)
    save_note_with_version(storage, study_id, seventh, 1, "a note on trial 7")  # study attrs
    monkeypatch.setattr(dashboard_detail, "ANSWER_SECONDS", 0.01)  # cut every answer short
    monkeypatch.setattr(cache, "_FILL_CHUNK", 100)  # and read the study slowly
    ours = start_dashboard(sqlite_url, port=0, anonymous_reads=True)
    try:
        base = ours.url.rsplit("/dashboard", 1)[0]
        answers = _poll_until_whole(base, study_id, N)
        # A second page, once all is prepared. It too polls: on a loaded machine even a
        # prepared answer can take longer than the 0.01 s budget and be cut short.
        again = _poll_until_whole(base, study_id, N)
    finally:
        ours.stop()
    theirs = _get(plain, study_id)
    assert len(answers) >= 3 and 0 < len(answers[0]["trials"]) < N
    trials = [t for a in answers for t in a["trials"]]
    warm = {**again[-1], "trials": [t for a in again for t in a["trials"]]}
    assert trials == theirs["trials"] == warm["trials"]
    assert trials[7]["note"] == {"version": 1, "body": "a note on trial 7"}
    for answer in answers:
        assert answer["best_trials"] == theirs["best_trials"]  # the whole study's, at once
        assert {k: v for k, v in answer.items() if k not in _GROWING} == {
            k: v for k, v in theirs.items() if k not in _GROWING
        }
    for key in _GROWING - {"trials"}:
        assert answers[-1][key] == warm[key] == theirs[key]


#: Fields over the trials the page has: they grow with the polls.
_GROWING = {"trials", "intersection_search_space", "union_search_space", "union_user_attrs",
            "has_intermediate_values"}  # fmt: skip


def test_a_trial_that_changed_is_answered_anew(sqlite_url: str, plain: str) -> None:
    study_id = _fill(sqlite_url, "small", 5)
    study = optuna.load_study(study_name="small", storage=sqlite_url)
    running = study.ask(DISTRIBUTIONS)
    storage = open_storage(sqlite_url)
    ours = start_dashboard(sqlite_url, port=0, anonymous_reads=True)
    try:
        base = ours.url.rsplit("/dashboard", 1)[0]
        assert _get(base, study_id)["trials"][-1]["state"] == "Running"
        study.tell(running, 0.0)  # finishes, and is the best now
        save_note_with_version(storage, study_id, running._trial_id, 1, "done")
        time.sleep(2.5)  # the dashboard's own view keeps a small study's trials for 2 s
        answer = _get(base, study_id)
    finally:
        ours.stop()
    assert answer["trials"][-1]["state"] == "Complete"
    assert answer["trials"][-1]["note"]["body"] == "done"
    assert answer == _get(plain, study_id)


def test_a_study_of_several_objectives_is_the_dashboards_own_view(
    sqlite_url: str, plain: str
) -> None:
    study_id = _fill(sqlite_url, "front", 40, directions=["minimize", "maximize"])
    ours = start_dashboard(sqlite_url, port=0, anonymous_reads=True)
    try:
        answer = _get(ours.url.rsplit("/dashboard", 1)[0], study_id)
    finally:
        ours.stop()
    assert answer == _get(plain, study_id) and len(answer["best_trials"]) >= 1


def test_bad_after_and_unknown_studies_answer_as_the_dashboard_does(
    sqlite_url: str, plain: str
) -> None:
    study_id = _fill(sqlite_url, "s", 3)
    ours = start_dashboard(sqlite_url, port=0, anonymous_reads=True)
    try:
        base = ours.url.rsplit("/dashboard", 1)[0]
        for path in (f"/api/studies/{study_id}?after=-1", "/api/studies/999"):
            mine, theirs = httpx.get(base + path), httpx.get(plain + path)
            assert (mine.status_code, mine.json()) == (theirs.status_code, theirs.json())
    finally:
        ours.stop()
