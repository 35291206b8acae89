"""Search spaces: the checklist as Optuna parameters, ranked by impact.

A space is a :class:`SearchSpace` of :class:`Param`, read from a bundled YAML file
(:func:`load_space`, :func:`list_spaces`) or built from a dict with
``SearchSpace.model_validate``. :func:`suggest_config` turns it into one trial's config and
:func:`default_config` into the config of defaults. :func:`load_checklist` reads the rows of
the checklist the bundled spaces come from (shipped beside them). Nothing here imports torch.
"""

from __future__ import annotations

from hpsearch.spaces.checklist import ChecklistRow, load_checklist
from hpsearch.spaces.loading import list_spaces, load_space
from hpsearch.spaces.schema import Choice, NotSearched, Param, SearchSpace
from hpsearch.spaces.suggest import default_config, suggest_config

__all__ = [
    "ChecklistRow",
    "Choice",
    "Param",
    "SearchSpace",
    "NotSearched",
    "load_space",
    "list_spaces",
    "suggest_config",
    "default_config",
    "load_checklist",
]
