"""A trial's trained model: its kept weights (safetensors), or the whole export as a zip."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from hpsearch.analysis.artifacts import ArtifactStore, open_artifact_store, weights_for
from hpsearch.analysis.export_model import export_model
from hpsearch.safe_names import name_slug
from hpsearch.service.deps import SettingsDep, StorageDep, StudyAccess
from hpsearch.service.schemas import TrialNumber
from hpsearch.service.settings import Settings

router = APIRouter(
    prefix="/studies/{name}/trials/{number}", tags=["models"], dependencies=[StudyAccess]
)

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {
        "description": "No such study or trial, or the trial kept no weights (says why: pruned "
        "or failed, outside the best N kept, a user --objective, no artifact store)."
    }
}


def _store(settings: Settings) -> ArtifactStore | None:
    return open_artifact_store(settings.artifacts, storage_url=settings.storage)


def _attachment(name: str, number: int, suffix: str) -> dict[str, str]:
    # The study's name may hold anything (renamed outside hpsearch): only its slug goes out.
    filename = f"{name_slug(name)}-trial{number}{suffix}"
    return {"Content-Disposition": f'attachment; filename="{filename}"'}


@router.get(
    "/model",
    response_class=Response,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "model.safetensors"},
        **_NOT_FOUND,
    },
)
def get_model(
    name: str, number: TrialNumber, storage: StorageDep, settings: SettingsDep
) -> Response:
    """The trial's final weights as its worker kept them: a safetensors file (a state dict
    for ``model.load_state_dict(safetensors.torch.load(...))``)."""
    _number, data = weights_for(storage, _store(settings), name, number)
    return Response(
        data,
        media_type="application/octet-stream",
        headers=_attachment(name, number, ".safetensors"),
    )


@router.get(
    "/export",
    response_class=Response,
    responses={
        200: {
            "content": {"application/zip": {}},
            "description": "model.safetensors, config.json, spec.json, load.py and README.md",
        },
        **_NOT_FOUND,
    },
)
def get_export(
    name: str, number: TrialNumber, storage: StorageDep, settings: SettingsDep
) -> Response:
    """What ``hpsearch export`` writes, as one zip: the weights, the full config, the study's
    spec, ``load.py`` (rebuilds the model and prints its validation metric) and a README with
    the ``hpsearch try`` command that trains the run again."""
    exported = export_model(storage, _store(settings), name, number)
    return Response(
        exported.zip_bytes(),
        media_type="application/zip",
        headers=_attachment(name, number, "-export.zip"),
    )
