"""Where a worker may read: its data roots, and the checks that keep a spec's paths inside them.

A study spec names files on the workers' machines (``task.dataset``, ``task.pretrained_weights``),
and whoever holds a write token writes specs. So a worker reads only

- the bundled datasets (:data:`hpsearch.families.BUNDLED_DATASETS`), always, and
- paths under the data roots it was given: ``hpsearch worker --data-root DIR`` (repeatable),
  else ``$HPSEARCH_DATA_ROOTS`` (folders separated by ``os.pathsep``). With neither, bundled
  datasets only: the safe default, since a worker often runs as root.

A path is resolved (``~``, symlinks, ``..``) before it is checked, so a symlink inside a root
that points outside is refused like the outside path itself. Files inside a dataset folder are
checked the same way while :func:`reading_under` is in force (the worker wraps each trial in it).
A refusal is one line that names the roots and says nothing of the file (not even whether it
exists).

The service cannot know the workers' roots, but it refuses at submit what no worker should be
asked to read (:func:`check_spec_paths`): a ``..`` component, a NUL byte, or a system folder
such as ``/etc`` or ``/proc``.

``hpsearch try`` and ``hpsearch lr-find`` are not confined: they read the path their user names
on their own command line, with that user's rights, and nothing reaches them from a token holder.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from hpsearch.errors import DataOutsideRoots, SpecError, UsageError
from hpsearch.families import BUNDLED_DATASETS, TaskSpec
from hpsearch.settings import get_settings

__all__ = [
    "DATA_ROOTS_ENV",
    "SYSTEM_FOLDERS",
    "DataRoots",
    "bundled_for",
    "check_member",
    "check_spec_paths",
    "reading_under",
]

#: The environment variable a worker reads its data roots from when ``--data-root`` is not given.
DATA_ROOTS_ENV = "HPSEARCH_DATA_ROOTS"

#: Folders no study may name (checked at submit): the system's own files, never training data.
SYSTEM_FOLDERS: tuple[str, ...] = (
    "/etc", "/proc", "/sys", "/dev", "/root", "/boot", "/run", "/var/run", "/var/log",
    "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/usr/bin", "/usr/sbin", "/usr/lib",
    "/usr/libexec", "/usr/local/bin", "/usr/local/sbin",
)  # fmt: skip

_HUB = "hub"  # task.pretrained_weights: timm's published weights, no file


#: The bundled datasets each family's trainer has; any other name is a path to that trainer.
_BUNDLED_FOR: dict[str, tuple[str, ...]] = {
    "tabular_classification": ("digits", "diabetes"),
    "tabular_regression": ("digits", "diabetes"),
    "image_classification": ("digits",),
    "audio_classification": ("tones",),
}


def bundled_for(family: str | None) -> tuple[str, ...]:
    """The bundled datasets the trainer of ``family`` has (tabular when None; every bundled
    dataset for a family without a trainer)."""
    return _BUNDLED_FOR.get(family or "tabular_classification", BUNDLED_DATASETS)


def _named_paths(task: TaskSpec) -> list[tuple[str, str]]:
    """The (field, path) pairs of a task that name files on the workers' machines."""
    named = []
    bundled = _BUNDLED_FOR.get(task.family or "tabular_classification", BUNDLED_DATASETS)
    if task.dataset not in bundled:  # 'tones' to the tabular trainer is a file named tones
        named.append(("task.dataset", task.dataset))
    if task.pretrained_weights not in (None, _HUB):
        named.append(("task.pretrained_weights", task.pretrained_weights))
    return named


@dataclass(frozen=True)
class DataRoots:
    """The folders a worker may read datasets and weights from (resolved; empty: bundled only)."""

    roots: tuple[Path, ...] = ()

    @classmethod
    def from_options(
        cls, roots: Sequence[str] | None = None, *, environ: Mapping[str, str] | None = None
    ) -> DataRoots:
        """The roots named by ``--data-root`` (``roots``), else by ``$HPSEARCH_DATA_ROOTS``
        (the settings' ``data_roots``, or ``environ``'s variable when given).

        Raises :class:`UsageError` for a root that is not an existing folder.
        """
        given = [r for r in (roots or []) if r.strip()]
        source = "--data-root"
        if not given:
            if environ is None:
                given = get_settings().data_roots
            else:
                given = [r for r in environ.get(DATA_ROOTS_ENV, "").split(os.pathsep) if r.strip()]
            source = DATA_ROOTS_ENV
        resolved = []
        for root in given:
            path = Path(root).expanduser().resolve()
            if not path.is_dir():
                raise UsageError(
                    f"{source} {root!r} is not a folder on this machine: give an existing "
                    "folder that holds the datasets this worker may read"
                )
            resolved.append(path)
        return cls(roots=tuple(dict.fromkeys(resolved)))

    def describe(self) -> str:
        """The roots in words, for logs and refusals."""
        if not self.roots:
            return "none: bundled datasets only"
        return ", ".join(str(r) for r in self.roots)

    def allows(self, path: str | os.PathLike[str]) -> bool:
        """Whether ``path``, resolved (symlinks and ``..`` followed), lies under a root."""
        try:
            real = Path(path).expanduser().resolve()
        except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL byte
            return False
        return any(real.is_relative_to(root) for root in self.roots)

    def check(self, path: str, *, field: str) -> None:
        """Raise :class:`DataOutsideRoots` (one line naming the roots) unless ``path`` is inside."""
        if not self.allows(path):
            raise DataOutsideRoots(
                f"{field} {path!r} is outside this worker's data roots "
                f"({self.describe()}): start the worker with --data-root DIR (or "
                f"{DATA_ROOTS_ENV}) naming a folder that holds it"
            )

    def check_task(self, task: TaskSpec) -> None:
        """Check every path ``task`` names (bundled datasets and ``'hub'`` always pass)."""
        for field, path in _named_paths(task):
            self.check(path, field=field)


_in_force: contextvars.ContextVar[DataRoots | None] = contextvars.ContextVar(
    "hpsearch_data_roots", default=None
)


@contextlib.contextmanager
def reading_under(roots: DataRoots) -> Iterator[None]:
    """While in force, :func:`check_member` refuses files outside ``roots``."""
    token = _in_force.set(roots)
    try:
        yield
    finally:
        _in_force.reset(token)


def check_member(path: str | os.PathLike[str], *, field: str, named: str) -> None:
    """Refuse a file found inside the folder ``named`` (by ``field``) that resolves outside the
    data roots in force (a symlink out); does nothing outside :func:`reading_under`."""
    roots = _in_force.get()
    if roots is not None and not roots.allows(path):
        raise DataOutsideRoots(
            f"{field} {named!r}: a file in it resolves outside this worker's data roots "
            f"({roots.describe()}), through a symlink; move the file under a root or give "
            "the worker a --data-root that holds it"
        )


def check_spec_paths(task: TaskSpec) -> None:
    """Refuse at submit (:class:`SpecError`) a path that no worker should be asked to read.

    A ``..`` component, a NUL byte, or a system folder (:data:`SYSTEM_FOLDERS`). Whether a path
    is under a worker's data roots only that worker can tell; it checks again.
    """
    for field, raw in _named_paths(task):
        if "\x00" in raw:
            raise SpecError(
                f"{field} contains a NUL byte: name a file under the workers' data roots"
            )
        parts = PurePosixPath(raw.replace("\\", "/")).parts
        if ".." in parts:
            raise SpecError(
                f"{field} {raw!r} has a '..' component: name the file by its path under the "
                "workers' data roots, without '..'"
            )
        if not raw.startswith(("/", "\\")):
            continue
        absolute = PurePosixPath("/", *parts[1:])  # '//etc' and '/./etc' are '/etc'
        if absolute == PurePosixPath("/") or any(
            absolute.is_relative_to(folder) for folder in SYSTEM_FOLDERS
        ):
            raise SpecError(
                f"{field} {raw!r} is a system path, not training data: put the data in a "
                "folder the workers are given with --data-root and name it there"
            )
