"""Pydantic's validation errors as plain lines: one per problem, the field path as a user wrote it.

Pydantic locates an error inside a union by the member it tried, so a bad inline space reads
``space.function-after[_conditions(), SearchSpace].task: Field required``, and a value that fits
no member gives one error per member. :func:`plain_errors` drops those member labels from the
path, drops the errors of members the input plainly was not meant for (``space`` is a mapping,
not a string), and says the rest as ``space.params.x.low: a float parameter needs `low```.
Used for study specs (:mod:`hpsearch.studies`), FastAPI's request errors (the service and the
client) and the task options of ``hpsearch try``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import ValidationError

__all__ = ["TYPE_EXPECTED", "clean_errors", "plain_errors", "validation_message"]

# Labels pydantic gives union members and wrapped validators, never a name a user wrote.
_TAG = re.compile(
    r"^(str|int|float|bool|bytes|none|list|dict|tuple|set|json-or-python|lax-or-strict"
    r"|is-instance|chain|nullable|literal|tagged-union|union)$"
    r"|[\[\]()]"
    r"|^(function|constrained|lax|strict|json|python)-"
)
# Classes whose names pydantic uses as union-member labels (the models of a study spec).
_MODEL_NAMES = frozenset(
    {"SearchSpace", "Param", "NotSearched", "TaskSpec", "Budget", "PrunerSpec", "WarmStart",
     "StudySpec"}
)  # fmt: skip
#: Pydantic's type errors, as the kind of value that was expected (space files use it too).
TYPE_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "a boolean",
    "bool_parsing": "a boolean",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}
# ... and a literal's error, to say a value that fits no union member once.
_EXPECTED: dict[str, str | None] = {**TYPE_EXPECTED, "literal_error": None}


def _is_tag(part: object) -> bool:
    return isinstance(part, str) and (part in _MODEL_NAMES or bool(_TAG.search(part)))


def _message(err: Mapping[str, Any]) -> str:
    kind = err.get("type", "")
    if kind == "missing":
        return "required, and missing"
    if kind == "extra_forbidden":
        return "not a field here (remove it, or check its spelling)"
    message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    message = message.removeprefix("Assertion failed, ")
    value = err.get("input")
    if kind in _EXPECTED and isinstance(value, int | float | str | bool | None):
        shown = repr(value)
        message = f"{message}, got {shown[:80]}{'...' if len(shown) > 80 else ''}"
    return message


def clean_errors(errors: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """pydantic's ``errors()`` (or FastAPI's detail) with union-member labels dropped from each
    ``loc``, and without the type errors of members the input was plainly not meant for (see
    :func:`plain_errors`); each keeps ``loc``, ``msg``, ``type`` and ``input``."""
    rows = []
    for err in errors:
        loc = list(err.get("loc") or [])
        kept = [p for p in loc if not _is_tag(p)]
        rows.append((err, kept, len(kept) != len(loc)))

    def path(loc: list[Any]) -> str:
        return ".".join(map(str, loc))

    def beside(err: Mapping[str, Any], loc: list[Any]) -> bool:
        here = path(loc)
        return any(
            other is not err
            and (
                (path(o_loc) == here and other.get("type") not in _EXPECTED)
                or path(o_loc).startswith(f"{here}.")
            )
            for other, o_loc, _ in rows
        )

    out = []
    for err, loc, tagged in rows:
        if tagged and err.get("type") in _EXPECTED and beside(err, loc):
            continue
        msg = str(err.get("msg", "")).removeprefix("Value error, ")
        out.append({"loc": loc, "msg": msg, "type": err.get("type"), "input": err.get("input")})
    return out


def plain_errors(errors: Iterable[Mapping[str, Any]], *, skip: int = 0) -> list[str]:
    """One ``path: problem`` line per problem of pydantic's ``errors()`` (or FastAPI's detail).

    ``skip`` drops leading path parts (FastAPI's ``body``). Union-member labels are dropped
    from paths; a type error of one member is dropped when another member's error lies at or
    under the same path (the input was meant for that member); type errors of every member at
    one path become one ``expected a string or a mapping, got 5``. A model validator's error
    that names its parameter and field (``ctx``) is placed at them.
    """
    rows: list[tuple[str, str, str, Any, bool]] = []  # path, kind, message, input, from a union
    for err in errors:
        loc = list(err.get("loc") or [])[skip:]
        tagged = any(_is_tag(p) for p in loc)
        parts = [str(p) for p in loc if not _is_tag(p)]
        ctx = err.get("ctx") or {}
        if isinstance(ctx, Mapping):
            if ctx.get("param") and "params" not in parts:
                parts += ["params", str(ctx["param"])]
            if ctx.get("field") and (not parts or parts[-1] != ctx["field"]):
                parts.append(str(ctx["field"]))
        path = ".".join(parts)
        rows.append((path, str(err.get("type", "")), _message(err), err.get("input"), tagged))

    def deeper_elsewhere(path: str, kind: str) -> bool:
        return any(
            (p == path and k not in _EXPECTED) or p.startswith(f"{path}.") or (not path and p)
            for p, k, _, _, _ in rows
            if (p, k) != (path, kind)
        )

    kept = [r for r in rows if not (r[4] and r[1] in _EXPECTED and deeper_elsewhere(r[0], r[1]))]
    # Several type errors at one path are the members of a union (labels already dropped by
    # the service, or not): say them as one.
    typed = [r[0] for r in kept if _EXPECTED.get(r[1])]
    lines: list[str] = []
    type_errors: dict[str, list[tuple[str, Any]]] = {}
    for path, kind, message, value, tagged in kept:
        if _EXPECTED.get(kind) and (tagged or typed.count(path) > 1):
            type_errors.setdefault(path, []).append((str(_EXPECTED[kind]), value))
            continue
        for line in message.splitlines() or [""]:  # a message may hold several problems
            # At the root (a whole-spec check), the message names its own place.
            lines.append(f"{path}: {line.strip()}" if path else line.strip())
    for path, expected in type_errors.items():
        names = list(dict.fromkeys(e for e, _ in expected))
        if "a number" in names and "an integer" in names:
            names.remove("an integer")
        got = repr(expected[0][1])
        lines.append(f"{path or 'spec'}: expected {' or '.join(names)}, got {got[:80]}")
    return list(dict.fromkeys(lines))


def validation_message(
    error: ValidationError | Sequence[Mapping[str, Any]], *, skip: int = 0
) -> str:
    """:func:`plain_errors` of ``error`` joined into one message, one problem a line."""
    errors = error.errors() if isinstance(error, ValidationError) else error
    return "\n".join(plain_errors(errors, skip=skip))
