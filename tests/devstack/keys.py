"""Test keys: an HS256 JWT secret, Supabase-style legacy JWT keys and new-style opaque keys.

Only the standard library is used (hmac/hashlib/base64) so the keys can be minted anywhere.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

TEST_JWT_SECRET = "devstack-only-hs256-secret-do-not-use-in-production-0001"
SECRET_KEY_PREFIX = "sb_secret_"
PUBLISHABLE_KEY_PREFIX = "sb_publishable_"
TEN_YEARS_SECONDS = 10 * 365 * 24 * 3600
# PostgREST tolerates this much clock skew on exp/nbf/iat.
CLOCK_SKEW_SECONDS = 30


class JwtError(Exception):
    """A token PostgREST would refuse: ``code`` is PGRST301 (malformed/bad signature) or PGRST303."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _b64url_encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    return base64.urlsafe_b64decode(padded.encode("ascii"))


def _sign(signing_input: str, secret: str) -> str:
    digest = hmac.new(secret.encode("utf-8"), signing_input.encode("ascii"), hashlib.sha256).digest()
    return _b64url_encode(digest)


def mint_jwt(claims: Mapping[str, Any], secret: str = TEST_JWT_SECRET) -> str:
    """Encode ``claims`` as a compact HS256 JWT signed with ``secret``."""
    header = _b64url_encode(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64url_encode(json.dumps(dict(claims), separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}"
    return f"{signing_input}.{_sign(signing_input, secret)}"


def role_jwt(
    role: str,
    secret: str = TEST_JWT_SECRET,
    *,
    ttl_seconds: int = TEN_YEARS_SECONDS,
    issued_at: int | None = None,
    extra_claims: Mapping[str, Any] | None = None,
) -> str:
    """A legacy Supabase API key: ``{"iss": "supabase", "ref", "role", "iat", "exp"}``."""
    iat = int(time.time()) if issued_at is None else issued_at
    claims: dict[str, Any] = {"iss": "supabase", "ref": "devstack", "role": role, "iat": iat}
    claims["exp"] = iat + ttl_seconds
    claims.update(extra_claims or {})
    return mint_jwt(claims, secret)


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2


def _decode_segment(segment: str) -> dict[str, Any]:
    try:
        decoded = json.loads(_b64url_decode(segment))
    except (ValueError, UnicodeDecodeError) as exc:
        raise JwtError("PGRST301", "Invalid JWT serialization") from exc
    if not isinstance(decoded, dict):
        raise JwtError("PGRST301", "Invalid JWT serialization")
    return decoded


def _check_times(claims: Mapping[str, Any], now: float) -> None:
    exp, nbf, iat = claims.get("exp"), claims.get("nbf"), claims.get("iat")
    if isinstance(exp, int | float) and now - CLOCK_SKEW_SECONDS > exp:
        raise JwtError("PGRST303", "JWT expired")
    if isinstance(nbf, int | float) and now + CLOCK_SKEW_SECONDS < nbf:
        raise JwtError("PGRST303", "JWT not yet valid")
    if isinstance(iat, int | float) and now + CLOCK_SKEW_SECONDS < iat:
        raise JwtError("PGRST303", "JWT issued at future")


def decode_jwt(
    token: str, secret: str = TEST_JWT_SECRET, *, now: float | None = None, verify_times: bool = True
) -> dict[str, Any]:
    """Verify an HS256 token the way PostgREST does and return its claims, or raise JwtError."""
    parts = token.split(".")
    if len(parts) != 3:
        raise JwtError("PGRST301", f"Expected 3 parts in JWT; got {len(parts)}")
    header = _decode_segment(parts[0])
    if header.get("alg") != "HS256":
        raise JwtError("PGRST301", "Wrong or unsupported encoding algorithm")
    expected = _sign(f"{parts[0]}.{parts[1]}", secret)
    if not hmac.compare_digest(expected, parts[2]):
        raise JwtError("PGRST301", "JWSError JWSInvalidSignature")
    claims = _decode_segment(parts[1])
    if verify_times:
        _check_times(claims, time.time() if now is None else now)
    return claims


def new_secret_key() -> str:
    return SECRET_KEY_PREFIX + secrets.token_urlsafe(24)


def new_publishable_key() -> str:
    return PUBLISHABLE_KEY_PREFIX + secrets.token_urlsafe(24)


@dataclass(frozen=True)
class ApiKeys:
    """The four keys of one test project, all derived from ``jwt_secret``."""

    jwt_secret: str = TEST_JWT_SECRET
    anon: str = ""
    service_role: str = ""
    secret: str = field(default_factory=new_secret_key)
    publishable: str = field(default_factory=new_publishable_key)

    @classmethod
    def generate(cls, jwt_secret: str = TEST_JWT_SECRET) -> ApiKeys:
        return cls(
            jwt_secret=jwt_secret,
            anon=role_jwt("anon", jwt_secret),
            service_role=role_jwt("service_role", jwt_secret),
        )

    def opaque_roles(self) -> dict[str, str]:
        """What the Supabase gateway maps each opaque key to."""
        return {self.secret: "service_role", self.publishable: "anon"}
