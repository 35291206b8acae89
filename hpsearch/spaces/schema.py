"""The schema of a search space: parameters, their conditions, and the checklist rows they realize.

Everything here validates on construction, from a YAML file (through :func:`load_space`) or from
a plain dict (``SearchSpace.model_validate(d)``), so a :class:`SearchSpace` in hand is always
consistent: bounds are ordered, defaults are valid values, and conditions name real parameters
without cycles.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from typing import Any, Literal, TypeAlias

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from hpsearch.errors import SpaceError
from hpsearch.families import USER_OBJECTIVE_FAMILY

__all__ = [
    "MAX_ABS_INT",
    "MAX_CHOICES",
    "MAX_NAME_LENGTH",
    "MAX_PARAMS",
    "MAX_TEXT_LENGTH",
    "Choice",
    "NotSearched",
    "Param",
    "SearchSpace",
]

#: Caps on the size of a space, so that an inline space in a study spec stays a space: the
#: bundled ones have at most 32 parameters and 6 choices a parameter.
MAX_PARAMS = 256
MAX_CHOICES = 256
#: Longest name (of the space, its task, a parameter, a string choice, a checklist row).
MAX_NAME_LENGTH = 256
#: Longest free text (a description, a reason).
MAX_TEXT_LENGTH = 4000

#: A value a categorical parameter can take (and a value a condition can test).
Choice: TypeAlias = str | int | float | bool

_MISSING = object()
# Relative tolerance when checking that a float lies on a `step` grid.
_GRID_TOL = 1e-9
#: The largest integer a bound, a step, a default, a choice or a fixed value may be: Optuna and
#: the study database hold numbers as 64-bit floats and integers; a 400-digit integer is input
#: no parameter means (and one that ``float()`` cannot even convert).
MAX_ABS_INT = 2**63


def _field_error(field: str, message: str, *, param: str | None = None) -> PydanticCustomError:
    """A validation error that remembers the field (and parameter) it is about.

    Pydantic locates errors raised by a model validator at the model, not at a field; the
    context carries the field so that :func:`load_space` can name it.
    """
    ctx: dict[str, str] = {"field": field, "message": message}
    if param is not None:
        ctx["param"] = param
    return PydanticCustomError("space_field", "{message}", ctx)


def _rows(checklist: str | list[str] | None) -> list[str]:
    if checklist is None:
        return []
    return [checklist] if isinstance(checklist, str) else list(checklist)


def _check_checklist(value: str | list[str]) -> str | list[str]:
    rows = _rows(value)
    if not rows:
        raise ValueError("`checklist` is an empty list; name at least one checklist row")
    if len(rows) > MAX_CHOICES:
        raise ValueError(f"`checklist` names {len(rows)} rows; at most {MAX_CHOICES}")
    for row in rows:
        if len(row) > MAX_NAME_LENGTH:
            raise ValueError(
                f"`checklist` row {row[:40]!r}... is {len(row)} characters long; at most "
                f"{MAX_NAME_LENGTH}"
            )
        if not row.strip():
            raise ValueError("`checklist` has an empty row name; write the row as in checklist.md")
        if row != row.strip() or row.startswith("- "):
            raise ValueError(
                f"`checklist` row {row!r} has extra whitespace or a leading '- '; "
                "write the row's text only, as in checklist.md"
            )
    if len(set(rows)) != len(rows):
        raise ValueError(f"`checklist` names a row twice: {rows}")
    return value


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _too_large(value: object) -> bool:
    """Whether ``value`` is an integer past :data:`MAX_ABS_INT` (in either direction)."""
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_ABS_INT


def _show(value: object) -> str:
    """``repr(value)``, or the size of an integer too long to print in a one-line message."""
    if isinstance(value, int) and abs(value) >= 10**40:
        return f"an integer of {len(str(abs(value)))} digits"
    return repr(value)


def _large_message(value: object) -> str:
    return (
        f"{_show(value)} is too large: numbers here must lie within +-2**63 "
        "(about 9.2e18); write a smaller number (or a float such as 1e20)"
    )


def _same_value(a: object, b: object) -> bool:
    """Equality that keeps booleans, strings and numbers apart (``True != 1`` here)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    return _is_number(a) and _is_number(b) and a == b


def _fmt(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


class Param(BaseModel):
    """One hyperparameter: its range or choices, its default, and its place in the checklist.

    ``default`` is the value used while the parameter is not being searched (the default
    ``impact`` strategy runs the defaults first and holds low tiers near them at first), so it
    must be a valid value. Numbers are
    normalized on validation: ``low``, ``high`` and ``default`` of a float parameter are floats,
    those of an int parameter ints (``64.0`` becomes ``64``). ``when`` makes the parameter exist
    only while every named parameter's value is in its list, e.g. ``{"optim.name": ["sgd"]}``.

    ``checklist`` and ``impact`` may be left out in a space for your own function (task
    ``custom``; the built-in trainers' spaces name both): the
    parameter then realizes no checklist row (importance reports cannot set it beside one,
    and checklist coverage does not count it), and its impact tier is ``medium``, so the
    impact strategy explores it after the ``high`` ones and before the ``low`` ones.
    """

    model_config = ConfigDict(extra="forbid")

    type: Literal["float", "int", "categorical"]
    low: int | float | None = None
    high: int | float | None = None
    log: bool = False
    step: int | float | None = None
    choices: list[Choice] | None = Field(default=None, max_length=MAX_CHOICES)
    default: Choice
    impact: Literal["high", "medium", "low"] = "medium"
    checklist: str | list[str] | None = None
    when: dict[str, list[Choice]] | None = Field(default=None, max_length=MAX_PARAMS)
    description: str = Field(default="", max_length=MAX_TEXT_LENGTH)

    @field_validator("choices", "default", mode="after")
    @classmethod
    def _short_strings(cls, value: Any) -> Any:
        for choice in value if isinstance(value, list) else [value]:
            if _too_large(choice):
                raise ValueError(_large_message(choice))
            if isinstance(choice, str) and len(choice) > MAX_NAME_LENGTH:
                raise ValueError(
                    f"the choice {choice[:40]!r}... is {len(choice)} characters long; at most "
                    f"{MAX_NAME_LENGTH}"
                )
        return value

    @field_validator("low", "high", "step", mode="before")
    @classmethod
    def _no_bool_bounds(cls, value: Any) -> Any:
        if isinstance(value, bool):
            # A ValueError: pydantic turns it into a validation error, but not a TypeError.
            raise ValueError(f"must be a number, got the boolean {value!r}")  # noqa: TRY004
        if _too_large(value):
            raise ValueError(_large_message(value))
        return value

    @field_validator("checklist")
    @classmethod
    def _checklist_rows(cls, value: str | list[str] | None) -> str | list[str] | None:
        return None if value is None else _check_checklist(value)

    @field_validator("when", mode="before")
    @classmethod
    def _when_lists(cls, value: Any) -> Any:
        # `when: {optim.name: sgd}` is read as `when: {optim.name: [sgd]}`.
        if isinstance(value, Mapping):
            return {k: v if isinstance(v, list | tuple) else [v] for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Param:
        if self.type == "categorical":
            self._check_categorical()
        else:
            self._check_numeric()
        try:
            self.default = self.check_value(self.default)
        except SpaceError as e:
            raise _field_error("default", f"`default` {e}") from None
        if self.when is not None:
            if not self.when:
                raise _field_error("when", "`when` is empty; remove it, or name a parameter")
            for key, values in self.when.items():
                if not values:
                    raise _field_error(
                        "when",
                        f"`when` gives {key!r} an empty list, so the parameter would never "
                        "exist; list the values for which it exists",
                    )
        return self

    def _check_categorical(self) -> None:
        for name in ("low", "high", "step"):
            if getattr(self, name) is not None:
                raise _field_error(
                    name,
                    f"a categorical parameter takes no `{name}`; remove it, or use "
                    "type float/int without `choices`",
                )
        if self.log:
            raise _field_error("log", "a categorical parameter takes no `log`; remove it")
        if not self.choices:
            raise _field_error(
                "choices", "a categorical parameter needs a non-empty `choices` list"
            )
        for i, a in enumerate(self.choices):
            for b in self.choices[i + 1 :]:
                # Optuna finds a choice with ==, so 1, 1.0 and True cannot live together.
                if a == b:
                    raise _field_error(
                        "choices",
                        f"`choices` must be unique, but {a!r} and {b!r} are equal "
                        "(Optuna compares choices with ==); remove one",
                    )

    def _check_numeric(self) -> None:
        if self.choices is not None:
            raise _field_error(
                "choices",
                f"a {self.type} parameter takes no `choices`; give `low`/`high`, or use "
                "type categorical",
            )
        for name in ("low", "high"):
            value = getattr(self, name)
            if value is None:
                raise _field_error(name, f"a {self.type} parameter needs `{name}`")
            if not math.isfinite(value):
                raise _field_error(name, f"`{name}` must be finite, got {value!r}")
            if self.type == "int":
                if value != int(value):
                    raise _field_error(
                        name, f"`{name}` of an int parameter must be a whole number, got {value!r}"
                    )
                setattr(self, name, int(value))
            else:
                setattr(self, name, float(value))
        low, high = self.low, self.high
        assert low is not None and high is not None
        if not low < high:
            raise _field_error(
                "low",
                f"`low` must be < `high`, got low={_fmt(low)}, high={_fmt(high)}; swap them, "
                "or use a categorical parameter with one choice",
            )
        if self.log and low <= 0:
            raise _field_error(
                "low",
                f"`low` must be > 0 when log=true, got low={_fmt(low)}; raise `low` or set "
                "`log: false`",
            )
        if self.step is not None:
            self._check_step(low, high)

    def _check_step(self, low: float, high: float) -> None:
        step = self.step
        assert step is not None
        if not step > 0 or not math.isfinite(step):
            raise _field_error("step", f"`step` must be a positive number, got {step!r}")
        if self.type == "int":
            if step != int(step):
                raise _field_error(
                    "step", f"`step` of an int parameter must be a whole number, got {step!r}"
                )
            step = self.step = int(step)
            if self.log and step != 1:
                raise _field_error(
                    "step", f"Optuna cannot combine log=true with step={step}; drop one of them"
                )
            if (high - low) % step:
                raise _field_error(
                    "step",
                    f"`high - low` ({_fmt(high - low)}) must be a multiple of `step` ({step}); "
                    f"set `high` to {high - (high - low) % step}",
                )
        else:
            step = self.step = float(step)
            if self.log:
                raise _field_error(
                    "step", "Optuna cannot combine log=true with a float `step`; drop one of them"
                )
            if not _on_grid(high, low, step):
                raise _field_error(
                    "step",
                    f"`high - low` ({_fmt(high - low)}) must be a multiple of `step` "
                    f"({_fmt(step)}); adjust `high` or `step`",
                )

    def checklist_rows(self) -> list[str]:
        """The checklist rows this parameter realizes (``checklist`` as a list)."""
        return _rows(self.checklist)

    def distribution(self) -> BaseDistribution:
        """The Optuna distribution this parameter is suggested from."""
        if self.type == "categorical":
            assert self.choices is not None
            return CategoricalDistribution(self.choices)
        assert self.low is not None and self.high is not None
        if self.type == "int":
            step = 1 if self.step is None else int(self.step)
            return IntDistribution(int(self.low), int(self.high), log=self.log, step=step)
        return FloatDistribution(float(self.low), float(self.high), log=self.log, step=self.step)

    def check_value(self, value: Any) -> Any:
        """Return ``value`` normalized for this parameter; raise :class:`SpaceError` if not allowed.

        Float parameters take any number (and numeric strings such as ``"1e-5"``, which PyYAML
        reads as strings) and return a float; int parameters take whole numbers, ``64.0``
        included, and return an int; categorical parameters return the matching choice, where
        booleans, strings and numbers never match each other. The message names the value and
        what is allowed, so callers only need to prefix the parameter.
        """
        if self.type == "categorical":
            assert self.choices is not None
            for choice in self.choices:
                if _same_value(value, choice):
                    return choice
            raise SpaceError(f"{value!r} is not one of the choices {self.choices}")
        assert self.low is not None and self.high is not None
        number = value
        if _too_large(value):
            raise SpaceError(
                f"{_large_message(value)}; this {self.type} parameter takes values in "
                f"[{_fmt(self.low)}, {_fmt(self.high)}]"
            )
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                number = _MISSING
        if not _is_number(number) or not math.isfinite(number):
            raise SpaceError(
                f"{value!r} is not a number; this {self.type} parameter takes values in "
                f"[{_fmt(self.low)}, {_fmt(self.high)}]"
            )
        if self.type == "int":
            if number != int(number):
                raise SpaceError(
                    f"{value!r} is not a whole number; this int parameter takes whole numbers "
                    f"in [{self.low}, {self.high}]"
                )
            number = int(number)
        else:
            number = float(number)
        if not self.low <= number <= self.high:
            raise SpaceError(
                f"{value!r} is outside the range [{_fmt(self.low)}, {_fmt(self.high)}]; "
                "pick a value within it, or widen the range"
            )
        if self.step is not None and not _on_grid(number, self.low, self.step):
            raise SpaceError(
                f"{value!r} is not on the grid low + k*step (low={_fmt(self.low)}, "
                f"step={_fmt(self.step)})"
            )
        return number


def _on_grid(value: float, low: float, step: float) -> bool:
    k = (value - low) / step
    return abs(k - round(k)) <= _GRID_TOL * max(1.0, abs(k))


class NotSearched(BaseModel):
    """A checklist row that no parameter of the space realizes, with the reason why."""

    model_config = ConfigDict(extra="forbid")

    checklist: str | list[str]
    reason: str = Field(min_length=1, max_length=MAX_TEXT_LENGTH)

    @field_validator("checklist")
    @classmethod
    def _checklist_rows(cls, value: str | list[str]) -> str | list[str]:
        return _check_checklist(value)

    @field_validator("reason")
    @classmethod
    def _reason_text(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("`reason` is blank; say why this row is not searched")
        return value

    def checklist_rows(self) -> list[str]:
        """The checklist rows this entry accounts for (``checklist`` as a list)."""
        return _rows(self.checklist)


class SearchSpace(BaseModel):
    """A named set of :class:`Param` for one task family, plus the checklist rows it leaves out.

    ``params`` keeps its order (the file's order); conditions (``when``) may name only other
    parameters of the space, with values those parameters can take, and may not form cycles.
    Round-trips through ``model_dump(mode="json")`` and ``model_validate``.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)
    task: str = Field(
        min_length=1,
        max_length=MAX_NAME_LENGTH,
        description="The task family; "
        f"{USER_OBJECTIVE_FAMILY!r} for your own function (`hpsearch worker --objective`), "
        "whose parameters may leave out `checklist` and `impact`. A study spec's inline space "
        f"without it takes the spec's task.family, else {USER_OBJECTIVE_FAMILY!r}.",
    )
    description: str = Field(default="", max_length=MAX_TEXT_LENGTH)
    params: dict[str, Param] = Field(max_length=MAX_PARAMS)
    not_searched: list[NotSearched] = Field(default_factory=list, max_length=MAX_PARAMS)

    @field_validator("params")
    @classmethod
    def _some_params(cls, value: dict[str, Param]) -> dict[str, Param]:
        if not value:
            raise ValueError("`params` is empty; a space needs at least one parameter")
        for name in value:
            if not name or name != name.strip():
                raise ValueError(f"parameter name {name!r} is empty or has extra whitespace")
            if len(name) > MAX_NAME_LENGTH:
                raise ValueError(
                    f"parameter name {name[:40]!r}... is {len(name)} characters long; at most "
                    f"{MAX_NAME_LENGTH}"
                )
        return value

    @model_validator(mode="after")
    def _checklist_named(self) -> SearchSpace:
        # The built-in trainers' spaces realize the checklist: each parameter says its row and
        # tier. Only a space for your own function may leave them out.
        if self.task == USER_OBJECTIVE_FAMILY:
            return self
        for name, param in self.params.items():
            for field in ("impact", "checklist"):
                if field not in param.model_fields_set or getattr(param, field) is None:
                    raise _field_error(
                        field,
                        f"required field is missing: a space for the {self.task} trainer names "
                        f"each parameter's `{field}` (only a space for your own function, "
                        f"task: {USER_OBJECTIVE_FAMILY}, may leave it out)",
                        param=name,
                    )
        return self

    @model_validator(mode="after")
    def _conditions(self) -> SearchSpace:
        for name, param in self.params.items():
            if not param.when:
                continue
            normalized: dict[str, list[Choice]] = {}
            for key, values in param.when.items():
                if key == name:
                    raise _field_error(
                        "when",
                        f"`when` names the parameter itself ({key!r}); remove it",
                        param=name,
                    )
                if key not in self.params:
                    close = difflib.get_close_matches(key, list(self.params), n=1)
                    hint = (
                        f"did you mean {close[0]!r}?" if close else "name a parameter of this space"
                    )
                    raise _field_error(
                        "when",
                        f"`when` names {key!r}, which is not a parameter here; {hint}",
                        param=name,
                    )
                try:
                    normalized[key] = [self.params[key].check_value(v) for v in values]
                except SpaceError as e:
                    raise _field_error(
                        "when",
                        f"`when` tests {key!r} for a value it cannot take: {e}",
                        param=name,
                    ) from None
            param.when = normalized
        cycle = self._find_cycle()
        if cycle:
            raise _field_error(
                "when",
                f"conditions form a cycle: {' -> '.join(cycle)}; a parameter cannot depend "
                "on itself through others",
                param=cycle[0],
            )
        realized = self.checklist_rows()
        for entry in self.not_searched:
            for row in entry.checklist_rows():
                if row in realized:
                    users = [n for n, p in self.params.items() if row in p.checklist_rows()]
                    raise _field_error(
                        "not_searched",
                        f"row {row!r} is listed as not searched, but parameter(s) {users} "
                        "realize it; remove one of the two",
                    )
        return self

    def _find_cycle(self) -> list[str]:
        state: dict[str, int] = {}  # 1: on the current path, 2: done
        path: list[str] = []

        def visit(name: str) -> list[str]:
            state[name] = 1
            path.append(name)
            for dep in self.params[name].when or {}:
                if state.get(dep) == 1:
                    return path[path.index(dep) :] + [dep]
                if dep not in state:
                    found = visit(dep)
                    if found:
                        return found
            path.pop()
            state[name] = 2
            return []

        for name in self.params:
            if name not in state:
                found = visit(name)
                if found:
                    return found
        return []

    def ordered_names(self) -> list[str]:
        """Parameter names in suggestion order: each after the parameters its ``when`` names.

        Apart from that, file order: the earliest parameter whose conditions are all placed
        comes next.
        """
        placed: list[str] = []
        done: set[str] = set()
        pending = list(self.params)
        while pending:
            for name in pending:
                if all(dep in done for dep in self.params[name].when or {}):
                    placed.append(name)
                    done.add(name)
                    pending.remove(name)
                    break
            else:  # unreachable: validation rejects cycles
                raise SpaceError(f"space {self.name!r}: conditions form a cycle among {pending}")
        return placed

    def is_active(self, name: str, config: Mapping[str, Any]) -> bool:
        """Whether parameter ``name`` exists given the values in ``config``.

        True without a ``when``; otherwise every named parameter must be active and present in
        ``config`` with a listed value. A parameter missing from ``config`` fails its test.
        """
        try:
            param = self.params[name]
        except KeyError:
            raise SpaceError(self._unknown(name)) from None
        for key, allowed in (param.when or {}).items():
            if key not in config or not self.is_active(key, config):
                return False
            if not any(_same_value(config[key], a) for a in allowed):
                return False
        return True

    def check_fixed(self, fixed: Mapping[str, Any]) -> dict[str, Any]:
        """Validate values pinned for a study; return them normalized (e.g. ``64.0`` -> ``64``).

        Raises :class:`SpaceError` for a name that is not a parameter (suggesting the closest
        one), for a value the parameter cannot take, and for a parameter whose condition the
        other fixed values make impossible (it would never be used).
        """
        out: dict[str, Any] = {}
        for name, value in fixed.items():
            if name not in self.params:
                raise SpaceError(f"fixed: {self._unknown(name)}")
            try:
                out[name] = self.params[name].check_value(value)
            except SpaceError as e:
                raise SpaceError(f"fixed: space {self.name!r}, parameter {name!r}: {e}") from None
        for name in out:
            reason = self._never_active(name, out)
            if reason:
                raise SpaceError(
                    f"fixed: space {self.name!r}, parameter {name!r} would never be used: "
                    f"{reason}; unfix it, or change the other fixed value"
                )
        return out

    def _never_active(self, name: str, fixed: Mapping[str, Any]) -> str:
        for key, allowed in (self.params[name].when or {}).items():
            if key not in fixed:
                continue
            if not any(_same_value(fixed[key], a) for a in allowed):
                return (
                    f"it exists only when {key!r} is one of {allowed}, "
                    f"and {key!r} is fixed to {fixed[key]!r}"
                )
            upstream = self._never_active(key, fixed)
            if upstream:
                return f"it depends on {key!r}, which would never be used: {upstream}"
        return ""

    def checklist_rows(self) -> set[str]:
        """The checklist rows the parameters realize (not those listed in ``not_searched``)."""
        return {row for param in self.params.values() for row in param.checklist_rows()}

    def _unknown(self, name: str) -> str:
        close = difflib.get_close_matches(name, list(self.params), n=1)
        hint = (
            f"did you mean {close[0]!r}?"
            if close
            else f"known parameters: {', '.join(self.params)}"
        )
        return f"space {self.name!r} has no parameter {name!r}; {hint}"
