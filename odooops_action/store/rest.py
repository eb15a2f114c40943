"""``RunStore`` over Supabase's REST API: every operation is ``POST /rest/v1/rpc/<fn>`` in schema ``ops``.

A thin transport: the operations, their arguments and answers, and the retry loop are in
:mod:`odooops_action.store.operations`; this module sends one call and turns the answer into a
value, a :class:`Retry` (connection errors, timeouts, 429/502/503/504/52x, rolled-back database
errors) or the project's error (the shared table of :mod:`odooops_action.store.error_map`, plus
what only HTTP can say: 401/403 without a code, redirects, a URL that is not a PostgREST API).
Errors are mapped on the PostgREST ``code`` and the HTTP status, never on message text.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httpx

from odooops_action import __version__
from odooops_action.config import TOKEN_HEADER, ConnectionSettings, looks_like_jwt
from odooops_action.errors import ApiError, OdooOpsError
from odooops_action.store.error_map import (
    SCHEMA,
    STATUS_MAP,
    Refusal,
    Remedies,
    error_for,
    not_found,
    privileges,
    refused_key,
)
from odooops_action.store.operations import Operation, OperationStore, Retry
from odooops_action.store.retry import RetryPolicy, is_transient_answer, is_transient_exception

USER_AGENT = f"odooops-action/{__version__}"

_MIGRATE = "apply the migrations with `supabase db push`"
_KEY_LOCATION = "Dashboard → Project Settings → API"
_MAX_SERVER_TEXT = 500
# How long an idle HTTP connection is kept for the next call (longer than any sensible poll
# interval, shorter than the usual 60 s idle timeout of proxies and load balancers).
KEEPALIVE_SECONDS = 50.0


@dataclass(frozen=True)
class _ErrorBody:
    code: str | None
    message: str
    hint: str | None
    from_postgrest: bool  # a JSON error object, not a gateway page

    @classmethod
    def parse(cls, response: httpx.Response) -> _ErrorBody:
        try:
            body = response.json()
        except ValueError:
            return cls(code=None, message=response.text.strip(), hint=None, from_postgrest=False)
        if not isinstance(body, dict):
            return cls(code=None, message=str(body), hint=None, from_postgrest=False)
        code = body.get("code")
        hint = body.get("hint")
        return cls(
            code=str(code) if code is not None else None,
            message=str(body.get("message") or body.get("error") or ""),
            hint=str(hint) if hint else None,
            from_postgrest=code is not None,
        )


class RestStore(OperationStore):
    """The run queue through PostgREST RPC; one keep-alive HTTP client reused across calls."""

    def __init__(
        self,
        settings: ConnectionSettings,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        retry_policy: RetryPolicy | None = None,
    ) -> None:
        base_url, key = settings.require_rest()
        self._base_url = base_url
        self._host = urlsplit(base_url).netloc
        self._place = f"Supabase at {self._host}"
        self._unavailable_hint = "Retry later, or check the project's status in the Supabase dashboard."
        self._key = key
        self._token = settings.token
        self._key_variable = settings.key_variable
        self._remedies = Remedies(
            role="The API key's role",
            migrate=_MIGRATE,
            credentials=f"the service_role key in {settings.key_variable}",
            refused_key=f"use the project's service_role key ({_KEY_LOCATION}) in {settings.key_variable}",
        )
        # A policy given explicitly carries its own sleep.
        self._policy = retry_policy or RetryPolicy.with_retries(settings.max_retries, sleep=sleep)
        self._client = httpx.Client(
            base_url=f"{base_url}/rest/v1/",
            headers=_headers(key, settings.token),
            timeout=httpx.Timeout(settings.timeout_seconds),
            # httpx drops an idle connection after 5 s by default: a poll every 5 s would then pay a
            # new TCP (and TLS) handshake each time. A pooled connection the server closed meanwhile
            # is noticed before reuse and replaced.
            limits=httpx.Limits(keepalive_expiry=KEEPALIVE_SECONDS),
            transport=transport,
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"RestStore(url={self._base_url!r})"

    def __enter__(self) -> RestStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    # -- one attempt ------------------------------------------------------------------------------

    def _attempt(self, operation: Operation, args: Mapping[str, Any]) -> Any:
        function = operation.function
        try:
            response = self._client.post(f"rpc/{function}", json=dict(args))
        except httpx.TransportError as exc:
            description = f"{type(exc).__name__}: {self._server_text(str(exc)) or 'no details'}"
            if is_transient_exception(exc):
                raise Retry(description) from None
            raise ApiError(f"Cannot send ops.{function} to {self._host} ({description}).") from None
        if response.is_success:
            return self._decode(response, function)
        error = _ErrorBody.parse(response)
        if is_transient_answer(response.status_code, error.code):
            raise Retry(_status_text(response.status_code, error.code), response.headers.get("Retry-After"))
        raise self._error_for(response, error, function)

    def _decode(self, response: httpx.Response, function: str) -> Any:
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ApiError(
                f"ops.{function} on {self._host} answered HTTP {response.status_code} with a body that is "
                "not JSON: check that SUPABASE_URL is the project's API URL."
            ) from None

    # -- error mapping ------------------------------------------------------------------------

    def _error_for(self, response: httpx.Response, error: _ErrorBody, function: str) -> OdooOpsError:
        status = response.status_code
        code = error.code
        refusal = Refusal(
            code=code,
            message=self._server_text(error.message),
            hint=self._server_text(error.hint) or None,
            function=function,
            where=_status_text(status, code),
        )
        mapped = error_for(refusal, self._remedies)
        if mapped is not None:
            return mapped
        # What only HTTP says: no code, or a code the table does not know.
        if status == 401:
            return refused_key(refusal, self._remedies)
        if status == 403:
            return privileges(refusal, self._remedies)
        if status == 404 and error.from_postgrest and not (code or "").startswith("PGRST"):
            return not_found(refusal, self._remedies)
        if status in STATUS_MAP:
            return STATUS_MAP[status](refusal, self._remedies)
        if 300 <= status < 400:
            location = response.headers.get("Location", "another address")
            return ApiError(
                f"{self._host} redirected ops.{function} to {location} ({refusal.where}): set SUPABASE_URL "
                "to the project's final address (usually https://)."
            )
        if status == 404:
            return ApiError(
                f"{self._host} has no endpoint for ops.{function} ({refusal.where}): check that "
                "SUPABASE_URL is the project's API URL (https://<project>.supabase.co)."
            )
        return ApiError(
            f"ops.{function} on {self._host} failed ({refusal.where}): {refusal.message or 'no message'}.",
            hint=refusal.hint,
        )

    def _server_text(self, text: str | None) -> str:
        """Server-provided text, shortened and with the key masked should it ever be echoed."""
        if not text:
            return ""
        cleaned = text.replace(self._key, "<redacted>")
        if self._token:
            cleaned = cleaned.replace(self._token, "<redacted>")
        cleaned = cleaned.strip()
        return cleaned if len(cleaned) <= _MAX_SERVER_TEXT else cleaned[:_MAX_SERVER_TEXT] + "…"


def _headers(key: str, token: str | None = None) -> dict[str, str]:
    headers = {
        "apikey": key,
        "Accept-Profile": SCHEMA,
        "Content-Profile": SCHEMA,
        "Content-Type": "application/json",
        "Accept": "application/json",
        "User-Agent": USER_AGENT,
    }
    # New-style keys (sb_secret_…) are not JWTs; PostgREST rejects them as a Bearer token (PGRST301).
    if looks_like_jwt(key):
        headers["Authorization"] = f"Bearer {key}"
    # A header, never the body or the URL: it stays out of request logs that keep URLs.
    if token:
        headers[TOKEN_HEADER] = token
    return headers


def _status_text(status: int, code: str | None) -> str:
    return f"HTTP {status} {code}" if code else f"HTTP {status}"
