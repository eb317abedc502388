"""Model versions: list, inspect, activate (roll forward or back to any ready version)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from service.api.deps import RegistryDep
from service.api.responses import errors
from service.auth import AdminAccess, KeyInfo, ReadAccess, is_admin
from service.db.tables import ModelStatus, ModelVersion
from service.limits import SafeId
from service.registry import Registry
from service.schemas import ModelOut, ModelsOut

router = APIRouter(prefix="/models", tags=["models"], dependencies=[ReadAccess])

Version = Annotated[SafeId, Path(min_length=1, max_length=128)]
Key = Annotated[KeyInfo | None, ReadAccess]  # the router's own check (cached): who is asking


def model_out(row: ModelVersion, registry: Registry, key: KeyInfo | None) -> ModelOut:
    out = ModelOut.model_validate(row)
    live = registry.current
    out.live = live is not None and live.version == row.version
    if not is_admin(key):
        out.bundle_path = None  # a server path: admin keys only
    return out


@router.get("", response_model=ModelsOut)
def list_models(registry: RegistryDep, key: Key) -> ModelsOut:
    rows = registry.versions()
    active = next((r.version for r in rows if r.status == ModelStatus.ACTIVE.value), None)
    live = registry.current
    return ModelsOut(
        active=active,
        live=live.version if live else None,
        models=[model_out(r, registry, key) for r in rows],
    )


@router.get("/{version}", response_model=ModelOut, responses=errors(404))
def get_model(version: Version, registry: RegistryDep, key: Key) -> ModelOut:
    return model_out(registry.get(version), registry, key)


@router.post(
    "/{version}/activate",
    response_model=ModelOut,
    responses=errors(401, 403, 404, 409),
    summary="Load a version and make it the live model of every API process (admin key)",
    dependencies=[AdminAccess],
)
def activate(version: Version, registry: RegistryDep, key: Key) -> ModelOut:
    # a plain def: FastAPI runs it on a worker thread, the event loop keeps serving meanwhile
    return model_out(registry.activate(version), registry, key)
