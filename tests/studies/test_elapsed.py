"""A study's elapsed time stops once it takes no more trials (issue 16).

``hpsearch status NAME`` showed "elapsed 77 s", then 118 s, then 309 s for a study done in
40 s. Done, failed and stopped studies now show the same elapsed time on every read; an open
one keeps counting.
"""

from __future__ import annotations

import time

from hpsearch import studies
from hpsearch.db.storage import open_storage
from hpsearch.studies.history import fail_study


def _spec(name: str, trials: int) -> dict[str, object]:
    return {"name": name, "space": "demo", "task": {"epochs": 1}, "budget": {"trials": trials}}


def _elapsed(storage_url: str) -> dict[str, float]:
    # A fresh storage each time: the trial statistics are computed again, not cached.
    return {s.name: s.elapsed_seconds for s in studies.list_studies(open_storage(storage_url))}


def test_elapsed_stops_when_a_study_is_done_failed_or_stopped(storage_url: str) -> None:
    storage = open_storage(storage_url)
    before = time.time()
    for name, trials in (("done", 2), ("failed", 5), ("stopped", 5), ("open", 5)):
        studies.create_study(storage, _spec(name, trials))
        study, _ = studies.open_study(storage, name)
        for value in (0.5, 0.6) if name == "done" else (0.5,):
            study.tell(study.ask(), value)
    fail_study(storage, storage.get_study_id_from_name("failed"), reason="TaskError: x")
    studies.stop_study(storage, "stopped")
    ended_within = time.time() - before  # every study was made and ended in this window

    first = _elapsed(storage_url)
    one = studies.study_status(storage, "done")
    time.sleep(1.1)
    second = _elapsed(storage_url)

    assert one.done and one.state == "done"
    assert studies.study_status(storage, "done").elapsed_seconds == one.elapsed_seconds
    for name in ("done", "failed", "stopped"):
        assert second[name] == first[name], f"{name}: {first[name]} s, then {second[name]} s"
        assert first[name] <= ended_within + 0.01  # its end, not the time of the read
    assert second["open"] >= first["open"] + 1.0  # an open study's clock runs
    studies.resume_study(storage, "stopped")
    assert _elapsed(storage_url)["stopped"] >= 1.0  # resumed: counting again
