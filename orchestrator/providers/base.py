"""What every model provider is, and the small pieces the HTTP providers share.

A provider turns a provider-neutral `ModelRequest` into one model call and returns a
`ModelResponse`, streaming text deltas to `on_delta` as they arrive. Failures surface as
`ProviderError` whose `retryable` tells the engine (which owns retries) whether trying
again may help; SDK-level retries are switched off.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from orchestrator.engine.errors import ProviderError
from orchestrator.engine.types import ModelRequest, ModelResponse

DeltaCallback = Callable[[str], Awaitable[None]]


class Provider(Protocol):
    """A model provider, chosen by `name` from the registry."""

    name: str
    label: str

    async def complete(
        self, request: ModelRequest, on_delta: DeltaCallback | None = None
    ) -> ModelResponse: ...


class EndpointOptions(BaseModel):
    """The part of an agent's `options` that says where an HTTP provider sends its calls.

    `api_key_env` names an environment variable holding the key, so keys never live in
    agent configuration. Unknown keys are ignored: they belong to other providers.
    """

    model_config = ConfigDict(extra="ignore")

    base_url: str | None = None
    api_key_env: str | None = None


OptionsT = TypeVar("OptionsT", bound=BaseModel)


def parse_options(model: type[OptionsT], data: Any, *, provider: str) -> OptionsT:
    """Validate provider options; a bad value is a non-retryable error naming the field."""
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as exc:
        raise ProviderError(
            f"invalid {provider} options: {describe_validation_error(exc, root='options')}",
            retryable=False,
        ) from exc


def describe_validation_error(exc: ValidationError, *, root: str) -> str:
    """The first validation problem as `root.field.path: message`, and how many more."""
    problems = exc.errors()
    first = problems[0]
    path = ".".join([root, *(str(part) for part in first["loc"])])
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"{path}: {first['msg']}{more}"


def resolve_api_key(options: EndpointOptions, configured: str | None) -> str | None:
    """The key from the env var named by `api_key_env`, else the configured one, else None."""
    if options.api_key_env:
        value = os.environ.get(options.api_key_env, "")
        if not value:
            raise ProviderError(
                f"environment variable {options.api_key_env} (named by options.api_key_env) "
                "is not set",
                retryable=False,
            )
        return value
    return configured or None


def model_timeout_s() -> float:
    """Seconds a model call may wait on the network, from `settings.MODEL_TIMEOUT_S`."""
    from django.conf import settings

    return float(settings.MODEL_TIMEOUT_S)


def setting(name: str) -> str | None:
    """A string setting, with empty values treated as unset."""
    from django.conf import settings

    return getattr(settings, name, None) or None


def retryable_status(status_code: int, headers: Mapping[str, str] | None = None) -> bool:
    """Whether an HTTP error status is worth retrying.

    Mirrors the SDKs' own policy: the server's `x-should-retry` header wins; otherwise
    request timeouts (408), lock conflicts (409), rate limits (429) and server errors
    (5xx) are retryable, and other 4xx (auth, bad request, not found) are not.
    """
    hint = (headers or {}).get("x-should-retry")
    if hint == "true":
        return True
    if hint == "false":
        return False
    return status_code in (408, 409, 429) or status_code >= 500


class ClosableClient(Protocol):
    async def close(self) -> None: ...


ClientT = TypeVar("ClientT", bound=ClosableClient)


class ClientCache(Generic[ClientT]):
    """SDK clients cached per (base_url, api_key), separately for each event loop.

    An SDK client holds a connection pool bound to the loop that opened it, and a worker
    that runs each job under a fresh loop (`async_to_sync`, `asyncio.run`) must not
    reuse it there. The first client made on a loop starts a task that waits for that
    loop to shut down: `asyncio.run` cancels it then, and it closes the loop's clients.
    """

    def __init__(self, factory: Callable[[str | None, str | None], ClientT]):
        self._factory = factory
        self._by_loop: dict[asyncio.AbstractEventLoop, _LoopClients[ClientT]] = {}

    def get(self, base_url: str | None, api_key: str | None) -> ClientT:
        loop = asyncio.get_running_loop()
        entry = self._by_loop.get(loop)
        if entry is None:
            entry = self._by_loop[loop] = _LoopClients()
            entry.closer = loop.create_task(self._close_at_shutdown(loop, entry))
        key = (base_url, api_key)
        if key not in entry.clients:
            entry.clients[key] = self._factory(base_url, api_key)
        return entry.clients[key]

    async def _close_at_shutdown(
        self, loop: asyncio.AbstractEventLoop, entry: _LoopClients[ClientT]
    ) -> None:
        try:
            await loop.create_future()  # never set: only the loop's shutdown ends this
        finally:
            self._by_loop.pop(loop, None)
            await asyncio.gather(*(client.close() for client in entry.clients.values()))


class _LoopClients(Generic[ClientT]):
    def __init__(self) -> None:
        self.clients: dict[tuple[str | None, str | None], ClientT] = {}
        self.closer: asyncio.Task[None] | None = None


def estimate_input_tokens(request: ModelRequest) -> int:
    """About four characters a token over the system prompt and the conversation.

    The model door reserves budget with this before a call; the scripted provider counts
    its input the same way, so budgets stop scripted runs at exactly their boundary.
    """
    chars = len(request.system) + sum(len(m.content) for m in request.messages)
    return math.ceil(chars / 4)
