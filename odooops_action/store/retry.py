"""When to retry a call to the ``ops`` schema, and how long to wait before doing so.

Every ``ops.*`` write carries a repeat key (see :mod:`odooops_action.store.operations` and
docs/RUN_LIFECYCLE.md), so the database answers a repeated call as it answered the first one.
There is therefore one rule for every call: a failure that a later attempt may cure is retried,
whether or not the server may already have applied the call — a connection refused, reset or
timed out, an answer 429, 502, 503, 504 or 52x from PostgREST or the gateway in front of it, or a
database error the server rolled back (statement or lock timeout, serialization failure,
deadlock, connection or shutdown trouble; :data:`odooops_action.store.error_map.TRANSIENT_CODES`).
Waits are capped exponential backoff with full jitter; ``Retry-After`` wins when the server sends it.
"""

from __future__ import annotations

import random as _random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime

import httpx

from odooops_action.store.error_map import is_transient_code

# 429 rate limit, 502/504 gateway, 503 PostgREST (re)connecting or reloading, 520-527 the edge
# proxy's "origin" errors (Cloudflare's 520 can arrive after the database committed).
TRANSIENT_STATUSES = frozenset({429, 502, 503, 504, *range(520, 528)})

_TRANSIENT_ERRORS: tuple[type[httpx.TransportError], ...] = (
    httpx.TimeoutException,  # connect, read, write, pool
    httpx.NetworkError,  # connect, read, write, close
    httpx.RemoteProtocolError,  # the server closed the connection mid-answer
    httpx.ProxyError,
)


def is_transient_exception(exc: BaseException) -> bool:
    """Whether a transport error may go away on a later attempt."""
    return isinstance(exc, _TRANSIENT_ERRORS)


def is_transient_answer(status: int, code: str | None) -> bool:
    """Whether an error answer (HTTP status and PostgREST/SQLSTATE code) may go away later."""
    return status in TRANSIENT_STATUSES or is_transient_code(code)


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
