"""RetryPolicy and the classification of failures into "not applied" and "maybe applied"."""

from __future__ import annotations

import httpx
import pytest

from odooops_action.store.retry import (
    Outcome,
    RetryPolicy,
    outcome_of_exception,
    outcome_of_status,
    parse_retry_after,
)


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (429, None, Outcome.NOT_APPLIED),
        (503, "PGRST002", Outcome.NOT_APPLIED),
        (520, None, Outcome.NOT_APPLIED),
        (504, "PGRST003", Outcome.NOT_APPLIED),
        (504, None, Outcome.MAYBE_APPLIED),
        (502, None, Outcome.MAYBE_APPLIED),
        (500, "57014", None),
        (409, "PT409", None),
        (401, "PGRST301", None),
        (404, "PGRST202", None),
    ],
)
def test_statuses(status: int, code: str | None, expected: Outcome | None) -> None:
    assert outcome_of_status(status, code) is expected


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (httpx.ConnectError("refused"), Outcome.NOT_APPLIED),
        (httpx.ConnectTimeout("slow"), Outcome.NOT_APPLIED),
        (httpx.PoolTimeout("busy"), Outcome.NOT_APPLIED),
        (httpx.ReadTimeout("slow"), Outcome.MAYBE_APPLIED),
        (httpx.WriteTimeout("slow"), Outcome.MAYBE_APPLIED),
        (httpx.RemoteProtocolError("dropped"), Outcome.MAYBE_APPLIED),
        (httpx.ReadError("reset"), Outcome.MAYBE_APPLIED),
        (httpx.UnsupportedProtocol("gopher"), None),
        (ValueError("not transport"), None),
    ],
)
def test_exceptions(error: Exception, expected: Outcome | None) -> None:
    assert outcome_of_exception(error) is expected


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
