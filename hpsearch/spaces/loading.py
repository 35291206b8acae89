"""Finding, reading and validating search-space files, with errors that point into the file."""

from __future__ import annotations

import difflib
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from hpsearch.errors import SpaceError, SpaceNotFound
from hpsearch.spaces.schema import NotSearched, Param, SearchSpace
from hpsearch.spaces.messages import TYPE_EXPECTED
from hpsearch.yaml_input import UserYamlLoader

__all__ = ["describe_space_error", "load_space", "list_spaces"]

_BUNDLE = "hpsearch.search_spaces"
_SUFFIXES = (".yaml", ".yml")


class _SpaceLoader(UserYamlLoader):
    """PyYAML's safe loader without aliases (:mod:`hpsearch.yaml_input`), with two fixes for
    hand-written spaces.

    It reads ``1e-5`` as a float (PyYAML follows YAML 1.1, where a float needs a dot, and
    would return the string "1e-5"), and it rejects a key given twice in one mapping, which
    PyYAML would silently resolve to the last value.
    """


_SpaceLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _construct_mapping(loader: _SpaceLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
        except TypeError:
            continue
        if duplicate:
            raise yaml.constructor.ConstructorError(
                "while reading a mapping",
                node.start_mark,
                f"found the key {key!r} twice; keep one",
                key_node.start_mark,
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


_SpaceLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def list_spaces() -> list[str]:
    """The names of the bundled search spaces (``search_spaces/*.yaml``), sorted."""
    root = resources.files(_BUNDLE)
    return sorted(
        entry.name.removesuffix(".yaml")
        for entry in root.iterdir()
        if entry.name.endswith(".yaml") and entry.is_file()
    )


def load_space(name_or_path: str | os.PathLike[str], *, allow_paths: bool = True) -> SearchSpace:
    """Load and validate a search space: a bundled one by name (``"demo"``) or a YAML file by path.

    A string with a path separator or a ``.yaml``/``.yml`` suffix, or any ``os.PathLike``, is a
    path; any other string is the name of a bundled space. Every problem is a
    :class:`SpaceError` whose message starts with the file and names the parameter and field,
    e.g. ``search_spaces/demo.yaml: parameter 'optim.lr', field 'low': ...``.
    """
    if isinstance(name_or_path, os.PathLike) or _looks_like_path(name_or_path):
        if not allow_paths:
            raise SpaceNotFound(
                f"{str(name_or_path)!r} is a file path; give a bundled space name "
                f"({', '.join(list_spaces())}) or the space itself inline"
            )
        path = Path(name_or_path)
        source = str(path)
        if not path.is_file():
            raise SpaceError(
                f"{source}: no such file; give the path of a search-space YAML file, or the "
                f"name of a bundled space: {', '.join(list_spaces())}"
            )
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise SpaceError(f"{source}: cannot read the file: {e}") from e
    else:
        name = name_or_path
        entry = resources.files(_BUNDLE) / f"{name}.yaml"
        if not entry.is_file():
            known = list_spaces()
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise SpaceNotFound(
                f"unknown search space {name!r}; {hint}bundled spaces: {', '.join(known)} "
                "(or give the path of a .yaml file)"
            )
        source = f"{_BUNDLE}/{name}.yaml"
        text = entry.read_text(encoding="utf-8")
    return _parse_space(text, source)


def _looks_like_path(name: str) -> bool:
    return (
        "/" in name
        or os.sep in name
        or (os.altsep is not None and os.altsep in name)
        or name.endswith(_SUFFIXES)
    )


def _parse_space(text: str, source: str) -> SearchSpace:
    try:
        data = yaml.load(text, Loader=_SpaceLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        context = f" ({e.context})" if e.context else ""
        raise SpaceError(f"{where}: invalid YAML: {e.problem}{context}") from e
    except yaml.YAMLError as e:
        raise SpaceError(f"{source}: invalid YAML: {e}") from e
    if not isinstance(data, dict):
        raise SpaceError(
            f"{source}: the file must be a mapping with `name`, `task` and `params` at the top, "
            f"got {type(data).__name__}"
        )
    try:
        return SearchSpace.model_validate(data)
    except ValidationError as e:
        raise SpaceError(_describe(e, source)) from e




def describe_space_error(error: ValidationError, source: str) -> str:
    """A space's validation error as one line per problem, each starting with ``source``
    (a file, or ``space`` for a spec's inline space): the parameter, the field, what is wrong."""
    return _describe(error, source)


def _describe(error: ValidationError, source: str) -> str:
    """One line per problem: the file, the parameter, the field, what is wrong."""
    problems: dict[str, list[tuple[str, str, Any]]] = {}
    for err in error.errors():
        loc = err["loc"]
        ctx = err.get("ctx") or {}
        message = str(err["msg"]).removeprefix("Value error, ")
        param: str | None = None
        field: str | None = None
        model: type[Param] | type[NotSearched] | type[SearchSpace] = SearchSpace
        if loc[:1] == ("params",) and len(loc) >= 2:
            param = str(loc[1])
            field = str(loc[2]) if len(loc) >= 3 else ctx.get("field")
            model = Param
        elif loc[:1] == ("not_searched",) and len(loc) >= 2 and isinstance(loc[1], int):
            field = str(loc[2]) if len(loc) >= 3 else ctx.get("field")
            model = NotSearched
        elif loc:
            field = str(loc[0])
        else:
            param = ctx.get("param")
            field = ctx.get("field")
        if err["type"] == "extra_forbidden" and field is not None:
            message = _unknown_field(field, model)
        elif err["type"] == "missing":
            message = "required field is missing"
        parts = []
        if model is NotSearched:
            parts.append(f"not_searched entry {int(loc[1]) + 1}")
        if param is not None:
            parts.append(f"parameter {param!r}")
        if field is not None:
            parts.append(f"field {field!r}")
        where = ", ".join(parts) or "space"
        problems.setdefault(where, []).append((err["type"], message, err.get("input")))
    return "\n".join(f"{source}: {where}: {_summary(errs)}" for where, errs in problems.items())


def _summary(errs: list[tuple[str, str, Any]]) -> str:
    # A value that fits no member of a union gives one error per member: say it once.
    if all(kind in TYPE_EXPECTED for kind, _, _ in errs):
        expected = list(dict.fromkeys(TYPE_EXPECTED[kind] for kind, _, _ in errs))
        if "a number" in expected and "an integer" in expected:
            expected.remove("an integer")
        return f"expected {' or '.join(expected)}, got {errs[0][2]!r}"
    return "; ".join(dict.fromkeys(message for _, message, _ in errs))


def _unknown_field(field: str, model: type[Param] | type[NotSearched] | type[SearchSpace]) -> str:
    known = list(model.model_fields)
    close = difflib.get_close_matches(field, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown field; {hint}known fields: {', '.join(known)}"
