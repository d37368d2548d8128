"""``GET /v1/models``: the model, its weights' provenance, where it runs, and the limits."""

from __future__ import annotations

import shutil

import torch
from fastapi import APIRouter, Depends

from ..deps import ServiceDep, require_api_key
from ..schemas import Limits, ModelCard, ModelList

router = APIRouter(prefix="/v1", tags=["models"], dependencies=[Depends(require_api_key)])


def _backend(name: str) -> str:
    """The runtime that computes the embeddings, with its version and threads."""
    if name == "onnx":
        import onnxruntime

        return f"onnxruntime {onnxruntime.__version__} (CPU)"
    return f"torch {torch.__version__} ({torch.get_num_threads()} threads)"


@router.get("/models", response_model=ModelList, summary="Model and weights provenance")
async def list_models(service: ServiceDep) -> ModelList:
    """The one model this server runs."""
    model, s = service.model, service.settings
    limits = Limits.model_validate(s.model_dump(include=set(Limits.model_fields)))
    card = ModelCard(
        weights=dict(model.weights_info),
        parameters=sum(p.numel() for p in model.parameters()),
        postprocessing=model.has_pca,
        device=str(model.device),
        backend=_backend(model.backend),
        decoders=["soundfile", "ffmpeg"] if shutil.which("ffmpeg") else ["soundfile"],
        limits=limits,
    )
    return ModelList(data=[card])
