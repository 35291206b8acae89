"""Reading YAML that users write: PyYAML's safe loader, without anchors' aliases.

An alias (``*name``) repeats an anchored node; nested aliases multiply (a "billion laughs"
file of 480 bytes expands to gigabytes), so every YAML hpsearch reads from a user (study specs,
search-space files, enqueue configs, command-line values) goes through :class:`UserYamlLoader`,
which refuses the first alias with a one-line reason, before anything is built. It also
refuses nesting deeper than :data:`MAX_YAML_DEPTH` (``[[[[...`` twenty thousand deep would
exhaust Python's recursion), and the CLI reads at most :data:`MAX_YAML_BYTES` of a file.
"""

from __future__ import annotations

import os
from typing import Any

import yaml

__all__ = [
    "MAX_YAML_BYTES",
    "MAX_YAML_DEPTH",
    "UserYamlLoader",
    "load_user_yaml",
    "read_user_yaml_file",
    "yaml_error_line",
]

#: How deep collections may nest: a study spec or a space needs fewer than ten levels.
MAX_YAML_DEPTH = 100
#: The largest YAML file hpsearch reads from a user: the service's limit on a request body.
MAX_YAML_BYTES = 1 << 20


class UserYamlLoader(yaml.SafeLoader):
    """:class:`yaml.SafeLoader` that raises :class:`yaml.composer.ComposerError` on any alias
    and on collections nested deeper than :data:`MAX_YAML_DEPTH`."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        if self._depth >= MAX_YAML_DEPTH:
            raise yaml.composer.ComposerError(
                None,
                None,
                f"the YAML is nested too deeply (more than {MAX_YAML_DEPTH} levels); "
                "write a flatter document",
                self.peek_event().start_mark,
            )
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None,
                None,
                f"found the alias *{event.anchor}: hpsearch reads YAML without aliases "
                "(they can expand a small file into gigabytes); write the value out instead",
                event.start_mark,
            )
        self._depth += 1
        try:
            return super().compose_node(parent, index)  # type: ignore[arg-type]
        finally:
            self._depth -= 1


def load_user_yaml(text: str) -> Any:
    """Parse ``text`` with :class:`UserYamlLoader`; raises :class:`yaml.YAMLError`."""
    try:
        return yaml.load(text, Loader=UserYamlLoader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:  # the depth limit comes first; this is the net
        raise yaml.YAMLError("the YAML is nested too deeply; write a flatter document") from None


def read_user_yaml_file(path: str | os.PathLike[str]) -> str:
    """The text of the user's YAML file at ``path``; :class:`yaml.YAMLError` past
    :data:`MAX_YAML_BYTES`, ``OSError`` when it cannot be read."""
    with open(path, "rb") as f:
        data = f.read(MAX_YAML_BYTES + 1)
    if len(data) > MAX_YAML_BYTES:
        raise yaml.YAMLError(
            f"the file is larger than {MAX_YAML_BYTES // (1 << 20)} MiB, the most hpsearch "
            "reads (the service's default limit on a request); a spec or config list is a few KiB"
        )
    return data.decode("utf-8")


def yaml_error_line(error: yaml.YAMLError, source: str) -> str:
    """``error`` as one line: ``source:line:column: problem (context)``."""
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        context = f" ({error.context})" if error.context else ""
        return f"{where}: invalid YAML: {error.problem}{context}"
    return f"{source}: invalid YAML: {' '.join(str(error).split())}"
