"""A Python client for the VGGish service (``vggish serve``): the library's results, over HTTP.
:class:`Client` blocks, :class:`AsyncClient` has the same methods as coroutines. Needs
``pip install 'vggish[client]'`` (httpx).
"""

import importlib.util

if importlib.util.find_spec("httpx") is None:  # checked first, for a message that names the fix
    raise ModuleNotFoundError("vggish.client needs httpx: pip install 'vggish[client]'")

from vggish.client.errors import (
    BadRequestError,
    ClientError,
    ClientTimeoutError,
    ConflictError,
    InvalidRequestError,
    LimitExceededError,
    NotFoundError,
    OverloadedError,
    ProblemError,
    ServerTimeoutError,
    TransportError,
    UnauthorizedError,
    UnsupportedMediaTypeError,
)
from vggish.client.inputs import AudioInput, FileSource
from vggish.client.results import Classification, FrameLabels, LabelScore, ModelInfo, RemoteEmbeddingResult
from vggish.client.transport import AsyncClient, Client
from vggish.heads import HeadMetrics
from vggish.heads.store import HeadRecord

__all__ = [
    "AsyncClient",
    "AudioInput",
    "BadRequestError",
    "Classification",
    "Client",
    "ClientError",
    "ClientTimeoutError",
    "ConflictError",
    "FileSource",
    "FrameLabels",
    "HeadMetrics",
    "HeadRecord",
    "InvalidRequestError",
    "LabelScore",
    "LimitExceededError",
    "ModelInfo",
    "NotFoundError",
    "OverloadedError",
    "ProblemError",
    "RemoteEmbeddingResult",
    "ServerTimeoutError",
    "TransportError",
    "UnauthorizedError",
    "UnsupportedMediaTypeError",
]
