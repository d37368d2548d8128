"""``Client`` and ``AsyncClient``: each public method is the :class:`~vggish.client.core.Api`
operation (a collection's: :mod:`~vggish.client.collections`) of the same name, driven over
``httpx.Client`` (blocking) or ``httpx.AsyncClient``."""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, cast

import httpx

from vggish.client import collections
from vggish.client.core import (
    DEFAULT_MAX_RETRY_WAIT_S,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT_S,
    Api,
    Op,
    Outcome,
    Sleep,
)

P = ParamSpec("P")
T = TypeVar("T")
H = TypeVar("H", httpx.Client, httpx.AsyncClient)


def blocking(op: Callable[Concatenate[Api, P], Op[T]]) -> Callable[Concatenate[Client, P], T]:
    def method(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._run(op(self._api, *args, **kwargs))

    return _named_as(method, op)


def awaited(
    op: Callable[Concatenate[Api, P], Op[T]],
) -> Callable[Concatenate[AsyncClient, P], Coroutine[Any, Any, T]]:
    async def method(self: AsyncClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._run(op(self._api, *args, **kwargs))

    return _named_as(method, op)


def _named_as(method: Callable[..., T], op: Callable[..., object]) -> Callable[..., T]:
    functools.update_wrapper(method, op)
    signature = inspect.signature(op)
    first, *rest = signature.parameters.values()  # Api's self, or a collections operation's api
    parameters = [first.replace(name="self", annotation=inspect.Parameter.empty), *rest]
    method.__signature__ = signature.replace(parameters=parameters, return_annotation=inspect.Signature.empty)  # type: ignore[attr-defined]
    return method


class _Transport(Generic[H]):
    _http_type: type[H]

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
        max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT_S,
    ) -> None:
        self._api = Api(api_key=api_key, retries=retries, max_retry_wait=max_retry_wait)
        self._http: H = self._http_type(base_url=base_url, headers=self._api.headers, timeout=timeout)


class Client(_Transport[httpx.Client]):
    """A VGGish service's API as blocking calls. Error answers raise
    :class:`vggish.client.ProblemError` (by subclass); no answer raises ``TransportError``.

    Args:
        base_url: the service's URL (a path prefix is kept).
        api_key: sent as ``Authorization: Bearer <key>`` (the server's ``VGGISH_API_KEYS``).
        timeout: seconds to wait for each answer (or an ``httpx.Timeout``); None: forever.
        retries: retries of 429 / 503 answers and of connection failures (0: none).
        max_retry_wait: the longest wait before a retry; a ``Retry-After`` above it is raised at once.
    """

    _http_type = httpx.Client

    def _run(self, op: Op[T]) -> T:
        outcome: Outcome = None
        while True:
            try:
                step = op.send(outcome)
            except StopIteration as done:
                return cast(T, done.value)
            if isinstance(step, Sleep):
                time.sleep(step.seconds)
                outcome = None
                continue
            try:
                outcome = self._http.request(step.method, step.path, **step.options)
            except httpx.TransportError as e:
                outcome = e

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    models = blocking(Api.models)
    ready = blocking(Api.ready)
    embed = blocking(Api.embed)
    classify = blocking(Api.classify)
    train_head = blocking(Api.train_head)
    train_head_from_embeddings = blocking(Api.train_head_from_embeddings)
    list_heads = blocking(Api.list_heads)
    get_head = blocking(Api.get_head)
    delete_head = blocking(Api.delete_head)
    export_head = blocking(Api.export_head)
    import_head = blocking(Api.import_head)
    add_items = blocking(collections.add_items)
    add_embeddings = blocking(collections.add_embeddings)
    search = blocking(collections.search)
    search_item = blocking(collections.search_item)
    list_collections = blocking(collections.list_collections)
    get_collection = blocking(collections.get_collection)
    delete_collection = blocking(collections.delete_collection)
    delete_item = blocking(collections.delete_item)


class AsyncClient(_Transport[httpx.AsyncClient]):
    """A VGGish service's API as coroutines; each method and argument is :class:`Client`'s."""

    _http_type = httpx.AsyncClient

    async def _run(self, op: Op[T]) -> T:
        outcome: Outcome = None
        while True:
            try:
                step = op.send(outcome)
            except StopIteration as done:
                return cast(T, done.value)
            if isinstance(step, Sleep):
                await asyncio.sleep(step.seconds)
                outcome = None
                continue
            try:
                outcome = await self._http.request(step.method, step.path, **step.options)
            except httpx.TransportError as e:
                outcome = e

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    models = awaited(Api.models)
    ready = awaited(Api.ready)
    embed = awaited(Api.embed)
    classify = awaited(Api.classify)
    train_head = awaited(Api.train_head)
    train_head_from_embeddings = awaited(Api.train_head_from_embeddings)
    list_heads = awaited(Api.list_heads)
    get_head = awaited(Api.get_head)
    delete_head = awaited(Api.delete_head)
    export_head = awaited(Api.export_head)
    import_head = awaited(Api.import_head)
    add_items = awaited(collections.add_items)
    add_embeddings = awaited(collections.add_embeddings)
    search = awaited(collections.search)
    search_item = awaited(collections.search_item)
    list_collections = awaited(collections.list_collections)
    get_collection = awaited(collections.get_collection)
    delete_collection = awaited(collections.delete_collection)
    delete_item = awaited(collections.delete_item)
