"""Names that become paths, made safe: a study's name is never used as a path as it is.

hpsearch checks a study's name when it creates the study (letters, digits, ``.``, ``_``, ``-``),
but a name can be changed later outside hpsearch (optuna-dashboard's rename, Optuna itself) to
anything, ``../../tmp/x`` included. So folders are named by the study's id where they must stay
put (checkpoints), and by a slug of the name where a person reads them (report folders).
"""

from __future__ import annotations

import re

__all__ = ["name_slug", "study_folder"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def study_folder(study_id: int) -> str:
    """The folder of a study's files under a directory (``study-<id>``): stable across renames."""
    return f"study-{int(study_id)}"


def name_slug(name: str, *, max_length: int = 64) -> str:
    """``name`` as one safe path component: runs of other characters become ``_``, and leading
    dots and dashes go (so never ``..``, ``.hidden`` or an option); ``study`` if nothing is left.

    A valid study name is its own slug (up to ``max_length`` characters).
    """
    slug = _UNSAFE.sub("_", name).lstrip(".-")[:max_length].rstrip(".")
    return slug or "study"
