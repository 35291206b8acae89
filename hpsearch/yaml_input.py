"""Reading YAML that users write: PyYAML's safe loader, without anchors' aliases.

An alias (``*name``) repeats an anchored node; nested aliases multiply (a "billion laughs"
file of 480 bytes expands to gigabytes), so every YAML hpsearch reads from a user (study specs,
search-space files, enqueue configs, command-line values) goes through :class:`UserYamlLoader`,
which refuses the first alias with a one-line reason, before anything is built.
"""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["UserYamlLoader", "load_user_yaml", "yaml_error_line"]


class UserYamlLoader(yaml.SafeLoader):
    """:class:`yaml.SafeLoader` that raises :class:`yaml.composer.ComposerError` on any alias."""

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None,
                None,
                f"found the alias *{event.anchor}: hpsearch reads YAML without aliases "
                "(they can expand a small file into gigabytes); write the value out instead",
                event.start_mark,
            )
        return super().compose_node(parent, index)  # type: ignore[arg-type]


def load_user_yaml(text: str) -> Any:
    """Parse ``text`` with :class:`UserYamlLoader`; raises :class:`yaml.YAMLError`."""
    return yaml.load(text, Loader=UserYamlLoader)  # noqa: S506 - a SafeLoader subclass


def yaml_error_line(error: yaml.YAMLError, source: str) -> str:
    """``error`` as one line: ``source:line:column: problem (context)``."""
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        context = f" ({error.context})" if error.context else ""
        return f"{where}: invalid YAML: {error.problem}{context}"
    return f"{source}: invalid YAML: {' '.join(str(error).split())}"
