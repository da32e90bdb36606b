"""API keys (services/gateway/domain/keys.py, issue 10 item 6): shown once, stored as a hash, compared in
constant time, refused when revoked or wrong."""
from __future__ import annotations

import hmac
from typing import Any

import pytest

from services.gateway.adapters import keys as repo
from services.gateway.domain import keys


def secret_of(new: keys.NewKey) -> str:
    parsed = keys.parse(new.plaintext)
    assert parsed is not None
    return parsed[1]


def stored(new: keys.NewKey, revoked: bool = False, scopes: tuple[str, ...] = ("submit",)) -> keys.ApiKey:
    return keys.ApiKey(new.key_id, "client", new.secret_sha256, scopes, revoked)


def test_a_new_key_is_its_id_and_a_256_bit_secret_and_only_the_hash_is_kept() -> None:
    new = keys.generate()
    parsed = keys.parse(new.plaintext)
    assert parsed is not None
    key_id, secret = parsed
    assert key_id == new.key_id and len(secret) == 43  # 32 random bytes, base64url
    assert new.secret_sha256 == keys.digest(secret) and len(new.secret_sha256) == 32
    assert secret.encode() not in new.secret_sha256 and new.plaintext.encode() not in new.secret_sha256
    assert keys.generate().plaintext != new.plaintext


def test_the_repository_writes_the_hash_never_the_plaintext_or_the_secret() -> None:
    class Recorder:
        def __init__(self) -> None:
            self.params: list[Any] = []

        def execute(self, sql: str, params: Any) -> None:
            self.params.extend(params)

    new = keys.generate()
    conn = Recorder()
    repo.insert(conn, new, "callcentre", ["submit"])
    secret = secret_of(new)
    written = repr(conn.params)
    assert new.secret_sha256 in conn.params
    assert new.plaintext not in written and secret not in written


def test_verify_accepts_the_right_secret_only() -> None:
    new = keys.generate()
    secret = secret_of(new)
    assert keys.verify(stored(new), secret)
    assert not keys.verify(stored(new), secret[:-1] + ("A" if secret[-1] != "A" else "B"))
    assert not keys.verify(stored(new), "")
    assert not keys.verify(stored(keys.generate()), secret)  # another key's secret


def test_verify_refuses_a_revoked_key_even_with_its_right_secret() -> None:
    new = keys.generate()
    assert not keys.verify(stored(new, revoked=True), secret_of(new))


def test_verify_refuses_an_unknown_key_id() -> None:
    assert not keys.verify(None, secret_of(keys.generate()))


def test_the_comparison_is_constant_time_and_runs_even_for_an_unknown_id(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(keys.hmac, "compare_digest", spy)
    new = keys.generate()
    secret = secret_of(new)
    keys.verify(stored(new), secret)
    keys.verify(None, secret)  # an unknown id costs the same work: no timing oracle for which ids exist
    keys.verify(stored(new, revoked=True), secret)
    assert len(calls) == 3 and all(len(a) == len(b) == 32 for a, b in calls)


@pytest.mark.parametrize("presented", [
    "", "psk_", "not-a-key", "psk_short_secret", "PSK_abcdefghijkl_" + "A" * 43, "psk_abcdefghijkl_" + "A" * 42,
    "psk_abcdefghijkl_" + "A" * 44, "psk_abcdefghijk!_" + "A" * 43, "psk_abcdefghijkl_" + "A" * 42 + "\n",
    "psk_abcdefghijkl_" + "A" * 42 + "\0", " psk_abcdefghijkl_" + "A" * 43, "psk_' OR 1=1 --",
])
def test_malformed_keys_are_not_parsed(presented: str) -> None:
    assert keys.parse(presented) is None


@pytest.mark.parametrize("scopes", [[], ["root"], ["read", "superuser"]])
def test_unknown_or_empty_scopes_are_refused(scopes: list[str]) -> None:
    with pytest.raises(ValueError):
        keys.validate_scopes(scopes)


def test_scopes_are_normalised() -> None:
    assert keys.validate_scopes(["read", "submit", "read"]) == ["read", "submit"]
