"""Connection settings: where the ``ops`` schema lives and with which key, read from the environment.

Sources, highest precedence first: the process environment, then a ``.env`` file. An empty
variable counts as unset (a missing GitHub secret expands to ``""``), so it falls through to the
``.env`` file. The service key is looked up as ``SUPABASE_SERVICE_ROLE_KEY``, then
``SUPABASE_SECRET_KEY``, then ``SUPABASE_KEY``; the environment wins over the file as a whole
(a key exported in the shell is never shadowed by a differently named key in ``.env``).

With a scoped project token (``ODOOOPS_TOKEN``, ``odooops_pat_…``, see docs/SECURITY.md) the key
is the project's public one: ``SUPABASE_PUBLISHABLE_KEY`` or ``SUPABASE_ANON_KEY`` (a service key is
accepted too). Requests then run as ``anon`` and the token, sent in the ``X-OdooOps-Token`` header,
decides what they may do.

``SUPABASE_URL`` must be the project's base URL (``https://<project>.supabase.co``). A trailing
``/rest/v1`` is accepted and removed, because the dashboard shows the REST endpoint in that form
and pasting it is the most common mistake; any other path is rejected.

Neither the key, the token nor the password of ``DATABASE_URL`` ever appears in a message or a ``repr``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from odooops_action.errors import ConfigError
from odooops_action.validation import validate_database_url

DEFAULT_TIMEOUT_SECONDS = 10.0
DEFAULT_MAX_RETRIES = 3

KEY_VARIABLES: tuple[str, ...] = ("SUPABASE_SERVICE_ROLE_KEY", "SUPABASE_SECRET_KEY", "SUPABASE_KEY")
# The project's public keys, used together with a token.
PUBLIC_KEY_VARIABLES: tuple[str, ...] = ("SUPABASE_PUBLISHABLE_KEY", "SUPABASE_ANON_KEY")
# Names, not secrets.
TOKEN_VARIABLE = "ODOOOPS_TOKEN"  # noqa: S105
TOKEN_PREFIX = "odooops_pat_"  # noqa: S105
TOKEN_HEADER = "X-OdooOps-Token"  # noqa: S105
_TOKEN_BODY = re.compile(r"^[A-Za-z0-9_-]{20,200}$")
_REST_SUFFIXES = ("/rest/v1", "/rest/v1/")
_WHERE_TO_FIND_KEY = "Dashboard → Project Settings → API"
_URL_EXAMPLE = "https://<project>.supabase.co"

_BASE64URL = re.compile(r"^[A-Za-z0-9_-]+={0,2}$")
_HEADER_SAFE = re.compile(r"^[\x21-\x7e]+$")


@dataclass(frozen=True, repr=False)
class ConnectionSettings:
    """How to reach the ``ops`` schema: Supabase REST (URL + key) and/or a direct PostgreSQL DSN."""

    supabase_url: str | None = None
    supabase_key: str | None = None
    database_url: str | None = None
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    max_retries: int = DEFAULT_MAX_RETRIES
    # Which variable the key came from, so that messages name the one the user must fix.
    key_variable: str = field(default=KEY_VARIABLES[0], compare=False)
    # A scoped project token (odooops_pat_…), sent in the X-OdooOps-Token header.
    token: str | None = None
    token_variable: str = field(default=TOKEN_VARIABLE, compare=False)

    def __post_init__(self) -> None:
        url = _blank_to_none(self.supabase_url)
        key = _blank_to_none(self.supabase_key)
        token = _blank_to_none(self.token)
        object.__setattr__(self, "supabase_url", None if url is None else normalize_supabase_url(url))
        if token is not None:
            check_token(token, self.token_variable)
            if key is not None:
                check_key_text(key, self.key_variable)
        elif key is not None:
            check_service_key(key, self.key_variable)
        object.__setattr__(self, "supabase_key", key)
        object.__setattr__(self, "token", token)
        object.__setattr__(self, "database_url", _blank_to_none(self.database_url))
        if not self.timeout_seconds > 0:
            raise ConfigError(f"The request timeout must be positive (got {self.timeout_seconds}).")
        if self.max_retries < 0:
            raise ConfigError(f"The number of retries cannot be negative (got {self.max_retries}).")

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str],
        dotenv_path: Path | None = Path(".env"),
        *,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        max_retries: int = DEFAULT_MAX_RETRIES,
    ) -> ConnectionSettings:
        """Read and validate the settings; raises :class:`ConfigError` saying which variable to set."""
        sources = [_non_empty(environ)]
        if dotenv_path is not None:
            sources.append(_non_empty(read_dotenv(dotenv_path)))
        url = _first_value(sources, ("SUPABASE_URL",))
        token = _first_value(sources, (TOKEN_VARIABLE,))
        key_names = PUBLIC_KEY_VARIABLES + KEY_VARIABLES if token else KEY_VARIABLES
        key_variable, key = _first_named_value(sources, key_names)
        database_url = _first_value(sources, ("DATABASE_URL",))
        if url is None and database_url is None:
            raise ConfigError(
                f"SUPABASE_URL is not set: export SUPABASE_URL={_URL_EXAMPLE} "
                "(or set DATABASE_URL for a direct PostgreSQL connection)."
            )
        if url is not None and key is None and database_url is None:
            raise ConfigError(_missing_key_message(with_token=token is not None))
        return cls(
            supabase_url=url,
            supabase_key=key,
            database_url=database_url,
            timeout_seconds=timeout_seconds,
            max_retries=max_retries,
            key_variable=key_variable or key_names[0],
            token=token,
        )

    @property
    def has_rest(self) -> bool:
        return self.supabase_url is not None and self.supabase_key is not None

    def require_rest(self) -> tuple[str, str]:
        """The base URL and key for the REST API, or a :class:`ConfigError` naming what is missing."""
        if self.supabase_url is None:
            raise ConfigError(
                f"SUPABASE_URL is not set: export SUPABASE_URL={_URL_EXAMPLE} to use the Supabase REST API."
            )
        if self.supabase_key is None:
            raise ConfigError(_missing_key_message(with_token=self.token is not None))
        return self.supabase_url, self.supabase_key

    def require_database_url(self) -> str:
        if self.database_url is None:
            raise ConfigError(
                "DATABASE_URL is not set: export "
                "DATABASE_URL=postgresql://<user>:<password>@<host>:5432/postgres for a direct connection "
                f"(or use the REST API with SUPABASE_URL and {KEY_VARIABLES[0]})."
            )
        return validate_database_url(self.database_url, "DATABASE_URL")

    def __repr__(self) -> str:
        key = "None" if self.supabase_key is None else "'<redacted>'"
        token = "None" if self.token is None else "'<redacted>'"
        dsn = "None" if self.database_url is None else repr(redact_dsn(self.database_url))
        return (
            f"ConnectionSettings(supabase_url={self.supabase_url!r}, supabase_key={key}, token={token}, "
            f"database_url={dsn}, timeout_seconds={self.timeout_seconds!r}, max_retries={self.max_retries!r})"
        )

    __str__ = __repr__


def normalize_supabase_url(raw: str) -> str:
    """``scheme://host[:port]`` of the project; rejects anything that is not a plain base URL."""
    try:
        parts = urlsplit(raw.strip())
        _ = parts.port  # raises ValueError for a malformed port
    except ValueError as exc:
        raise ConfigError(f"SUPABASE_URL is not a valid URL ({exc}): use {_URL_EXAMPLE}.") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"SUPABASE_URL must start with https:// (or http:// for a local stack) and name a host: "
            f"use {_URL_EXAMPLE}."
        )
    if parts.username is not None or parts.password is not None:
        raise ConfigError(
            f"SUPABASE_URL must not contain credentials: use {_URL_EXAMPLE} and put the key in "
            f"{KEY_VARIABLES[0]}."
        )
    if parts.query or parts.fragment:
        raise ConfigError(f"SUPABASE_URL must not have a query string or fragment: use {_URL_EXAMPLE}.")
    path = parts.path
    if path in _REST_SUFFIXES:
        path = ""
    if path not in ("", "/"):
        raise ConfigError(
            f"SUPABASE_URL must be the project's base URL without a path (got path {path!r}): "
            f"use {_URL_EXAMPLE}."
        )
    return urlunsplit((parts.scheme, parts.netloc, "", "", ""))


def check_token(token: str, variable: str = TOKEN_VARIABLE) -> None:
    """Reject text that cannot be a scoped project token, without ever echoing it."""
    body = token[len(TOKEN_PREFIX) :] if token.startswith(TOKEN_PREFIX) else None
    if body is None or not _TOKEN_BODY.match(body):
        raise ConfigError(
            f"{variable} is not an OdooOps token: a token starts with {TOKEN_PREFIX} followed by letters, "
            "digits, - and _. Copy the whole token printed by `odooops token create`."
        )


def check_key_text(key: str, variable: str) -> None:
    """A key must be sendable as a header value."""
    if not _HEADER_SAFE.match(key):
        raise ConfigError(
            f"{variable} contains spaces or non-ASCII characters: copy the key again from "
            f"{_WHERE_TO_FIND_KEY}."
        )


def check_service_key(key: str, variable: str = KEY_VARIABLES[0]) -> None:
    """Reject keys that cannot work for the queue: malformed, publishable or ``anon`` keys."""
    if not _HEADER_SAFE.match(key):
        raise ConfigError(
            f"{variable} contains spaces or non-ASCII characters: copy the service_role key again "
            f"from {_WHERE_TO_FIND_KEY}."
        )
    if key.startswith("sb_publishable_"):
        raise ConfigError(
            f"{variable} holds a publishable key (sb_publishable_…), which cannot manage runs alone: set "
            f"{TOKEN_VARIABLE} to a scoped project token, or use the secret key (sb_secret_…) or the "
            f"service_role key from {_WHERE_TO_FIND_KEY}."
        )
    if not looks_like_jwt(key):
        return
    claims = jwt_claims(key)
    if claims is None:
        raise ConfigError(
            f"{variable} looks like a JWT but its payload cannot be decoded: copy the service_role key "
            f"again from {_WHERE_TO_FIND_KEY}."
        )
    if claims.get("role") == "anon":
        raise ConfigError(
            f"{variable} holds the project's anon (public) key, which cannot manage runs alone: set "
            f"{TOKEN_VARIABLE} to a scoped project token, or use the service_role key from "
            f"{_WHERE_TO_FIND_KEY}."
        )


def looks_like_jwt(key: str) -> bool:
    """Three base64url segments: a legacy ``anon``/``service_role`` key (starts with ``eyJ``)."""
    segments = key.split(".")
    return len(segments) == 3 and all(_BASE64URL.match(segment) for segment in segments)


def jwt_claims(token: str) -> dict[str, Any] | None:
    """The JWT's payload, decoded WITHOUT verifying the signature (only to spot a wrong key early)."""
    segments = token.split(".")
    if len(segments) != 3:
        return None
    payload = segments[1]
    try:
        decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        claims = json.loads(decoded)
    except (binascii.Error, ValueError):
        return None
    return claims if isinstance(claims, dict) else None


def redact_dsn(dsn: str) -> str:
    """The DSN with its password replaced, for messages and ``repr``."""
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return "<unparsable DSN>"
    if parts.password is None:
        return dsn if "password" not in dsn.lower() else "<DSN with a password>"
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit((parts.scheme, f"{user}:***@{netloc}", parts.path, parts.query, parts.fragment))


def read_dotenv(path: Path) -> dict[str, str]:
    """Variables of a ``.env`` file; an absent file yields nothing."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Cannot read {path} ({exc.__class__.__name__}): fix or remove the file.") from None
    return parse_dotenv(text)


_ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}


def parse_dotenv(text: str) -> dict[str, str]:
    """Parse ``KEY=value`` lines (``export`` prefix, quotes, ``#`` comments); other lines are skipped.

    Skipping rather than failing matters: the ``.env`` in a workspace may belong to the project
    being built and use syntax this tiny parser does not know (multi-line values, interpolation).
    """
    values: dict[str, str] = {}
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        match = _ASSIGNMENT.match(line)
        if match:
            values[match.group(1)] = _dotenv_value(match.group(2).strip())
    return values


def _dotenv_value(raw: str) -> str:
    if raw.startswith("'"):
        end = raw.find("'", 1)
        return raw[1:end] if end > 0 else raw[1:]
    if raw.startswith('"'):
        return _double_quoted(raw[1:])
    # Unquoted: a '#' starts a comment only after whitespace (so 'abc#def' stays whole).
    return re.split(r"\s#", raw, maxsplit=1)[0].strip()


def _double_quoted(body: str) -> str:
    chars: list[str] = []
    index = 0
    while index < len(body):
        char = body[index]
        if char == '"':
            break
        if char == "\\" and index + 1 < len(body):
            following = body[index + 1]
            chars.append(_ESCAPES.get(following, "\\" + following))
            index += 2
            continue
        chars.append(char)
        index += 1
    return "".join(chars)


def _missing_key_message(*, with_token: bool = False) -> str:
    if with_token:
        return (
            f"{TOKEN_VARIABLE} is set but no key goes with it: export "
            f"{PUBLIC_KEY_VARIABLES[0]}=<the project's publishable key> "
            f"(or {PUBLIC_KEY_VARIABLES[1]}=<anon key>; from {_WHERE_TO_FIND_KEY})."
        )
    return (
        f"{KEY_VARIABLES[0]} is not set: export {KEY_VARIABLES[0]}=<service_role key> "
        f"(from {_WHERE_TO_FIND_KEY}; {KEY_VARIABLES[1]} or {KEY_VARIABLES[2]} are accepted too)."
    )


def _blank_to_none(value: str | None) -> str | None:
    if value is None:
        return None
    stripped = value.strip()
    return stripped or None


def _non_empty(values: Mapping[str, str]) -> dict[str, str]:
    return {name: value.strip() for name, value in values.items() if value and value.strip()}


def _first_value(sources: list[dict[str, str]], names: tuple[str, ...]) -> str | None:
    return _first_named_value(sources, names)[1]


def _first_named_value(
    sources: list[dict[str, str]], names: tuple[str, ...]
) -> tuple[str | None, str | None]:
    for source in sources:
        for name in names:
            if name in source:
                return name, source[name]
    return None, None
