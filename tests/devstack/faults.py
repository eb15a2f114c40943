"""Fault injection and the request log of the REST test server."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

FAULT_KINDS = ("status", "drop", "delay")


@dataclass
class Fault:
    """One programmed misbehaviour.

    ``kind``: "status" answers ``status`` with ``body``/``headers`` instead of the real answer;
    "drop" closes the socket without any response; "delay" waits ``delay_ms`` and then answers
    normally. ``after=True`` applies the fault only after the request ran against the database
    (a committed write whose answer is lost). ``path`` is a regex searched in the URL path,
    ``method`` an HTTP method; ``times`` is how often it fires (``None`` = until cleared).
    ``delay_ms`` also applies before a "status" or "drop" fault.
    """

    kind: str = "status"
    status: int = 503
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    delay_ms: int = 0
    path: str | None = None
    method: str | None = None
    times: int | None = 1
    after: bool = False

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {FAULT_KINDS}")

    def matches(self, method: str, path: str, after: bool) -> bool:
        if self.after != after:
            return False
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path is None or re.search(self.path, path) is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fault:
        return cls(**data)

    # -- the usual suspects ---------------------------------------------------------------
    @classmethod
    def unavailable(cls, retry_after: int = 1, **match: Any) -> Fault:
        """503 with Retry-After, as PostgREST answers while it reconnects or reloads its cache."""
        body = _error_json("PGRST002", "Could not query the database for the schema cache. Retrying.")
        return cls("status", 503, body, {"Retry-After": str(retry_after)}, **match)

    @classmethod
    def gateway_error(cls, **match: Any) -> Fault:
        """520 from the edge proxy: an HTML page, not JSON."""
        return cls(
            "status", 520, "<html><body>error code: 520</body></html>", {"Content-Type": "text/html"}, **match
        )

    @classmethod
    def pool_timeout(cls, **match: Any) -> Fault:
        body = _error_json("PGRST003", "Timed out acquiring connection from connection pool.")
        return cls("status", 504, body, **match)

    @classmethod
    def rate_limited(cls, retry_after: int | None = None, **match: Any) -> Fault:
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        return cls("status", 429, json.dumps({"message": "Too Many Requests"}), headers, **match)

    @classmethod
    def drop(cls, **match: Any) -> Fault:
        return cls("drop", 0, **match)

    @classmethod
    def delay(cls, delay_ms: int, **match: Any) -> Fault:
        return cls("delay", 0, delay_ms=delay_ms, **match)


def _error_json(code: str, message: str) -> str:
    return json.dumps({"code": code, "details": None, "hint": None, "message": message})


class FaultPlan:
    """A thread-safe queue of faults; the first matching one fires and counts down."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def push(self, *faults: Fault) -> None:
        with self._lock:
            self._faults.extend(faults)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def take(self, method: str, path: str, *, after: bool) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if not fault.matches(method, path, after):
                    continue
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                return fault
        return None


@dataclass
class RequestRecord:
    """One request as the server saw it; secret header values are redacted."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body_size: int
    body: bytes
    status: int = 0  # 0: the connection was dropped without an answer
    response_bytes: int = 0
    duration_ms: float = 0.0
    role: str | None = None
    fault: str | None = None

    def json_body(self) -> Any:
        return json.loads(self.body) if self.body else None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["body"] = self.body.decode("utf-8", errors="replace")
        return data


SECRET_HEADERS = frozenset({"apikey", "authorization", "cookie"})


def redact_headers(headers: dict[str, str]) -> dict[str, str]:
    """Lower-cased headers with secret values replaced by their kind (``Bearer <jwt>``, ``<sb_secret>``)."""
    redacted: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        redacted[key] = _describe_secret(value) if key in SECRET_HEADERS else value
    return redacted


def _describe_secret(value: str) -> str:
    scheme, _, token = value.partition(" ") if value.lower().startswith("bearer ") else ("", "", value)
    if token.startswith("sb_secret_"):
        kind = "<sb_secret>"
    elif token.startswith("sb_publishable_"):
        kind = "<sb_publishable>"
    elif token.count(".") == 2:
        kind = "<jwt>"
    else:
        kind = "<redacted>"
    return f"{scheme} {kind}" if scheme else kind


class RequestLog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []

    def add(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)

    def snapshot(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()
