"""What every model provider is, and the small pieces the HTTP providers share.

A provider turns a provider-neutral `ModelRequest` into one model call and returns a
`ModelResponse`, streaming text deltas to `on_delta` as they arrive. Failures surface as
`ProviderError` whose `retryable` tells the engine (which owns retries) whether trying
again may help; SDK-level retries are switched off.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from orchestrator.engine.errors import ProviderError
from orchestrator.engine.ports import DeltaCallback  # one definition: the engine's port
from orchestrator.engine.types import ModelRequest, ModelResponse


class Provider(Protocol):
    """A model provider, chosen by `name` from the registry."""

    name: str
    label: str

    async def complete(
        self, request: ModelRequest, on_delta: DeltaCallback | None = None
    ) -> ModelResponse: ...


class EndpointOptions(BaseModel):
    """The part of an agent's `options` that says where an HTTP provider sends its calls.

    `api_key_env` names an environment variable holding the key; only an instance operator may
    set it (and `base_url`): teams reference a model credential instead. Unknown keys are
    ignored: they belong to other providers.
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


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where one model call goes and with which key. `guarded`: the base URL is not the instance's
    own setting, so connections pass the outbound guard (`mcpgateway.outbound`)."""

    api_key: str | None
    base_url: str | None
    guarded: bool


async def resolve_endpoint(provider: str, options: EndpointOptions, raw: Mapping[str, Any], *,
                           key_setting: str, url_setting: str) -> Endpoint:
    """The key and base URL for a call: the agent's credential (see `Agent.provider_options`),
    else the operator-set `api_key_env`/`base_url` options, else the instance's settings."""
    credential_id = raw.get("_credential")
    if credential_id is not None:
        from asgiref.sync import sync_to_async

        key, base_url = await sync_to_async(_credential_endpoint)(provider, credential_id, raw.get("_team"),
                                                                  key_setting)
        return Endpoint(key, base_url or setting(url_setting), guarded=bool(base_url))
    if not options.api_key_env and setting("AGENTDECK_INSTANCE_KEYS") == "offered" and setting(key_setting):
        from asgiref.sync import sync_to_async

        if not await sync_to_async(_instance_key_offered)(provider, raw.get("_team")):
            raise ProviderError(f"this team has no {provider} key: add a model credential, or ask an instance "
                                "operator to offer the instance's key to the team", retryable=False)
    return Endpoint(resolve_api_key(options, setting(key_setting)), options.base_url or setting(url_setting),
                    guarded=bool(options.base_url))


def _instance_key_offered(provider: str, team_id: int | None) -> bool:
    """With `AGENTDECK_INSTANCE_KEYS=offered`: may this team's agents without a credential use the
    instance's key? Only when an operator shared an environment credential of that provider with it."""
    from orchestrator.models import ModelCredential

    if team_id is None:
        return False
    return ModelCredential.usable_by(team_id).filter(provider=provider, source=ModelCredential.Source.ENV,
                                                    team__isnull=True).exists()


def _credential_endpoint(provider: str, credential_id: int, team_id: int | None,
                         key_setting: str) -> tuple[str, str]:
    from mcpgateway.crypto import SecretDecryptError, decrypt
    from orchestrator.models import ModelCredential

    credential = ModelCredential.usable_by(team_id).filter(pk=credential_id).first() if team_id else None
    if credential is None:
        raise ProviderError("the agent's model credential is not available to its team", retryable=False)
    if credential.provider != provider:
        raise ProviderError(f"the model credential {credential.name!r} is for {credential.provider}, "
                            f"not {provider}", retryable=False)
    if credential.source == ModelCredential.Source.ENV:
        key = os.environ.get(credential.env_var, "") if credential.env_var else (setting(key_setting) or "")
    else:
        try:
            key = decrypt(credential.key_encrypted) if credential.key_encrypted else ""
        except SecretDecryptError as exc:
            raise ProviderError(f"the model credential {credential.name!r}: {exc}", retryable=False) from None
    if not key:
        raise ProviderError(f"the model credential {credential.name!r} has no key on this instance",
                            retryable=False)
    return key, credential.base_url


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


def guarded_http_client(guarded: bool) -> Any:
    """An httpx2 client behind the outbound guard for a team-set base URL; None: the SDK's own."""
    if not guarded:
        return None
    from mcpgateway.outbound import guarded_async_client

    return guarded_async_client(timeout=model_timeout_s())


def model_timeout_s() -> float:
    """Seconds a model call may wait on the network, and a streamed answer for its next part
    (`IdleDeadline`), from `settings.MODEL_TIMEOUT_S`."""
    from django.conf import settings

    return float(settings.MODEL_TIMEOUT_S)


def timed_out(what: str) -> ProviderError:
    """The retryable error of a model call that took longer than `MODEL_TIMEOUT_S` allows."""
    return ProviderError(f"{what} call timed out (MODEL_TIMEOUT_S={model_timeout_s():g})", retryable=True)


T = TypeVar("T")


class IdleDeadline(Generic[T]):
    """The items of a streamed answer, each of which must arrive within `MODEL_TIMEOUT_S` of the one
    before (the first, of the response's headers); else `timed_out(what)`.

    The timeout the SDKs get bounds each socket read, not progress: a server or proxy sending SSE
    keep-alives (`: PROCESSING` comments, Anthropic's `ping` events), which the SDKs read and skip,
    never tripped it and held a run streaming for ever. Only an item the SDK yields resets this one.
    """

    def __init__(self, items: AsyncIterable[T], what: str) -> None:
        self._items: AsyncIterator[T] = aiter(items)
        self._what = what
        self._timeout_s = model_timeout_s()

    def __aiter__(self) -> IdleDeadline[T]:
        return self

    async def __anext__(self) -> T:
        deadline = asyncio.timeout(self._timeout_s)
        try:
            async with deadline:
                return await anext(self._items)
        except TimeoutError:
            if not deadline.expired():  # the stream's own TimeoutError, not this deadline's
                raise
            raise timed_out(self._what) from None


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
    """SDK clients cached per (base_url, api_key, guarded), separately for each event loop.

    An SDK client holds a connection pool bound to the loop that opened it, and a worker
    that runs each job under a fresh loop (`async_to_sync`, `asyncio.run`) must not
    reuse it there. The first client made on a loop starts a task that waits for that
    loop to shut down: `asyncio.run` cancels it then, and it closes the loop's clients.
    """

    def __init__(self, factory: Callable[[str | None, str | None, bool], ClientT]):
        self._factory = factory
        self._by_loop: dict[asyncio.AbstractEventLoop, _LoopClients[ClientT]] = {}

    def get(self, base_url: str | None, api_key: str | None, guarded: bool = False) -> ClientT:
        loop = asyncio.get_running_loop()
        entry = self._by_loop.get(loop)
        if entry is None:
            entry = self._by_loop[loop] = _LoopClients()
            entry.closer = loop.create_task(self._close_at_shutdown(loop, entry))
        key = (base_url, api_key, guarded)
        if key not in entry.clients:
            entry.clients[key] = self._factory(base_url, api_key, guarded)
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
        self.clients: dict[tuple[str | None, str | None, bool], ClientT] = {}
        self.closer: asyncio.Task[None] | None = None


def estimate_input_tokens(request: ModelRequest) -> int:
    """About four characters a token over the system prompt and the conversation.

    The model door reserves budget with this before a call; the scripted provider counts
    its input the same way, so budgets stop scripted runs at exactly their boundary.
    """
    chars = len(request.system) + sum(len(m.content) for m in request.messages)
    return math.ceil(chars / 4)


# What a server's chat template may add beyond the serialised request (role markers, a default
# system line, the tool-use preamble): the byte bound adds these so it stays an upper bound.
TEMPLATE_ALLOWANCE_TOKENS = 64
TOOLS_ALLOWANCE_TOKENS = 512


def byte_bound_tokens(payload: Any, *, tools: bool) -> int:
    """An upper bound on the input tokens of any byte-level BPE tokenizer: every token of such
    a tokenizer stands for at least one byte, so the UTF-8 bytes of the serialised request
    (which contains every character the model reads, plus JSON punctuation) plus an allowance
    for what the server's chat template adds cannot be fewer than its tokens."""
    size = len(json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode())
    return size + TEMPLATE_ALLOWANCE_TOKENS + (TOOLS_ALLOWANCE_TOKENS if tools else 0)
