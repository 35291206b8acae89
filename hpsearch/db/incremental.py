"""What changed in a study's trials since a reader last looked, and which complete trial is best.

Readers that keep a study's trials (or figures folded from them) in memory — the trial
statistics (:mod:`hpsearch.db.stats`) and the dashboard's trial cache (:mod:`hpsearch.db.cache`)
— use one :class:`StudyCursor` each per study. A finished trial never changes in Optuna, so
after the first read a reader needs only:

- the trials with an id above the largest it has seen (new trials),
- the trials that were RUNNING or WAITING when it last looked (they may have finished, been
  pruned, failed, or been failed by a retry),
- the finished trials hpsearch edited since (the edit marker, below),
- and, when the study's count of trials up to the largest id seen is not the count the reader
  holds (a trial committed out of id order by another process, or trials deleted), the ids
  that are missing or gone. A reader that cannot drop a trial it has folded starts over instead.

:meth:`StudyCursor.read` costs one small probe query plus one query for the changed rows, so a
read that starts after a write committed sees it, whichever process or machine wrote it. The
probe also tells a reused study id (SQLite reuses the largest after a delete) from the study the
reader knew: by the study's name and direction. A study that is gone raises ``KeyError``.

The edit marker. hpsearch edits rows of finished trials (artifact clean-up drops and adds
trial system attributes) and Optuna keeps no column that records it. The marker is the study's
``hpsearch:trials_edited`` system attribute that :func:`hpsearch.db.storage.mark_trials_edited`
writes under the study lock after committing such an edit: a sequence number and the latest
``(seq, trial_id)`` pairs. It is the one marker both readers follow, because:

- it lives in the study database, so every process and machine sees it as soon as the edit
  commits (no per-process flag, no message to miss);
- it is a counter, not a time: machines' clocks do not need to agree, and "edited since the
  last read" is ``seq > last_seq`` exactly, with no window for two edits in the same tick;
- it names the edited trials, so a reader re-reads those few rows, not the study; a reader that
  fell behind by more than the list keeps (its first listed ``seq`` is past ``last_seq + 1``),
  or sees the counter go back (the id now names another study), starts over;
- trial counts and the largest id, the other signals, do not move when a row is edited.

The statistics used to ignore the marker (none of the figures they fold came from an edited
row yet); they now re-read edited trials too and keep only the figure an edit can change
(whether a trial is a retry) per trial, so a future edit cannot leave them stale.

:func:`rank_key` is hpsearch's one rule for "the best complete trial": by value in the study's
direction (an infinite value in the good direction beats every finite one), ties to the lowest
trial number. Everything that picks or orders best trials uses it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy
from optuna.study import StudyDirection
from optuna.trial import TrialState

from hpsearch.db.storage import TRIALS_EDITED_ATTR

__all__ = ["UNFINISHED", "Changes", "StudyCursor", "rank_key"]

#: States in which a trial may still change.
UNFINISHED = (TrialState.RUNNING, TrialState.WAITING)

_PROBE = sqlalchemy.text(
    "SELECT s.study_name, d.direction, "
    "(SELECT COUNT(*) FROM trials t WHERE t.study_id = s.study_id AND t.trial_id <= :max_id), "
    "(SELECT a.value_json FROM study_system_attributes a "
    " WHERE a.study_id = s.study_id AND a.key = :edited_key) "
    "FROM studies s LEFT JOIN study_directions d ON d.study_id = s.study_id AND d.objective = 0 "
    "WHERE s.study_id = :study_id"
)
_IDS_UP_TO = sqlalchemy.text(
    "SELECT trial_id FROM trials WHERE study_id = :study_id AND trial_id <= :max_id"
)


def rank_key(value: float, number: int, direction: StudyDirection) -> tuple[float, int]:
    """Sort key of a complete trial with objective ``value``: the best trial sorts first.

    By value in the study's ``direction`` (``MAXIMIZE``, else minimize), ties to the lowest
    trial ``number``. ``min(trials, key=...)`` is the best; ``sorted(...)[:n]`` the best n.
    """
    return (-value if direction == StudyDirection.MAXIMIZE else value, number)


@dataclass(frozen=True)
class Changes:
    """What one :meth:`StudyCursor.read` found: the changed trials' rows and what is gone."""

    rows: Sequence[Any]  # the rows of ``select``: new, unfinished, edited and missing trials
    edited: frozenset[int]  # ids of finished trials the reader holds that were edited since
    gone: frozenset[int]  # ids the reader holds that the study no longer has
    repaired: bool  # the count up to the largest id disagreed and the ids were compared


@dataclass
class StudyCursor:
    """Where one reader of one study stands: the study it knows and the trials it has seen.

    The reader calls :meth:`read` for what changed, then :meth:`saw` for each trial it now
    holds and :meth:`forget` for the ones gone. Not thread-safe: the reader holds its own lock.
    """

    study_id: int
    name: str | None = None  # None until the first read
    direction: StudyDirection = StudyDirection.MINIMIZE
    max_id: int = -1
    unfinished: set[int] = field(default_factory=set)
    edited_seq: int = 0

    def read(
        self,
        conn: sqlalchemy.Connection,
        *,
        select: str,
        held: int,
        params: dict[str, Any] | None = None,
        held_ids: Callable[[], Collection[int]] | None = None,
    ) -> Changes | None:
        """The rows of the trials that may have changed since the last read, or None when the
        reader must start over with a new cursor.

        ``select`` is ``SELECT <columns> FROM trials t [joins]`` (``t`` the trials table) with
        ``params`` for its own parameters; the cursor adds the ``WHERE``. ``held`` is how many
        trials with ids up to :attr:`max_id` the reader holds. When the study's count of those
        differs, ``held_ids`` (their ids) lets the reader repair: missing ids are read, gone ids
        are returned in :attr:`Changes.gone`; without it the reader starts over. It starts over
        too when the id names another study now, or when it missed edits the marker no longer
        lists. Raises ``KeyError`` when the study is gone.
        """
        probe = conn.execute(
            _PROBE,
            {"study_id": self.study_id, "max_id": self.max_id, "edited_key": TRIALS_EDITED_ATTR},
        ).first()
        if probe is None:
            raise KeyError(f"no study with id {self.study_id}")
        name, direction_name, known, edited_json = probe
        direction = (
            StudyDirection.MAXIMIZE if direction_name == "MAXIMIZE" else StudyDirection.MINIMIZE
        )
        first = self.name is None
        if first:
            self.name, self.direction = name, direction
            # Everything is read now: edits made before this read are in the rows already.
            self.edited_seq = _marker(edited_json)[0]
        elif (name, direction) != (self.name, self.direction):
            return None
        edited = _edited_since(edited_json, self.edited_seq)
        if edited is None:
            return None
        seq, edited_ids = edited
        to_read = set(self.unfinished)
        held_edited = frozenset(
            i for i in edited_ids if i <= self.max_id and i not in self.unfinished
        )
        to_read |= held_edited
        gone: frozenset[int] = frozenset()
        repaired = False
        if not first and known != held:
            if held_ids is None:
                return None
            in_db = {
                r[0]
                for r in conn.execute(
                    _IDS_UP_TO, {"study_id": self.study_id, "max_id": self.max_id}
                )
            }
            mine = {i for i in held_ids() if i <= self.max_id}
            gone = frozenset(mine - in_db)
            to_read |= in_db - mine
            repaired = True
        # Two parts (new ids; the others by primary key): an OR would scan the study.
        query = sqlalchemy.text(
            f"{select} WHERE t.study_id = :study_id AND t.trial_id > :max_id UNION ALL "
            f"{select} WHERE t.trial_id IN :to_read AND t.trial_id <= :max_id"
        ).bindparams(sqlalchemy.bindparam("to_read", expanding=True))
        rows = conn.execute(
            query,
            {
                **(params or {}),
                "study_id": self.study_id,
                "max_id": self.max_id,
                "to_read": sorted(to_read),
            },
        ).all()
        self.edited_seq = seq
        return Changes(rows=rows, edited=held_edited - gone, gone=gone, repaired=repaired)

    def saw(self, trial_id: int, state: TrialState) -> None:
        """The reader now holds the trial ``trial_id`` as it is in ``state``."""
        self.max_id = max(self.max_id, trial_id)
        if state in UNFINISHED:
            self.unfinished.add(trial_id)
        else:
            self.unfinished.discard(trial_id)

    def forget(self, trial_ids: Collection[int]) -> None:
        """The reader no longer holds these trials (they were deleted)."""
        self.unfinished.difference_update(trial_ids)


def _marker(edited_json: str | None) -> tuple[int, list[tuple[int, int]]]:
    if edited_json is None:
        return 0, []
    marker = json.loads(edited_json)
    return int(marker.get("seq", 0)), [(int(s), int(t)) for s, t in marker.get("recent", [])]


def _edited_since(edited_json: str | None, since: int) -> tuple[int, list[int]] | None:
    """The marker's sequence number and the trials edited after ``since``; None if some
    edits after ``since`` are no longer listed (or the counter went back)."""
    if edited_json is None:
        return since, []
    seq, recent = _marker(edited_json)
    if seq == since:
        return seq, []
    if seq < since or not recent or recent[0][0] > since + 1:
        return None
    return seq, [t for s, t in recent if s > since]
