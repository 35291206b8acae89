"""Take a trained model home: a kept trial's weights, config, spec and how to load them.

``hpsearch export NAME [--trial N] OUT/`` and ``GET /studies/{name}/trials/{number}/export``
hand over a :class:`ModelExport`: the files

- ``model.safetensors``: the final weights the worker kept (:mod:`hpsearch.analysis.artifacts`);
- ``config.json``: every knob the trainer ran with (the trial's config, defaults filled in);
- ``spec.json``: the study's stored spec (space, task, metric, ...);
- ``load.py``: a short script that rebuilds the model (:func:`hpsearch.train.rebuild_model`),
  loads the weights, and prints the validation metric it recomputes
  (:func:`hpsearch.train.validate`), which is the trial's recorded value;
- ``README.md``: the same, and the ``hpsearch try`` command that trains the run again;
- ``space.yaml``, only when the study's space is not a bundled one as shipped: the space that
  command trains.

Torch-free (the service builds exports): the weights travel as the bytes the worker wrote.
"""

from __future__ import annotations

import io
import json
import shlex
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from hpsearch.analysis.artifacts import WEIGHTS_FILE, ArtifactStore, weights_for
from hpsearch.errors import SpecError, UsageError
from hpsearch.families import FAMILY_METRICS, default_metric
from hpsearch.studies import StudySpec, get_trial, load_spec

if TYPE_CHECKING:
    import optuna

    from hpsearch.studies import TrialRecord

__all__ = ["EXPORT_FILES", "ModelExport", "export_model", "try_command"]

#: The files of every export, in the order they are written (``space.yaml`` may follow).
EXPORT_FILES = (WEIGHTS_FILE, "config.json", "spec.json", "load.py", "README.md")
_SPACE_FILE = "space.yaml"
#: The metrics :func:`hpsearch.train.validate` recomputes (the costs are not validation).
_VALIDATION_METRICS = ("val_accuracy", "val_loss", "val_rmse", "val_mae")


@dataclass(frozen=True, kw_only=True)
class ModelExport:
    """The files of one trial's export, by name, and what they are of."""

    study: str
    trial: int
    files: dict[str, bytes]

    def write(self, out: str | Path) -> list[Path]:
        """Write the files into the folder ``out`` (created when missing); returns their paths.

        Raises :class:`UsageError` when ``out`` is a file or cannot be written.
        """
        folder = Path(out).expanduser()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            paths = []
            for name, data in self.files.items():
                path = folder / name
                path.write_bytes(data)
                paths.append(path)
        except OSError as e:
            raise UsageError(
                f"cannot write the export into {str(folder)!r}: {e.strerror or e}; name a "
                "folder you can write to"
            ) from None
        return paths

    def zip_bytes(self) -> bytes:
        """The files as one zip archive (flat: no folder inside)."""
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, data in self.files.items():
                archive.writestr(name, data)
        return buffer.getvalue()

    @classmethod
    def from_zip(cls, data: bytes, *, study: str, trial: int) -> ModelExport:
        """The export a zip of :meth:`zip_bytes` holds (what ``GET .../export`` answers).

        Raises :class:`UsageError` for an archive that is not such an export.
        """
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                names = archive.namelist()
                unsafe = [n for n in names if "/" in n or "\\" in n or n.startswith(".")]
                if unsafe or not set(EXPORT_FILES) <= set(names):
                    raise UsageError(
                        f"the export of trial {trial} of study {study!r} holds {names}, not "
                        f"the files of an export ({', '.join(EXPORT_FILES)})"
                    )
                files = {name: archive.read(name) for name in names}
        except zipfile.BadZipFile as e:
            raise UsageError(f"the export of trial {trial} of study {study!r}: {e}") from None
        return cls(study=study, trial=trial, files=files)


def export_model(
    storage: optuna.storages.RDBStorage,
    store: ArtifactStore | None,
    study_name: str,
    trial_number: int | None = None,
) -> ModelExport:
    """The export of a trial of a study (its best trial by default) whose weights were kept.

    Raises :class:`~hpsearch.errors.StudyNotFound`, :class:`~hpsearch.errors.TrialNotFound`
    and :class:`~hpsearch.errors.ArtifactNotFound` saying why the trial has no weights (pruned
    or failed, outside the best N kept, run by a user --objective, no artifact store), as
    :func:`hpsearch.analysis.artifacts.weights_for` does; :class:`~hpsearch.errors.SpecError`
    for a trial config this version's trainer does not read.
    """
    number, weights = weights_for(storage, store, study_name, trial_number)
    spec = load_spec(storage, study_name)
    trial = get_trial(storage, study_name, number)
    family = spec.task.family
    from hpsearch.train.core.resolved import resolved_config  # torch-free

    try:
        config = resolved_config(trial.config, family)
    except ValueError as e:  # a config of another hpsearch version's trainer
        raise SpecError(
            f"trial {number} of study {study_name!r} has a config this version's trainer does "
            f"not read, so its model cannot be rebuilt here: {e}"
        ) from None
    metric = spec.metric if spec.metric in _VALIDATION_METRICS else default_metric(family)
    recorded = _recorded(trial, spec, metric)
    space_file = _space_file(spec)
    page = _Page(
        study=study_name,
        trial=number,
        spec=spec,
        config=config,
        metric=metric,
        recorded=recorded,
        command=try_command(trial, spec, space=_SPACE_FILE if space_file else None),
        space_file=space_file is not None,
    )
    files = {
        WEIGHTS_FILE: weights,
        "config.json": _json(config),
        "spec.json": _json(spec.model_dump(mode="json")),
        "load.py": _load_script(page).encode(),
        "README.md": _readme(page).encode(),
    }
    if space_file:
        files[_SPACE_FILE] = space_file
    return ModelExport(study=study_name, trial=number, files=files)


def try_command(trial: TrialRecord, spec: StudySpec, *, space: str | None = None) -> str:
    """The ``hpsearch try`` command that trains ``trial`` of a study of ``spec`` again: its
    space (``space``, a file, in place of the stored space's name), every value of its config
    as ``--set``, the task's dataset, target, epochs and pretrained weights, and its seed.

    On the device the trial trained on (the default picks CUDA when present, as workers do),
    the run gives the same metric, epoch by epoch.
    """
    words = ["hpsearch", "try", space or spec.search_space.name]
    for key, value in trial.config.items():
        words += ["--set", f"{key}={_yaml_scalar(value)}"]
    task = spec.task
    words += ["--dataset", task.dataset, "--epochs", str(task.epochs)]
    if task.target is not None:
        words += ["--target", task.target]
    if task.pretrained_weights is not None:
        words += ["--pretrained-weights", task.pretrained_weights]
    if spec.metric != default_metric(task.family) and spec.metric in _VALIDATION_METRICS:
        words += ["--metric", spec.metric]
    if trial.seed is not None:
        words += ["--seed", str(trial.seed)]
    return " ".join(shlex.quote(w) for w in words)


def _yaml_scalar(value: Any) -> str:
    # `try --set` reads values as YAML scalars: true/false, not Python's True/False.
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return repr(value) if isinstance(value, float) else str(value)


def _recorded(trial: TrialRecord, spec: StudySpec, metric: str) -> float | None:
    if trial.metrics and metric in trial.metrics:
        return trial.metrics[metric]
    return trial.value if metric == spec.metric else None


def _space_file(spec: StudySpec) -> bytes | None:
    """The space as YAML when ``hpsearch try`` cannot name it (an inline or changed space)."""
    from hpsearch.spaces import list_spaces, load_space

    space = spec.search_space
    if space.name in list_spaces() and load_space(space.name) == space:
        return None
    dumped = space.model_dump(mode="json", exclude_none=True)
    return yaml.safe_dump(dumped, sort_keys=False).encode()


def _json(data: Any) -> bytes:
    return (json.dumps(data, indent=2) + "\n").encode()


@dataclass(frozen=True, kw_only=True)
class _Page:
    """What load.py and README.md say about the trial."""

    study: str
    trial: int
    spec: StudySpec
    config: dict[str, Any]
    metric: str
    recorded: float | None
    command: str
    space_file: bool

    @property
    def shown_command(self) -> str:
        """The command one option a line, for a person to read and paste."""
        return self.command.replace(" --", " \\\n    --")

    @property
    def recorded_text(self) -> str:
        return "unknown" if self.recorded is None else repr(self.recorded)

    @property
    def family(self) -> str:
        return self.spec.task.family or "tabular_classification"


def _builder(page: _Page) -> str:
    """What :func:`hpsearch.train.rebuild_model` builds for the family, in words."""
    if page.family == "image_classification":
        name = page.config.get("model.name")
        return f"timm.create_model({name!r}, num_classes=<the dataset's classes>, ...)"
    if page.family == "audio_classification":
        return "the audio CNN of hpsearch.train.audio.model.build_audio_model"
    return "the MLP of hpsearch.train.tabular.model.build_model"


def _load_script(page: _Page) -> str:
    reported = FAMILY_METRICS.get(page.family, (page.metric,))
    also = ", ".join(m for m in reported if m in _VALIDATION_METRICS and m != page.metric)
    return f'''r"""Trial {page.trial} of study {page.study!r}: rebuild it, score it on validation.

Run it here, `python load.py`, where hpsearch is installed and the task's dataset
({page.spec.task.dataset!r}) can be read. It builds the model of config.json ({_builder(page)}),
loads model.safetensors into it, and prints {page.metric} on the validation split, computed by
the trainer's own code: the trial recorded {page.recorded_text}. validate() also gives {also}.

Train the run again (from this folder):

{page.shown_command}
"""

import json
from pathlib import Path

import safetensors.torch

from hpsearch.families import TaskSpec
from hpsearch.train import rebuild_model, validate

HERE = Path(__file__).resolve().parent
DEVICE = None  # None: CUDA when available, as the worker chose; "cpu" to score on the CPU

config = json.loads((HERE / "config.json").read_text())
task = TaskSpec.model_validate(json.loads((HERE / "spec.json").read_text())["task"])
model = rebuild_model(config, task)
model.load_state_dict(safetensors.torch.load_file(HERE / "model.safetensors"))
metrics = validate(model, config, task, device=DEVICE)
print(f"{page.metric} {{metrics[{page.metric!r}]!r}} (recorded {page.recorded_text})")
'''


def _readme(page: _Page) -> str:
    space_note = (
        f"The space is `{_SPACE_FILE}` beside this file (the study's own)."
        if page.space_file
        else f"The space is the bundled `{page.spec.search_space.name}`."
    )
    fraction = page.spec.task.val_fraction
    split_note = (
        ""
        if fraction == 0.25
        else (
            f"\nNote: the study held out {fraction} of the data for validation; `hpsearch try` "
            "holds out 0.25, so its metric differs from the trial's.\n"
        )
    )
    return f"""# Trial {page.trial} of study `{page.study}`

{page.metric} on the validation split: {page.recorded_text}.

| file | what |
| --- | --- |
| `model.safetensors` | the final weights (the EMA weights when `train.ema` is on) |
| `config.json` | every knob the trainer ran with |
| `spec.json` | the study's spec (space, task, metric, budget, ...) |
| `load.py` | rebuilds the model, loads the weights, prints {page.metric} again |

## Load the model

```python
{_SNIPPET}
```

`python load.py` does this and prints {page.metric}, which equals the recorded value on the
device the trial trained on. It needs hpsearch installed and the dataset `{page.spec.task.dataset}`.
The model is {_builder(page)}.

## Train it again

From this folder:

```
{page.shown_command}
```

{space_note}
{split_note}"""


_SNIPPET = """\
import json, safetensors.torch
from hpsearch.families import TaskSpec
from hpsearch.train import rebuild_model, validate

config = json.load(open("config.json"))
task = TaskSpec.model_validate(json.load(open("spec.json"))["task"])
model = rebuild_model(config, task)
model.load_state_dict(safetensors.torch.load_file("model.safetensors"))
print(validate(model, config, task))"""
