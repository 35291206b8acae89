"""What a verb of the ``hpsearch`` command is: its arguments beside what it does.

As in Optuna's CLI, each verb is a :class:`Command` subclass whose docstring is its help::

    class Stop(Command, name="stop", options=(options.STUDY, options.SOURCE)):
        \"\"\"stop a study: workers start no new trial of it (running ones finish)\"\"\"

        def run(self, args: argparse.Namespace) -> int: ...

The shared options it takes (where studies are, ``--json``, the study name, ...) are parent
parsers of :mod:`hpsearch.cli.options`, named in ``options``; :meth:`Command.add_arguments`
adds only the verb's own; :meth:`Command.run` does the work and returns the exit status.
"""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Sequence
from typing import Any, ClassVar

__all__ = ["Command", "add_command"]


class Command:
    """One verb. A subclass names itself (``name=``, ``options=`` in its class line) and
    implements :meth:`run`; its docstring's first paragraph is the line in ``hpsearch --help``,
    the rest (if any) the text of ``hpsearch VERB --help``.

    Imports that are slow (Optuna, torch, timm) stay inside :meth:`run`, so that building the
    parser, and ``--help``, import none of them.
    """

    name: ClassVar[str]
    options: ClassVar[tuple[argparse.ArgumentParser, ...]]
    """Parent parsers of the shared options this verb takes (:mod:`hpsearch.cli.options`)."""

    def __init_subclass__(
        cls, *, name: str, options: Sequence[argparse.ArgumentParser] = (), **kwargs: Any
    ) -> None:
        super().__init_subclass__(**kwargs)
        cls.name = name
        cls.options = tuple(options)

    @classmethod
    def help_texts(cls) -> tuple[str, str | None]:
        """``(help, description)`` from the docstring: its first paragraph, and the rest."""
        first, _, rest = (inspect.getdoc(cls) or "").partition("\n\n")
        return " ".join(first.split()), " ".join(rest.split()) or None

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add the verb's own arguments (the shared ones come from ``options``)."""

    def run(self, args: argparse.Namespace) -> int:
        """Do the verb's work; returns the exit status. Errors are :class:`HpsearchError`s."""
        raise NotImplementedError


def add_command(verbs: Any, command: Command) -> argparse.ArgumentParser:
    """Add ``command`` as a verb to ``verbs`` (what ``add_subparsers`` returned)."""
    help, description = command.help_texts()
    parser: argparse.ArgumentParser = verbs.add_parser(
        command.name, help=help, description=description, parents=list(command.options)
    )
    command.add_arguments(parser)
    parser.set_defaults(func=command.run)
    return parser
