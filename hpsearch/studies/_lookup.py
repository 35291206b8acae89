"""Find a study by name: the one lookup every operation on a named study starts with."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import optuna

from hpsearch.errors import StudyNotFound, TrialNotFound
from hpsearch.studies.attrs import SPEC_ATTR

__all__ = ["FoundStudy", "find_study"]


@dataclass(frozen=True, kw_only=True)
class FoundStudy:
    """A study found by name: its id and its stored spec, unvalidated (``{}`` when not asked),
    with the user attributes the spec was read from (its failure and history among them)."""

    storage: optuna.storages.BaseStorage
    name: str
    study_id: int
    spec_json: dict[str, Any]
    user_attrs: dict[str, Any] = field(default_factory=dict)

    def trial_id(self, number: int) -> int:
        """The id of the study's trial ``number``; raises :class:`TrialNotFound`."""
        try:
            return self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)
        except KeyError as e:
            raise TrialNotFound(f"study {self.name!r} has no trial number {number}") from e


def find_study(
    storage: optuna.storages.BaseStorage, name: str, *, hpsearch_only: bool = True
) -> FoundStudy:
    """The study ``name``; raises :class:`StudyNotFound`.

    With ``hpsearch_only`` (the default) the study must have been created by hpsearch, and its
    stored spec comes along unvalidated: reads that only need to know the study is an hpsearch
    study skip validating the whole inline space. ``hpsearch_only=False`` finds any Optuna study
    in one query.
    """
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError as e:
        raise StudyNotFound(f"no study named {name!r}") from e
    if not hpsearch_only:
        return FoundStudy(storage=storage, name=name, study_id=study_id, spec_json={})
    attrs = storage.get_study_user_attrs(study_id)
    if SPEC_ATTR not in attrs:
        raise StudyNotFound(f"study {name!r} was not created by hpsearch (it has no spec)")
    return FoundStudy(
        storage=storage, name=name, study_id=study_id, spec_json=attrs[SPEC_ATTR], user_attrs=attrs
    )
