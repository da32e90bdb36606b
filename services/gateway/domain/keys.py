"""API keys: format, hashing and scope rules (pure).

A key reads `psk_<key_id>_<secret>`; the id finds the row, the secret is compared by its SHA-256 in
constant time. Secrets are 256 random bits, so a fast hash is enough (no password stretching needed).
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

SCOPES = ("submit", "read", "staff", "pii", "admin")
_KEY = re.compile(r"^psk_([a-z0-9]{12})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    client: str
    secret_sha256: bytes
    scopes: tuple[str, ...]
    revoked: bool


@dataclass(frozen=True)
class NewKey:
    key_id: str
    plaintext: str
    secret_sha256: bytes


def generate() -> NewKey:
    key_id = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(12))
    secret = secrets.token_urlsafe(32)
    return NewKey(key_id, f"psk_{key_id}_{secret}", digest(secret))


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def parse(presented: str) -> tuple[str, str] | None:
    m = _KEY.match(presented or "")
    return (m.group(1), m.group(2)) if m else None


def verify(key: ApiKey | None, secret: str) -> bool:
    # Compare even when the id is unknown, so timing does not tell which ids exist.
    expected = key.secret_sha256 if key else b"\0" * 32
    return hmac.compare_digest(expected, digest(secret)) and key is not None and not key.revoked


def validate_scopes(scopes: list[str]) -> list[str]:
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise ValueError(f"scopes must be a non-empty subset of {', '.join(SCOPES)}; unknown: {unknown}")
    return sorted(set(scopes))
