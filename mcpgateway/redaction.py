"""Redaction of every secret the instance or a team holds, with keyed markers.

Secrets come from a registry of *sources* (`register_secret_source(name, fn)`): each is a
function returning the secret strings it knows (server secrets, webhook secrets, provider
keys, the metrics token, ...). The gateway registers its own here; the orchestrator
registers its sources from its app config (the gateway never imports the orchestrator).

A `Redactor` is built from all sources and cached per process: rebuilt after
`invalidate()` (called when a secret is written in this process) and at most
`TTL_S` seconds old otherwise (writes made by other processes). It matches, in one
Aho-Corasick automaton (`pyahocorasick`: leftmost-longest, linear in the text whatever the
number of secrets), each secret's encoded forms — raw, JSON-escaped
(ASCII or not, once and twice), URL-encoded (`quote`, `quote_plus`), hex, and base64
(standard and URL-safe, padded or not, and the stable core of its encoding at each of the
three byte alignments, so the secret is caught inside a longer base64 blob) — plus shapes
that are secrets wherever they appear (Agentdeck API tokens `adk_…` — stored hashed, so
known only by shape: raw and as their own base64, not at other alignments — and webhook
secrets `whsec_…`). Values shorter than `MIN_LENGTH` are not redacted: replacing every
occurrence of a 3-letter value would shred ordinary text and the marker would reveal it
anyway. A base64 core shorter than `MIN_CORE` is skipped for the same reason, so a secret
under about 8 bytes is caught in base64 only as its own whole encoding.

A secret is replaced by `[REDACTED:<16 hex>]`: HMAC-SHA256 of the value under a key
derived (HKDF, its own `info` label) from the instance's SECRET_KEY, so a marker
identifies the same value across records without letting anyone confirm a guess
(unlike an unkeyed hash). No new key is stored.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus

import ahocorasick

MIN_LENGTH = 6
MIN_CORE = 8
TTL_S = 10.0
# API tokens are stored hashed, so they are known by shape: raw (URL-encoding leaves them
# as they are) and as their own base64 (`YWRrX` is "adk_" encoded from a group boundary).
SHAPE = re.compile(r"adk_[A-Za-z0-9_\-]{20,}|whsec_[A-Za-z0-9_\-]{20,}|YWRrX[A-Za-z0-9+/_\-]{24,}={0,2}")
ENV_KEYS = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY")
SETTING_KEYS = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "METRICS_TOKEN", "AGENTDECK_ENCRYPTION_KEY", "SECRET_KEY")

SecretSource = Callable[[], Iterable[Any]]


@dataclass(slots=True)
class _Source:
    fn: SecretSource
    needs_db: bool
    by_team: bool


_sources: dict[str, _Source] = {}
_lock = threading.Lock()
_cache: _Cached | None = None
_generation = 0


def register_secret_source(name: str, fn: SecretSource, *, needs_db: bool = True, by_team: bool = False) -> None:
    """Add (or replace) a named source of secret values. `needs_db=False` marks a source
    that can run anywhere (inside an event loop, while logging). A `by_team` source yields
    `(team_id, value)` pairs, `None` for a value of the instance's: a team's secret redacts that
    team's data (and logs), never another team's."""
    _sources[name] = _Source(fn, needs_db, by_team)
    invalidate()


def invalidate() -> None:
    """Rebuild the redactor on next use (call after a secret is written and committed)."""
    global _generation
    with _lock:
        _generation += 1


# -- the marker ---------------------------------------------------------------------------


_marker_key: tuple[str, bytes] | None = None


def marker_key() -> bytes:
    """The instance's marker key: HKDF-SHA256 of SECRET_KEY with a label of its own."""
    global _marker_key
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    from django.conf import settings

    material = str(settings.SECRET_KEY)
    if _marker_key is None or _marker_key[0] != material:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"agentdeck", info=b"agentdeck/redaction-marker/v1").derive(
            material.encode())
        _marker_key = (material, key)
    return _marker_key[1]


def marker(value: str) -> str:
    """What replaces `value`: a keyed digest, the same for the same value on this instance."""
    return f"[REDACTED:{hmac.new(marker_key(), value.encode(), hashlib.sha256).hexdigest()[:16]}]"


# -- encoded forms ------------------------------------------------------------------------


def _b64_variants(raw: bytes, *, pad: bool) -> set[str]:
    std = base64.b64encode(raw).decode()
    if not pad:
        std = std.rstrip("=")
    return {std, std.replace("+", "-").replace("/", "_")}


def encoded_forms(value: str) -> set[str]:
    """The forms `value` takes on the way through JSON, URLs and base64 (see the module doc)."""
    forms = {value}
    for ascii_only in (True, False):
        once = json.dumps(value, ensure_ascii=ascii_only)[1:-1]
        forms.add(once)
        forms.add(json.dumps(once, ensure_ascii=ascii_only)[1:-1])
    forms.update({quote(value, safe=""), quote(value), quote_plus(value)})
    raw = value.encode()
    forms.update({raw.hex(), raw.hex().upper()})
    forms |= _b64_variants(raw, pad=True) | _b64_variants(raw, pad=False)
    # Inside a longer blob the secret starts at byte offset 0, 1 or 2 of a 3-byte group:
    # the groups made only of its own bytes encode the same way whatever surrounds them.
    for skip in range(3):
        body = raw[skip:]
        body = body[: len(body) // 3 * 3]
        if len(body) * 4 // 3 >= MIN_CORE:
            forms |= _b64_variants(body, pad=False)
    return {f for f in forms if len(f) >= MIN_LENGTH}


# -- the redactor -------------------------------------------------------------------------


def _usable(secrets: Iterable[str]) -> frozenset[str]:
    return frozenset(s for s in secrets if isinstance(s, str) and len(s) >= MIN_LENGTH)


class Redactor:
    """Replaces every known secret (in any encoded form) and every secret-shaped token."""

    def __init__(self, secrets: Iterable[str]):
        self.secrets = _usable(secrets)
        self.key = marker_key()
        self._markers: dict[str, str] = {}
        for secret in sorted(self.secrets):
            tag = marker(secret)
            for form in encoded_forms(secret):
                self._markers.setdefault(form, tag)
        self._automaton = ahocorasick.Automaton()
        for form, tag in self._markers.items():
            self._automaton.add_word(form, (len(form), tag))
        if self._markers:
            self._automaton.make_automaton()

    def __contains__(self, secret: str) -> bool:
        return secret in self.secrets

    def covering(self, extra: Iterable[str]) -> Redactor:
        """This redactor, or one that also knows `extra` if any of it is new."""
        missing = {s for s in extra if len(s) >= MIN_LENGTH} - self.secrets
        return self if not missing else Redactor(self.secrets | missing)

    def _may_match(self, text: str) -> bool:
        """Whether `spans` could find anything: both scans in C, no Python per match (most
        strings a gateway call carries hold no secret, and are returned as they are)."""
        if self._markers and next(self._automaton.iter(text), None) is not None:
            return True
        return SHAPE.search(text) is not None

    def spans(self, text: str) -> list[tuple[int, int, str]]:
        """(start, end, marker) of every match: known forms (leftmost, longest, no overlaps),
        then secret shapes in the text between them."""
        found = []
        if self._markers:
            for last, (length, tag) in self._automaton.iter_long(text):
                found.append((last - length + 1, last + 1, tag))
        gaps, at = [], 0
        for start, end, _ in found:
            gaps.append((at, start))
            at = end
        gaps.append((at, len(text)))
        for start, end in gaps:
            for match in SHAPE.finditer(text, start, end):
                found.append((match.start(), match.end(), marker(match.group(0))))
        return sorted(found)

    def text(self, text: str) -> str:
        if not text or not self._may_match(text):
            return text
        pieces, at = [], 0
        for start, end, tag in self.spans(text):
            pieces += [text[at:start], tag]
            at = end
        return "".join(pieces) + text[at:] if pieces else text

    def redact(self, value: Any) -> Any:
        """`value` with secrets replaced in every string, through dicts (keys too), lists and tuples.

        A container is scanned once as a whole first: its strings joined, both scans run on
        that. Every string is a part of the joined text, so where the whole holds no match no
        string does, and the container comes back copied as it is, without a scan per string
        (an audit row or a tool result holds dozens). Only a possible match, which the joining
        may invent but never hide, takes the string-by-string walk."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict | list | tuple):
            strings: list[str] = []
            _strings_of(value, strings)
            if not self._may_match("\n".join(strings)):
                return _copied(value)
            return self._walk(value)
        return value

    def _walk(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(k) if isinstance(k, str) else k: self._walk(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self._walk(v) for v in value)
        return value


def _strings_of(value: Any, into: list[str]) -> None:
    """Every string in `value` (dict keys too), through dicts, lists and tuples, as `redact` walks."""
    if isinstance(value, str):
        into.append(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str):
                into.append(key)
            _strings_of(item, into)
    elif isinstance(value, list | tuple):
        for item in value:
            _strings_of(item, into)


def _copied(value: Any) -> Any:
    """The containers of `value` copied as `redact` rebuilds them, every other value kept."""
    if isinstance(value, dict):
        return {key: _copied(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_copied(item) for item in value)
    return value


class StreamRedactor:
    """Redacts text that arrives in pieces (streamed model deltas): holds back the tail that
    could be the start of a secret until the next piece shows whether it is one."""

    SHAPE_START = re.compile(r"a(?:d(?:k_?)?)?|w(?:h(?:s(?:e(?:c_?)?)?)?)?|(?:adk|whsec)_[A-Za-z0-9_\-]*"
                             r"|Y(?:W(?:R(?:r(?:X[A-Za-z0-9+/_\-]*=*)?)?)?)?")

    def __init__(self, redactor: Redactor):
        self.redactor = redactor
        self._forms = sorted(redactor._markers)
        self._longest = max((len(f) for f in self._forms), default=0)
        self._raw = ""  # held back, not yet redacted (memory only)

    def _cut(self, text: str) -> int:
        """Where the tail that might still grow into a secret (a form or a shape) begins."""
        cut = len(text)
        for i in range(max(0, len(text) - max(self._longest, 128)), len(text)):
            tail = text[i:]
            if self.SHAPE_START.fullmatch(tail) or (len(tail) < self._longest and _has_prefix(self._forms, tail)):
                cut = i
                break
        for start, end, _ in self.redactor.spans(text):
            if start < cut < end:
                cut = end
        return cut

    def feed(self, piece: str) -> str:
        text = self._raw + piece
        cut = self._cut(text)
        self._raw = text[cut:]
        return self.redactor.text(text[:cut])

    def flush(self) -> str:
        rest, self._raw = self._raw, ""
        return self.redactor.text(rest)


def _has_prefix(ordered: list[str], prefix: str) -> bool:
    import bisect

    i = bisect.bisect_left(ordered, prefix)
    return i < len(ordered) and ordered[i].startswith(prefix)


# -- the cached redactor ------------------------------------------------------------------


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@dataclass(slots=True)
class _Found:
    """Secret values by owner: the instance's, and each team's."""

    instance: set[str]
    teams: dict[int, set[str]]

    def values(self, team_id: int | None) -> set[str]:
        """What redacts a team's data: the instance's secrets and that team's. For `None` (logs,
        the operator's views, code that serves no one team): every team's too."""
        if team_id is None:
            return self.instance.union(*self.teams.values())
        return self.instance | self.teams.get(team_id, set())


@dataclass(slots=True)
class _Cached:
    expires: float
    generation: int
    found: _Found
    redactors: dict[int | None, Redactor]  # built on first use, by team (None: every secret)


def _collect(include_db: bool) -> _Found:
    found = _Found(set(), {})
    for source in list(_sources.values()):
        if source.needs_db and not include_db:
            continue
        try:
            for item in source.fn():
                if not source.by_team:
                    if isinstance(item, str):
                        found.instance.add(item)
                    continue
                team_id, value = item
                if isinstance(value, str):
                    (found.instance if team_id is None else found.teams.setdefault(int(team_id), set())).add(value)
        except Exception:
            continue
    return found


def _for(cached: _Cached, team_id: int | None) -> Redactor:
    redactor = cached.redactors.get(team_id)
    if redactor is None:
        redactor = cached.redactors[team_id] = Redactor(cached.found.values(team_id))
    return redactor


def get_redactor(team_id: int | None = None) -> Redactor:
    """The redactor for a team's data (the instance's secrets and the team's own), or with
    `None` every secret of the instance and of every team (logs, the operator's views). A
    team's secrets are values its members chose: redacting them in other teams' data let one
    team rewrite another's run outputs and tool results, and learn whether a guessed value was
    anyone's secret (found by a review). Call from synchronous code (it may read the database);
    inside an event loop it returns the last one built (see `current_redactor`)."""
    global _cache
    hit = _cache
    if hit is not None and hit.expires > time.monotonic() and hit.generation == _generation:
        return _for(hit, team_id)
    if _in_event_loop():
        return current_redactor(team_id)
    generation = _generation
    cached = _Cached(time.monotonic() + TTL_S, generation, _collect(include_db=True), {})
    if hit is not None:
        key = marker_key()
        for owner, previous in list(hit.redactors.items()):
            if previous.secrets == _usable(cached.found.values(owner)) and previous.key == key:
                cached.redactors[owner] = previous  # nothing changed: no rebuild (about 1 ms per secret)
    with _lock:
        _cache = cached
    return _for(cached, team_id)


async def aget_redactor(team_id: int | None = None) -> Redactor:
    """`get_redactor` for async code: reads the database off the event loop when it must."""
    hit = _cache
    if hit is not None and hit.expires > time.monotonic() and hit.generation == _generation:
        return _for(hit, team_id)
    from asgiref.sync import sync_to_async

    from config.db_writer import releasing

    return await sync_to_async(releasing(get_redactor), thread_sensitive=False)(team_id)


def current_redactor(team_id: int | None = None) -> Redactor:
    """Never reads the database (for logging and event-loop code): the last secrets read in
    this process, however old, or those of the sources that need no database."""
    global _cache
    hit = _cache
    if hit is not None:
        return _for(hit, team_id)
    cached = _Cached(0.0, -1, _collect(include_db=False), {})  # expired: the next synchronous caller rebuilds it
    with _lock:
        if _cache is None:
            _cache = cached
    return _for(cached, team_id)


def warm_redactor() -> None:
    """Build the redactor now (process start-up, synchronous), so logs written later on an
    event loop know the database's secrets; a database not ready yet is no error here.

    The connection it used is handed back to the pool: the calling thread (the web server's
    main thread) makes no other query, and kept one of the process's `DB_POOL_MAX` connections
    for its whole life (with a pool of one, no request was ever served)."""
    from config.db_writer import release_connection

    try:
        get_redactor()
    except Exception:
        return
    finally:
        release_connection()


def redact(value: Any, team_id: int | None = None) -> Any:
    """`value` with the secrets that concern it redacted (synchronous code; see `get_redactor`)."""
    return get_redactor(team_id).redact(value)


def redact_text_now(text: str) -> str:
    """For log formatters: redact with the current redactor, never touching the database."""
    return current_redactor().text(text)


# -- the gateway's own sources ------------------------------------------------------------


def _settings_secrets() -> list[str]:
    from django.conf import settings

    found = [getattr(settings, name, "") for name in SETTING_KEYS]
    found += [os.environ.get(name, "") for name in ENV_KEYS]
    return [v for v in found if isinstance(v, str) and v]


def _team_path(model: Any) -> str | None:
    """How a row names its team: its own `team_id`, or its parent's (one foreign key away: a
    server's secret, a pipeline's webhook); None for a row of the instance's (signing keys)."""
    fields = model._meta.concrete_fields
    if any(f.attname == "team_id" for f in fields):
        return "team_id"
    for f in fields:
        if f.many_to_one and f.related_model is not None and any(
                g.attname == "team_id" for g in f.related_model._meta.concrete_fields):
            return f"{f.name}__team_id"
    return None


def _encrypted_columns() -> list[tuple[int | None, str]]:
    """Every value stored encrypted by any app (`*_encrypted` text columns: server secrets,
    webhook secrets, model credentials, team secrets, signing keys), decrypted, with the team
    whose row it is. Found through the app registry, so a model added later is covered without
    registering it here."""
    from django.apps import apps
    from django.db import models

    from mcpgateway.crypto import SecretDecryptError, decrypt

    values: list[tuple[int | None, str]] = []
    for model in apps.get_models():
        columns = [f.attname for f in model._meta.concrete_fields
                   if f.name.endswith("_encrypted") and isinstance(f, models.TextField | models.CharField)]
        if not columns:
            continue
        team = _team_path(model)
        rows = model._default_manager.values_list(*columns)
        owned = model._default_manager.values_list(team, *columns) if team else ((None, *row) for row in rows)
        for team_id, *row in owned:
            for token in row:
                if not token:
                    continue
                try:
                    plain = decrypt(token)
                except SecretDecryptError:
                    continue
                values.append((team_id, plain))
                values.extend((team_id, v) for v in _json_strings(plain))
    return values


def _json_strings(text: str) -> list[str]:
    """The string values inside `text` when it is a JSON object or list (a secret bundle)."""
    if not text.startswith(("{", "[")):
        return []
    try:
        found = json.loads(text)
    except ValueError:
        return []
    out: list[str] = []
    stack = [found]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return out


def _resolved_secrets() -> list[tuple[int | None, str]]:
    """What the running upstreams were configured with (server secrets and allowed env
    values), with the team whose server it is."""
    from mcpgateway.runtime import get_runtime

    return get_runtime().all_redactions()


def _allowed_env_values() -> list[str]:
    """The process environment values servers and templates may read (`env_allow`): known to every
    process from the database, not only to one whose gateway runtime resolved them."""
    import os

    from mcpgateway.models import ServerTemplate, ToolServer

    names: set[str] = set()
    for model in (ToolServer, ServerTemplate):
        for allow in model.objects.values_list("env_allow", flat=True):
            names.update(allow or [])
    return [os.environ[name] for name in sorted(names) if os.environ.get(name)]


def _template_literals() -> list[str]:
    """The literal env values operators wrote into catalogue templates (licence keys, tokens):
    the instance's secrets. Each installing team keeps a copy as its server's secret, but the
    value is the operator's, so it is redacted in every team's data, installed or not."""
    from mcpgateway.models import ServerTemplate

    values = []
    for env in ServerTemplate.objects.values_list("env", flat=True):
        for value in (env or {}).values():
            if isinstance(value, str) and "{{" not in value and "${" not in value:
                values.append(value)
    return values


def register_gateway_sources() -> None:
    register_secret_source("settings", _settings_secrets, needs_db=False)
    register_secret_source("gateway.resolved", _resolved_secrets, needs_db=False, by_team=True)
    register_secret_source("encrypted_columns", _encrypted_columns, by_team=True)
    register_secret_source("gateway.env_allow", _allowed_env_values)
    register_secret_source("gateway.template_literals", _template_literals)
