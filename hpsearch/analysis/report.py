"""Error analysis of a trained model on its validation split: metrics, worst examples, plots.

The checklist's pipeline ends with "do error analysis and improve your dataset": this is that
step, built from a trial's kept :class:`~hpsearch.analysis.predictions.ValPredictions`
(:mod:`hpsearch.analysis.artifacts`). :func:`build_report` computes the numbers (per-class precision,
recall, F1 and the confusion matrix; or RMSE, MAE and the residuals), :func:`render_plot` draws
a PNG, :func:`write_report` writes an HTML or Markdown document with its PNGs beside it, and
:func:`study_report` does it all for a trial of a study. numpy and matplotlib (Agg, no pyplot
state) only: the service imports this module, and it must not import torch.
"""

from __future__ import annotations

import html
import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel

from hpsearch.errors import ArtifactNotFound, UsageError
from hpsearch.analysis.misfit import PriorCheck, study_prior_check
from hpsearch.safe_names import name_slug

if TYPE_CHECKING:
    import optuna
    from matplotlib.figure import Figure

    from hpsearch.analysis.artifacts import ArtifactStore
    from hpsearch.analysis.predictions import ValPredictions

__all__ = [
    "PLOTS",
    "ClassMetrics",
    "ConfusionMatrix",
    "ErrorReport",
    "ResidualSummary",
    "WorstExample",
    "build_report",
    "default_report_dir",
    "render_plot",
    "study_report",
    "write_report",
]

#: Every plot a report can have; :attr:`ErrorReport.plots` lists the ones a given report has.
PLOTS = ("confusion", "worst", "residuals")
PlotName = Literal["confusion", "worst", "residuals"]
_ROW_VALUES_SHOWN = 12  # feature values shown per worst row in the documents (JSON has all)
_WORST_SHOWN = 16  # worst examples listed in the documents (JSON and the image grid: all kept)


class ClassMetrics(BaseModel):
    """Precision, recall and F1 of one class (0 where undefined, as scikit-learn does)."""

    name: str
    precision: float
    recall: float
    f1: float
    support: int


class ConfusionMatrix(BaseModel):
    """Counts of validation examples: ``matrix[true][predicted]``, in the order of ``labels``."""

    labels: list[str]
    matrix: list[list[int]]


class ResidualSummary(BaseModel):
    """The residuals ``predicted - true`` of a regression, summarized."""

    mean: float
    std: float
    min: float
    median: float
    max: float
    abs_p95: float


class WorstExample(BaseModel):
    """One of the highest-loss validation examples.

    ``index`` is its position in the validation split. ``true``/``predicted`` are class names
    (classification) or values (regression); ``confidence`` is the predicted class's
    probability. ``row`` (tabular: feature name to value) or ``file`` (audio) shows the input;
    images are in the ``worst`` plot.
    """

    rank: int
    index: int
    true: str | float
    predicted: str | float
    loss: float
    confidence: float | None = None
    row: dict[str, float] | None = None
    file: str | None = None


class ErrorReport(BaseModel):
    """The error analysis of one trial's final model on the validation split."""

    study: str | None = None
    trial: int | None = None
    kind: Literal["classification", "regression"]
    family: str
    examples: int
    accuracy: float | None = None
    macro_f1: float | None = None
    classes: list[ClassMetrics] | None = None
    confusion: ConfusionMatrix | None = None
    rmse: float | None = None
    mae: float | None = None
    residuals: ResidualSummary | None = None
    worst: list[WorstExample]
    plots: list[str]
    prior: PriorCheck | None = None  # the study's evidence against the checklist's tiers

    def prior_line(self) -> str | None:
        """The prior-misfit line of the headline (None when the study was not checked)."""
        if self.prior is None:
            return None
        label = "prior misfit" if self.prior.verdict == "misfit" else "checklist prior"
        return f"{label}: {self.prior.line}"

    def headline(self) -> list[str]:
        """A few lines that sum the report up (what the CLI prints)."""
        title = f"trial {self.trial} of {self.study}" if self.study else "the model"
        lines = [f"error analysis of {title}: {self.examples} validation examples ({self.family})"]
        if self.kind == "classification":
            assert self.classes is not None and self.confusion is not None
            lines.append(f"accuracy {self.accuracy:.4f}  macro F1 {self.macro_f1:.4f}")
            worst = min(self.classes, key=lambda c: (c.f1, c.name))
            lines.append(
                f"weakest class: {worst.name} (F1 {worst.f1:.3f}, support {worst.support})"
            )
            pair = _most_confused(self.confusion)
            if pair is not None:
                lines.append(f"most confused: true {pair[0]} predicted as {pair[1]} ({pair[2]}x)")
        else:
            lines.append(f"RMSE {self.rmse:.4g}  MAE {self.mae:.4g}")
        if self.worst:
            w = self.worst[0]
            lines.append(
                f"worst example: #{w.index} true {_fmt(w.true)} predicted {_fmt(w.predicted)} "
                f"(loss {w.loss:.4g})"
            )
        prior = self.prior_line()
        if prior is not None:
            lines.append(prior)
        return lines


def _fmt(value: str | float) -> str:
    return value if isinstance(value, str) else f"{value:.4g}"


def _most_confused(confusion: ConfusionMatrix) -> tuple[str, str, int] | None:
    m = np.asarray(confusion.matrix)
    off = m.copy()
    np.fill_diagonal(off, 0)
    if off.max(initial=0) == 0:
        return None
    t, p = np.unravel_index(int(off.argmax()), off.shape)
    return confusion.labels[t], confusion.labels[p], int(off[t, p])


def _class_names(preds: ValPredictions) -> list[str]:
    if preds.class_names:
        return list(preds.class_names)
    if preds.probs is not None:
        n = preds.probs.shape[1]
    else:
        n = int(max(preds.y_true.max(initial=0), preds.y_pred.max(initial=0))) + 1
    return [str(c) for c in range(n)]


def build_report(preds: ValPredictions) -> ErrorReport:
    """The report's numbers from a model's validation predictions (no plots drawn)."""
    y_true = np.asarray(preds.y_true)
    y_pred = np.asarray(preds.y_pred)
    loss = np.asarray(preds.loss, dtype=np.float64)
    if y_true.shape != y_pred.shape or y_true.shape[0] != loss.shape[0]:
        raise UsageError(
            f"predictions disagree in length: y_true {y_true.shape}, y_pred {y_pred.shape}, "
            f"loss {loss.shape}"
        )
    fields: dict = {}
    if preds.kind == "classification":
        names = _class_names(preds)
        fields = _classification(y_true.astype(np.int64), y_pred.astype(np.int64), names)
        plots = ["confusion"]
    else:
        fields = _regression(y_true.astype(np.float64), y_pred.astype(np.float64))
        plots = ["residuals"]
    if preds.worst_images is not None and len(preds.worst_images):
        plots.append("worst")
    return ErrorReport(
        kind=preds.kind,
        family=preds.family,
        examples=int(y_true.shape[0]),
        worst=_worst(preds),
        plots=plots,
        **fields,
    )


def _classification(y_true: np.ndarray, y_pred: np.ndarray, names: list[str]) -> dict:
    k = len(names)
    bad = [int(v) for v in np.concatenate([y_true, y_pred]) if not 0 <= v < k]
    if bad:
        raise UsageError(f"class index {bad[0]} outside the {k} class names {names}")
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (y_true, y_pred), 1)
    tp = np.diag(confusion).astype(np.float64)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(k), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(k), where=denom > 0)
    classes = [
        ClassMetrics(
            name=names[c],
            precision=float(precision[c]),
            recall=float(recall[c]),
            f1=float(f1[c]),
            support=int(support[c]),
        )
        for c in range(k)
    ]
    n = max(len(y_true), 1)
    return {
        "accuracy": float(tp.sum() / n),
        "macro_f1": float(f1.mean()) if k else 0.0,
        "classes": classes,
        "confusion": ConfusionMatrix(labels=names, matrix=confusion.tolist()),
    }


def _regression(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    residual = y_pred - y_true
    if residual.size == 0:
        residual = np.zeros(1)
    return {
        "rmse": float(np.sqrt(np.mean(residual**2))),
        "mae": float(np.mean(np.abs(residual))),
        "residuals": ResidualSummary(
            mean=float(residual.mean()),
            std=float(residual.std()),
            min=float(residual.min()),
            median=float(np.median(residual)),
            max=float(residual.max()),
            abs_p95=float(np.percentile(np.abs(residual), 95)),
        ),
    }


def _worst(preds: ValPredictions) -> list[WorstExample]:
    names = _class_names(preds) if preds.kind == "classification" else None
    out = []
    for rank, index in enumerate(np.asarray(preds.worst, dtype=np.int64)):
        i = int(index)
        if names is not None:
            true: str | float = names[int(preds.y_true[i])]
            predicted: str | float = names[int(preds.y_pred[i])]
        else:
            true, predicted = float(preds.y_true[i]), float(preds.y_pred[i])
        example = WorstExample(
            rank=rank + 1, index=i, true=true, predicted=predicted, loss=float(preds.loss[i])
        )
        if preds.probs is not None:
            example.confidence = float(preds.probs[i, int(preds.y_pred[i])])
        if preds.worst_rows is not None and rank < len(preds.worst_rows):
            features = preds.feature_names or [f"x{j}" for j in range(preds.worst_rows.shape[1])]
            example.row = {f: float(v) for f, v in zip(features, preds.worst_rows[rank])}
        if preds.worst_files is not None and rank < len(preds.worst_files):
            example.file = preds.worst_files[rank]
        out.append(example)
    return out


# -- plots -------------------------------------------------------------------------------------


def render_plot(report: ErrorReport, preds: ValPredictions, plot: str) -> bytes:
    """One of the report's plots as PNG bytes.

    ``confusion`` (classification), ``residuals`` (regression), ``worst`` (image families: a
    grid of the worst examples with true and predicted labels). Raises
    :class:`ArtifactNotFound` naming the plots this report has when it has not that one.
    """
    if plot not in report.plots:
        raise ArtifactNotFound(
            f"this {report.kind} report ({report.family}) has no plot {plot!r}; it has: "
            f"{', '.join(report.plots)}"
        )
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # no pyplot: no global state, safe in threads

    if plot == "confusion":
        fig = _confusion_figure(report, Figure)
    elif plot == "residuals":
        fig = _residuals_figure(preds, Figure)
    else:
        fig = _worst_figure(report, preds, Figure)
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def _confusion_figure(report: ErrorReport, figure: type[Figure]) -> Figure:
    assert report.confusion is not None
    labels = report.confusion.labels
    m = np.asarray(report.confusion.matrix)
    k = len(labels)
    side = min(max(4.0, 0.45 * k + 2), 16.0)
    fig = figure(figsize=(side, side * 0.9))
    ax = fig.add_subplot()
    # Colour by the share of each true class, so small classes' errors show as well.
    rows = m.sum(axis=1, keepdims=True)
    share = np.divide(m, rows, out=np.zeros(m.shape), where=rows > 0)
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    if k <= 30:
        ticks = np.arange(k)
        ax.set_xticks(ticks, labels=labels, rotation=90 if k > 10 else 0)
        ax.set_yticks(ticks, labels=labels)
    if k <= 20:
        for t in range(k):
            for p in range(k):
                if m[t, p]:
                    color = "white" if share[t, p] > 0.5 else "black"
                    ax.text(p, t, str(m[t, p]), ha="center", va="center", color=color, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusion matrix ({int(m.sum())} examples)")
    return fig


def _residuals_figure(preds: ValPredictions, figure: type[Figure]) -> Figure:
    y_true = np.asarray(preds.y_true, dtype=np.float64)
    residual = np.asarray(preds.y_pred, dtype=np.float64) - y_true
    fig = figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    ax.scatter(y_true, residual, s=8, alpha=0.5, label="validation examples")
    worst = np.asarray(preds.worst, dtype=np.int64)
    if worst.size:
        ax.scatter(y_true[worst], residual[worst], s=18, color="crimson", label="highest loss")
    ax.axhline(0.0, color="black", linewidth=1)
    ax.set_xlabel("true value")
    ax.set_ylabel("residual (predicted - true)")
    ax.set_title("residuals against the target")
    ax.legend(loc="best", fontsize=8)
    return fig


def _worst_figure(report: ErrorReport, preds: ValPredictions, figure: type[Figure]) -> Figure:
    images = np.asarray(preds.worst_images)
    n = min(len(images), len(report.worst))
    cols = min(8, n)
    rows = math.ceil(n / cols)
    fig = figure(figsize=(1.6 * cols, 1.9 * rows))
    for i in range(n):
        ax = fig.add_subplot(rows, cols, i + 1)
        image = images[i]
        if image.ndim == 3 and image.shape[-1] == 1:
            image = image[..., 0]
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None)
        w = report.worst[i]
        ax.set_title(f"t:{_fmt(w.true)} p:{_fmt(w.predicted)}", fontsize=8, color="crimson")
        ax.axis("off")
    fig.suptitle("highest-loss validation examples (t: true, p: predicted)", fontsize=9)
    return fig


# -- documents ---------------------------------------------------------------------------------


def default_report_dir(study_name: str, trial_number: int) -> Path:
    """The folder ``hpsearch report`` writes into unless told: ``hpsearch-report-<slug>-trialN``
    in the current directory, the study's name made one safe path component
    (:func:`hpsearch.safe_names.name_slug`), so no name can put it elsewhere."""
    return Path(f"hpsearch-report-{name_slug(study_name)}-trial{int(trial_number)}")


def write_report(
    report: ErrorReport,
    preds: ValPredictions,
    out_dir: str | Path,
    *,
    fmt: Literal["html", "md"] = "html",
) -> Path:
    """Write ``report.html`` (or ``report.md``) and its PNGs into ``out_dir``; returns the document.

    The document refers to the PNGs by relative name, so the folder can be moved or served as
    is. The folder is created when missing; files of an earlier report there are replaced.
    """
    if fmt not in ("html", "md"):
        raise UsageError(f"report format must be html or md, got {fmt!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for plot in report.plots:
        (out / f"{plot}.png").write_bytes(render_plot(report, preds, plot))
    document = out / f"report.{fmt}"
    text = _html(report) if fmt == "html" else _markdown(report)
    document.write_text(text, encoding="utf-8")
    return document


def _row_text(row: dict[str, float] | None) -> str:
    if not row:
        return ""
    items = list(row.items())
    shown = ", ".join(f"{k}={v:.4g}" for k, v in items[:_ROW_VALUES_SHOWN])
    more = len(items) - _ROW_VALUES_SHOWN
    return shown + (f", ... ({more} more)" if more > 0 else "")


def _worst_columns(report: ErrorReport) -> tuple[list[str], list[list[str]]]:
    head = ["rank", "index", "true", "predicted", "loss"]
    has_conf = any(w.confidence is not None for w in report.worst)
    has_row = any(w.row for w in report.worst)
    has_file = any(w.file for w in report.worst)
    head += ["confidence"] * has_conf + ["row"] * has_row + ["file"] * has_file
    body = []
    for w in report.worst[:_WORST_SHOWN]:
        cells = [str(w.rank), str(w.index), _fmt(w.true), _fmt(w.predicted), f"{w.loss:.4g}"]
        if has_conf:
            cells.append("" if w.confidence is None else f"{w.confidence:.3f}")
        if has_row:
            cells.append(_row_text(w.row))
        if has_file:
            cells.append(w.file or "")
        body.append(cells)
    return head, body


def _summary_pairs(report: ErrorReport) -> list[tuple[str, str]]:
    pairs = [("examples", str(report.examples)), ("family", report.family)]
    if report.kind == "classification":
        pairs += [("accuracy", f"{report.accuracy:.4f}"), ("macro F1", f"{report.macro_f1:.4f}")]
    else:
        assert report.residuals is not None
        r = report.residuals
        pairs += [
            ("RMSE", f"{report.rmse:.4g}"),
            ("MAE", f"{report.mae:.4g}"),
            ("residual mean / std", f"{r.mean:.4g} / {r.std:.4g}"),
            ("residual min / median / max", f"{r.min:.4g} / {r.median:.4g} / {r.max:.4g}"),
            ("|residual| 95th percentile", f"{r.abs_p95:.4g}"),
        ]
    return pairs


def _title(report: ErrorReport) -> str:
    if report.study is not None:
        return f"Error analysis: study {report.study}, trial {report.trial}"
    return "Error analysis"


def _markdown(report: ErrorReport) -> str:
    def table(head: list[str], body: list[list[str]]) -> list[str]:
        esc = [[c.replace("|", "\\|") for c in row] for row in [head, *body]]
        return [
            "| " + " | ".join(esc[0]) + " |",
            "|" + "---|" * len(head),
            *("| " + " | ".join(r) + " |" for r in esc[1:]),
        ]

    lines = [f"# {_title(report)}", "", *report.headline(), ""]
    lines += table(["", ""], [[k, v] for k, v in _summary_pairs(report)]) + [""]
    if report.classes is not None:
        lines += ["## Per class", ""]
        lines += table(
            ["class", "precision", "recall", "F1", "support"],
            [
                [c.name, f"{c.precision:.3f}", f"{c.recall:.3f}", f"{c.f1:.3f}", str(c.support)]
                for c in report.classes
            ],
        ) + [""]
    if "confusion" in report.plots:
        lines += ["## Confusion matrix (rows: true, columns: predicted)", ""]
        lines += ["![confusion matrix](confusion.png)", ""]
    if "residuals" in report.plots:
        lines += ["## Residuals", "", "![residuals against the target](residuals.png)", ""]
    lines += [f"## Highest-loss examples (top {min(len(report.worst), _WORST_SHOWN)})", ""]
    lines += table(*_worst_columns(report)) + [""]
    if "worst" in report.plots:
        lines += ["![highest-loss examples](worst.png)", ""]
    if report.prior is not None:
        lines += ["## Prior misfit", "", report.prior.line, ""]
        if report.prior.ranking:
            lines += table(*_prior_columns(report.prior)) + [""]
    return "\n".join(lines)


def _prior_columns(prior: PriorCheck) -> tuple[list[str], list[list[str]]]:
    head = ["knob", "importance", "checklist tier"]
    return head, [[r.param, f"{r.importance:.3f}", r.tier] for r in prior.ranking]


_CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}"
    "table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}"
    "td.t,th.t{text-align:left}img{max-width:100%}"
    ".wide{overflow-x:auto}"
)


def _html(report: ErrorReport) -> str:
    e = html.escape

    def table(head: list[str], body: list[list[str]], *, left: int = 1) -> str:
        def cell(tag: str, i: int, v: str) -> str:
            cls = ' class="t"' if i < left or i >= 5 else ""
            return f"<{tag}{cls}>{e(v)}</{tag}>"

        rows = ["<tr>" + "".join(cell("th", i, h) for i, h in enumerate(head)) + "</tr>"]
        rows += [
            "<tr>" + "".join(cell("td", i, v) for i, v in enumerate(r)) + "</tr>" for r in body
        ]
        return '<div class="wide"><table>' + "".join(rows) + "</table></div>"

    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(_title(report))}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(_title(report))}</h1>",
        "<p>" + "<br>".join(e(line) for line in report.headline()) + "</p>",
        table(["", ""], [[k, v] for k, v in _summary_pairs(report)]),
    ]
    if report.classes is not None:
        parts.append("<h2>Per class</h2>")
        parts.append(
            table(
                ["class", "precision", "recall", "F1", "support"],
                [
                    [c.name, f"{c.precision:.3f}", f"{c.recall:.3f}", f"{c.f1:.3f}", str(c.support)]
                    for c in report.classes
                ],
            )
        )
    if "confusion" in report.plots:
        parts.append("<h2>Confusion matrix</h2><p>Rows: true class; columns: predicted.</p>")
        parts.append('<img src="confusion.png" alt="confusion matrix">')
    if "residuals" in report.plots:
        parts.append('<h2>Residuals</h2><img src="residuals.png" alt="residuals">')
    parts.append(f"<h2>Highest-loss examples (top {min(len(report.worst), _WORST_SHOWN)})</h2>")
    parts.append(table(*_worst_columns(report), left=0))
    if "worst" in report.plots:
        parts.append('<img src="worst.png" alt="highest-loss examples">')
    if report.prior is not None:
        parts.append(f"<h2>Prior misfit</h2><p>{e(report.prior.line)}</p>")
        if report.prior.ranking:
            parts.append(table(*_prior_columns(report.prior)))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# -- a trial of a study ------------------------------------------------------------------------


def study_report(
    storage: optuna.storages.RDBStorage,
    store: ArtifactStore | None,
    study_name: str,
    trial_number: int | None = None,
) -> tuple[ErrorReport, ValPredictions]:
    """The report of a trial of a study (its best trial by default) and the predictions behind it.

    ``prior`` says what the study's evidence says of the checklist's tiers
    (:func:`hpsearch.analysis.misfit.study_prior_check`); None for a study that does not use them.

    Errors as :func:`hpsearch.analysis.artifacts.predictions_for` raises them.
    """
    from hpsearch.analysis.artifacts import predictions_for

    number, preds = predictions_for(storage, store, study_name, trial_number)
    report = build_report(preds)
    report.study, report.trial = study_name, number
    report.prior = study_prior_check(storage, study_name)
    return report, preds
