"""When to retry a request to the ``ops`` schema, and how long to wait before doing so.

A failure is transient when a later attempt may succeed. Transient failures come in two kinds,
and the difference decides which calls may be repeated:

* ``NOT_APPLIED`` — the server certainly did not run the request: the connection was never
  established (connect error or timeout, no free connection in the local pool), or the answer
  says the request was turned away before it was processed (429, 503 while PostgREST reloads,
  520 from the gateway, 504 ``PGRST003`` = no database connection became free). Any call may be
  sent again.
* ``MAYBE_APPLIED`` — the request was sent but no answer came back (read/write timeout, the
  connection dropped, a gateway 502/504 without ``PGRST003``). The database may or may not have
  committed it: only calls that are safe to repeat may be sent again.
"""

from __future__ import annotations

import enum
import random as _random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime

import httpx


class Outcome(enum.Enum):
    NOT_APPLIED = "not applied"
    MAYBE_APPLIED = "maybe applied"


# Statuses PostgREST / the Supabase gateway use for "turned away before processing".
_NOT_APPLIED_STATUSES = frozenset({429, 503, 520})
# 504 PGRST003: PostgREST timed out waiting for a pooled database connection; nothing ran.
_POOL_TIMEOUT_CODE = "PGRST003"
_GATEWAY_STATUSES = frozenset({502, 504})

_NOT_SENT_ERRORS: tuple[type[httpx.TransportError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
)
_SENT_ERRORS: tuple[type[httpx.TransportError], ...] = (
    httpx.ReadTimeout,
    httpx.WriteTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
    httpx.CloseError,
)


def outcome_of_exception(exc: BaseException) -> Outcome | None:
    """The transient kind of a transport error, or None when retrying cannot help."""
    if isinstance(exc, _NOT_SENT_ERRORS):
        return Outcome.NOT_APPLIED
    if isinstance(exc, _SENT_ERRORS):
        return Outcome.MAYBE_APPLIED
    return None


def outcome_of_status(status: int, code: str | None) -> Outcome | None:
    """The transient kind of an error answer, or None when the answer is final."""
    if status in _NOT_APPLIED_STATUSES:
        return Outcome.NOT_APPLIED
    if status == 504 and code == _POOL_TIMEOUT_CODE:
        return Outcome.NOT_APPLIED
    if status in _GATEWAY_STATUSES:
        return Outcome.MAYBE_APPLIED
    return None


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential backoff with full jitter; ``Retry-After`` wins when the server sends it.

    ``sleep``, ``random`` and ``clock`` are injectable so that tests run instantly and can assert
    the exact waits.
    """

    max_attempts: int = 4
    base_delay: float = 1.0
    max_delay: float = 8.0
    max_retry_after: float = 30.0
    sleep: Callable[[float], None] = time.sleep
    random: Callable[[], float] = _random.random
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    @classmethod
    def with_retries(cls, max_retries: int, *, sleep: Callable[[float], None] = time.sleep) -> RetryPolicy:
        return cls(max_attempts=max_retries + 1, sleep=sleep)

    def delay(self, retry_number: int, retry_after: str | None = None) -> float:
        """Seconds to wait before retry ``retry_number`` (1 for the first retry)."""
        if retry_after is not None:
            requested = parse_retry_after(retry_after, now=self.clock())
            if requested is not None:
                return min(requested, self.max_retry_after)
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** (retry_number - 1))
        return self.random() * ceiling

    def wait(self, retry_number: int, retry_after: str | None = None) -> float:
        seconds = self.delay(retry_number, retry_after)
        self.sleep(seconds)
        return seconds


def parse_retry_after(value: str, *, now: float) -> float | None:
    """``Retry-After`` as seconds from ``now``: delta-seconds or an HTTP-date; None when unparsable."""
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" means UTC with unknown origin; HTTP dates are always GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)
