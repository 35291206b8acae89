"""How hpsearch shows studies and configs in a terminal."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["change_text", "format_config", "print_rows", "progress_line", "status_rows"]


def format_config(config: dict[str, Any]) -> list[str]:
    """Lines ``name  value`` for a resolved config, aligned."""
    width = max((len(k) for k in config), default=0)
    lines = []
    for key in sorted(config):
        value = config[key]
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        lines.append(f"  {key:<{width}}  {shown}")
    return lines


def _best_text(status: dict[str, Any]) -> str:
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
    history = status.get("history") or []
    if history:  # changes made after it was created (hpsearch extend, PATCH)
        rows.append(("changed", f"{len(history)} time(s); last: {change_text(history[-1])}"))
    misfit = status.get("prior_misfit")
    if misfit:  # the study's evidence disagrees with the checklist's tiers
        rows.append(("prior misfit", misfit["message"]))
    return rows


def change_text(change: dict[str, Any]) -> str:
    """One study change (an entry of a status's ``history``) in words."""
    parts = [f"{field} {old!r} -> {new!r}" for field, (old, new) in change["changes"].items()]
    if change.get("cleared_failure"):
        parts.append("cleared the failure")
    by = f" by {change['by']}" if change.get("by") else ""
    return f"{', '.join(parts) or 'no change'} (at {change['at']}{by})"


def print_rows(rows: Sequence[tuple[str, str]]) -> None:
    """Print ``(label, value)`` rows with the labels aligned."""
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


def progress_line(status: dict[str, Any]) -> str:
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
