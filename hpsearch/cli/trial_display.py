"""How ``hpsearch trials`` prints trials: a table with why each failed, and one trial in full.

Works on the JSON form of :class:`hpsearch.studies.TrialRecord` (what the service and the
direct database reader both return), so the CLI prints the same either way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hpsearch.cli.output import Column, render_table

__all__ = ["format_trial", "trial_rows"]

#: Widest fail reason in the table; `hpsearch trials NAME N` shows it whole.
REASON_WIDTH = 60


def _reason(trial: Mapping[str, Any]) -> str:
    text = trial.get("fail_reason") or trial.get("prune_reason") or ""
    text = " ".join(str(text).split())  # one line
    return text if len(text) <= REASON_WIDTH else text[: REASON_WIDTH - 3] + "..."


def _value_text(trial: Mapping[str, Any], fmt: str) -> str:
    """A trial's value, or its values (several objectives) joined by '/'."""
    several = trial.get("values")
    if several:
        return "/".join("-" if v is None else format(v, ".3g") for v in several)
    return "-" if trial.get("value") is None else format(trial["value"], fmt)


def trial_rows(trials: Sequence[Mapping[str, Any]]) -> list[str]:
    """The table of ``hpsearch trials``: number, state, value, seconds, worker, and why a trial
    failed or was pruned (its first line, cut to :data:`REASON_WIDTH`)."""
    columns = [
        Column(title="#", align=">", width=5),
        Column(title="state", width=9, gap=" "),
        Column(title="value", align=">", width=10, gap=" "),
        Column(title="seconds", align=">", width=9, gap=" "),
        Column(title="worker"),
        Column(title="reason"),
    ]
    rows = [
        (
            str(t["number"]),
            str(t["state"]),
            _value_text(t, ".4f"),
            "-" if t.get("duration_seconds") is None else f"{t['duration_seconds']:.1f}",
            str(t.get("worker") or "-"),
            _reason(t) or "-",
        )
        for t in trials
    ]
    return render_table(columns, rows)


def format_trial(trial: Mapping[str, Any]) -> str:
    """One trial in full: state, value, timing, config, learning curve, and why it ended
    (a user objective's traceback included)."""
    value = _value_text(trial, ".6g")
    seconds = trial.get("duration_seconds")
    lines = [
        f"trial {trial['number']}: {trial['state']}, value {value}"
        + ("" if seconds is None else f", {seconds:.1f} s")
        + (f", worker {trial['worker']}" if trial.get("worker") else "")
        + (f", seed {trial['seed']}" if trial.get("seed") is not None else ""),
    ]
    config = trial.get("config") or {}
    if config:
        lines.append("config:")
        lines += [f"  {k}: {v!r}" for k, v in config.items()]
    curve = trial.get("intermediate_values") or {}
    if curve:
        steps = sorted(curve, key=int)
        shown = ", ".join(f"{s}: {float(curve[s]):.4g}" for s in steps[-10:])
        more = f" (last 10 of {len(steps)})" if len(steps) > 10 else ""
        lines.append(f"reported{more}: {shown}")
    metrics = trial.get("metrics") or {}
    if metrics:  # every metric at its end, what the model costs included
        lines.append("metrics: " + ", ".join(f"{k} {float(v):.4g}" for k, v in metrics.items()))
    if trial.get("prune_reason"):
        lines.append(f"pruned: {trial['prune_reason']}")
    if trial.get("fail_reason"):
        lines.append(f"failed: {trial['fail_reason']}")
    if trial.get("fail_traceback"):
        lines.append("traceback (from the worker):")
        lines += [f"  {line}" for line in str(trial["fail_traceback"]).splitlines()]
    return "\n".join(lines)
