"""How hpsearch shows studies and configs in a terminal."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["format_config", "print_rows", "progress_line", "status_rows"]


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
    return [
        ("study", status["name"]),
        ("space", f"{status['space']}  strategy={status['strategy']}  pruner={status['pruner']}"),
        ("finished", f"{status['finished']}" + (f" of {budget}" if budget else "")),
        ("states", "  ".join(f"{k}={v}" for k, v in counts.items() if v)),
        (f"best {status['metric']}", best),
        ("elapsed", f"{status['elapsed_seconds']:.0f} s"),
        ("done", status["done_reason"] or "no"),
    ]


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
