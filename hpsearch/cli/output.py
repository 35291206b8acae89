"""How hpsearch shows studies and configs in a terminal."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "Column",
    "change_text",
    "format_config",
    "grid_text",
    "print_rows",
    "progress_line",
    "render_table",
    "status_rows",
]


@dataclass(frozen=True, kw_only=True)
class Column:
    """One column of :func:`render_table`."""

    title: str = ""
    align: Literal["<", ">"] = "<"
    width: int | None = None
    """Cells are padded to this width (a longer one overflows, as a fixed-width column does);
    ``None``: to the widest cell or title."""
    gap: str = "  "
    """What stands before the column (not before the first)."""


def render_table(
    columns: Sequence[Column], rows: Sequence[Sequence[str]], *, indent: str = ""
) -> list[str]:
    """The lines of a table: a header of the columns' titles (when any has one), then ``rows``.

    Every table the CLI prints goes through here. No line ends in spaces.
    """
    titles = [c.title for c in columns]
    table = [titles, *rows] if any(titles) else list(rows)
    widths = [
        c.width if c.width is not None else max((len(row[i]) for row in table), default=0)
        for i, c in enumerate(columns)
    ]
    if columns and columns[-1].align == "<":
        widths[-1] = 0
    lines = []
    for row in table:
        cells = [
            ("" if i == 0 else column.gap) + (f"{cell:{column.align}{width}}" if width else cell)
            for i, (column, cell, width) in enumerate(zip(columns, row, widths, strict=True))
        ]
        lines.append((indent + "".join(cells)).rstrip())
    return lines


def format_config(config: dict[str, Any]) -> list[str]:
    """Lines ``name  value`` for a resolved config, aligned."""
    rows = [
        (key, f"{config[key]:.4g}" if isinstance(config[key], float) else str(config[key]))
        for key in sorted(config)
    ]
    return render_table([Column(), Column()], rows, indent="  ")


def _best_text(status: Mapping[str, Any]) -> str:
    if status["best_value"] is None:
        return "-"
    return f"{status['best_value']:.4f} (trial {status['best_trial']})"


def status_rows(status: dict[str, Any]) -> list[tuple[str, str]]:
    """``(label, value)`` rows of a study status (as the API returns it) for `hpsearch status`."""
    counts = status["counts"]
    budget = status["budget_trials"]
    best = _best_text(status)
    rows = [
        ("study", status["name"]),
        ("space", f"{status['space']}  strategy={status['strategy']}  pruner={status['pruner']}"),
        ("finished", f"{status['finished']}" + (f" of {budget}" if budget else "")),
        ("states", "  ".join(f"{k}={v}" for k, v in counts.items() if v)),
        (f"best {status['metric']}", best),
        ("elapsed", f"{status['elapsed_seconds']:.0f} s"),
        ("state", status.get("state") or ("done" if status["done"] else "open")),
        ("done", status["done_reason"] or "no"),
    ]
    if status.get("grid_points") is not None:  # a grid search: how much of it the budget covers
        rows.insert(3, ("grid", grid_text(status)))
    history = status.get("history") or []
    if history:  # changes made after it was created (hpsearch extend, PATCH)
        rows.append(("changed", f"{len(history)} time(s); last: {change_text(history[-1])}"))
    pareto = status.get("pareto")
    if pareto:  # several objectives: the front, not one best
        volume = pareto["hypervolume"]
        rows.append(
            (
                "pareto front",
                f"{pareto['size']} trial(s) over {', '.join(pareto['objectives'])}; hypervolume "
                + ("-" if volume is None else f"{volume:.4g}")
                + f"  (`hpsearch pareto {status['name']}`)",
            )
        )
    misfit = status.get("prior_misfit")
    if misfit:  # the study's evidence disagrees with the checklist's tiers
        rows.append(("prior misfit", misfit["message"]))
    return rows


def grid_text(status: Mapping[str, Any]) -> str:
    """How many points a grid study's grid has, and how many of them its trial budget runs."""
    points, budget = status["grid_points"], status["budget_trials"]
    covered = "every point" if budget == points else f"{budget} of them (budget.trials)"
    return f"{points} grid points; the study runs {covered}"


def change_text(change: dict[str, Any]) -> str:
    """One study change (an entry of a status's ``history``) in words."""
    parts = [f"{field} {old!r} -> {new!r}" for field, (old, new) in change["changes"].items()]
    if change.get("cleared_failure"):
        parts.append("cleared the failure")
    by = f" by {change['by']}" if change.get("by") else ""
    return f"{', '.join(parts) or 'no change'} (at {change['at']}{by})"


def print_rows(rows: Sequence[tuple[str, str]]) -> None:
    """Print ``(label, value)`` rows with the labels aligned."""
    print("\n".join(render_table([Column(), Column()], rows)))


def progress_line(status: Mapping[str, Any]) -> str:
    """One line of progress: a bar of finished trials, states, the best value, elapsed time."""
    total = status["budget_trials"] or 0
    done = status["finished"]
    width = 30
    filled = int(width * done / total) if total else 0
    counts = status["counts"]
    best = _best_text(status)
    return (
        f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total} finished "
        f"({counts['pruned']} pruned, {counts['running']} running, {counts['fail']} failed)  "
        f"best {status['metric']} {best}  {status['elapsed_seconds']:.0f} s"
    )
