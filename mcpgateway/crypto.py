"""Encryption at rest for secrets (server env values, headers), with Fernet.

The key comes from `AGENTDECK_ENCRYPTION_KEY` (a Fernet key, or `_FILE`), else it is
derived from SECRET_KEY, so an embedded install works with nothing set. Rotating the key
means re-saving the secrets.
"""

from __future__ import annotations

import base64
import hashlib
from functools import cache

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


class SecretDecryptError(Exception):
    """A stored secret cannot be decrypted (the encryption key changed)."""


@cache
def _fernet() -> Fernet:
    key = settings.AGENTDECK_ENCRYPTION_KEY
    if not key:
        digest = hashlib.sha256(f"agentdeck-secrets:{settings.SECRET_KEY}".encode()).digest()
        key = base64.urlsafe_b64encode(digest).decode()
    return Fernet(key.encode())


def encrypt(value: str) -> str:
    return _fernet().encrypt(value.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretDecryptError("a stored secret cannot be decrypted with the current encryption key") from None
