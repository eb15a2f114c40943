"""RetryPolicy and the one classification of failures: transient (retried, for every call) or final."""

from __future__ import annotations

import httpx
import pytest

from odooops_action.store.retry import (
    RetryPolicy,
    is_transient_answer,
    is_transient_exception,
    parse_retry_after,
)


@pytest.mark.parametrize(
    ("status", "code", "transient"),
    [
        (429, None, True),
        (503, "PGRST002", True),
        (503, "PGRST001", True),
        (520, None, True),
        (522, None, True),
        (504, "PGRST003", True),
        (504, None, True),
        (502, None, True),
        (500, "57014", True),  # statement timeout: rolled back
        (500, "40001", True),  # serialization failure: rolled back
        (500, "XX000", False),
        (409, "PT409", False),
        (412, "PT412", False),
        (401, "PGRST301", False),
        (404, "PGRST202", False),
        (300, "PGRST203", False),
    ],
)
def test_statuses(status: int, code: str | None, transient: bool) -> None:
    assert is_transient_answer(status, code) is transient


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (httpx.ConnectError("refused"), True),
        (httpx.ConnectTimeout("slow"), True),
        (httpx.PoolTimeout("busy"), True),
        (httpx.ReadTimeout("slow"), True),
        (httpx.WriteTimeout("slow"), True),
        (httpx.RemoteProtocolError("dropped"), True),
        (httpx.ReadError("reset"), True),
        (httpx.UnsupportedProtocol("gopher"), False),
        (ValueError("not transport"), False),
    ],
)
def test_exceptions(error: Exception, transient: bool) -> None:
    assert is_transient_exception(error) is transient


def test_full_jitter_scales_an_exponential_ceiling_capped_at_max_delay() -> None:
    draws = iter([1.0, 1.0, 1.0, 1.0, 1.0, 0.25])
    policy = RetryPolicy(base_delay=1.0, max_delay=8.0, random=lambda: next(draws))

    assert [policy.delay(n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 8.0, 2.0]


def test_wait_sleeps_the_computed_delay() -> None:
    slept: list[float] = []
    policy = RetryPolicy(sleep=slept.append, random=lambda: 0.5)

    assert policy.wait(2) == 1.0
    assert policy.wait(1, retry_after="7") == 7.0
    assert slept == [1.0, 7.0]


def test_retry_after_is_capped_and_garbage_falls_back_to_backoff() -> None:
    policy = RetryPolicy(max_retry_after=30.0, random=lambda: 0.5, clock=lambda: 0.0)

    assert policy.delay(1, retry_after="120") == 30.0
    assert policy.delay(1, retry_after="soon") == 0.5


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("0", 0.0),
        ("5", 5.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        ("Wed, 21 Oct 2015 07:28:10 GMT", 10.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),
        ("Wed, 21 Oct 2015 07:28:10 -0000", 10.0),
        ("tomorrow", None),
        ("", None),
    ],
)
def test_parse_retry_after(value: str, seconds: float | None) -> None:
    now = 1445412480.0  # Wed, 21 Oct 2015 07:28:00 GMT
    assert parse_retry_after(value, now=now) == seconds


def test_at_least_one_attempt() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
