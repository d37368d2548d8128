"""A Python client for the VGGish service (``vggish serve``): the library's results, over HTTP.

>>> from vggish.client import Client
>>> with Client("http://127.0.0.1:8000") as client:
...     result = client.embed("dog.wav")              # a vggish.EmbeddingResult
...     head = client.train_head("kinds", {"speech": ["a.wav", "b.wav"], "alert": ["c.wav", "d.wav"]})
...     labels = client.classify("kinds", "new.wav", top_k=1).labels

:class:`AsyncClient` has the same methods as coroutines. Needs ``pip install 'vggish[client]'``
(httpx).
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
