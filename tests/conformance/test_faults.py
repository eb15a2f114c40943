"""Fault injection (programmatic and over HTTP) and the request log."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.devstack import Fault, RestServer

Query = Callable[..., list[tuple[Any, ...]]]


def test_unavailable_answers_503_with_retry_after_then_recovers(
    api: httpx.Client, conformance_server: RestServer
) -> None:
    conformance_server.faults.push(Fault.unavailable(retry_after=2, times=2))
    first, second, third = (api.get("/projects") for _ in range(3))
    assert (first.status_code, second.status_code, third.status_code) == (503, 503, 200)
    assert first.headers["Retry-After"] == "2"
    assert first.json()["code"] == "PGRST002"


def test_fault_only_hits_matching_path_and_method(api: httpx.Client, conformance_server: RestServer) -> None:
    conformance_server.faults.push(Fault.gateway_error(path=r"/rpc/count_tasks$", method="POST"))
    assert api.get("/projects").status_code == 200
    response = api.post("/rpc/count_tasks", json={"p_project": "p1"})
    assert response.status_code == 520
    assert "text/html" in response.headers["Content-Type"]
    assert api.post("/rpc/count_tasks", json={"p_project": "p1"}).status_code == 200


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [(Fault.pool_timeout(), 504, "PGRST003"), (Fault.rate_limited(retry_after=1), 429, None)],
)
def test_canned_faults(
    api: httpx.Client, conformance_server: RestServer, fault: Fault, status: int, code: str | None
) -> None:
    conformance_server.faults.push(fault)
    response = api.get("/projects")
    assert response.status_code == status
    assert response.json().get("code") == code


def test_drop_closes_the_connection_without_an_answer(
    api: httpx.Client, conformance_server: RestServer
) -> None:
    conformance_server.faults.push(Fault.drop())
    with pytest.raises(httpx.RemoteProtocolError):
        api.get("/projects")
    assert api.get("/projects").status_code == 200
    assert [r.status for r in conformance_server.requests] == [0, 200]


def test_drop_after_commit_loses_the_answer_but_keeps_the_write(
    api: httpx.Client, conformance_server: RestServer, query: Query
) -> None:
    conformance_server.faults.push(Fault.drop(after=True, method="POST"))
    with pytest.raises(httpx.RemoteProtocolError):
        api.post("/projects", json={"project_id": "p4", "name": "lost answer"})
    assert query("SELECT name FROM conformance.projects WHERE project_id = 'p4'") == [("lost answer",)]


def test_delay_slows_the_answer(api: httpx.Client, conformance_server: RestServer) -> None:
    conformance_server.faults.push(Fault.delay(300))
    started = time.monotonic()
    response = api.get("/projects")
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.3
    conformance_server.faults.push(Fault.delay(500))
    with pytest.raises(httpx.ReadTimeout):
        api.get("/projects", timeout=0.1)
    _wait_until(lambda: len(conformance_server.requests) == 2)  # the server still answers, late


def _wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_faults_over_http(api: httpx.Client, conformance_server: RestServer) -> None:
    admin = f"{conformance_server.url}/__faults"
    pushed = httpx.post(
        admin, json=[{"kind": "status", "status": 503, "times": 1, "headers": {"Retry-After": "0"}}]
    )
    assert pushed.status_code == 201
    assert len(httpx.get(admin).json()) == 1
    assert api.get("/projects").status_code == 503
    assert httpx.get(admin).json() == []
    httpx.post(admin, json=[{"kind": "status", "status": 500, "times": None}])
    assert httpx.delete(admin).status_code == 204
    assert api.get("/projects").status_code == 200


def test_invalid_fault_over_http_is_400(conformance_server: RestServer) -> None:
    response = httpx.post(f"{conformance_server.url}/__faults", json=[{"kind": "explode"}])
    assert response.status_code == 400


def test_request_log_records_requests_without_secrets(
    api: httpx.Client, conformance_server: RestServer
) -> None:
    api.post("/rpc/count_tasks", params={"select": "x"}, json={"p_project": "p1"})
    [record] = conformance_server.requests
    assert (record.method, record.path, record.status) == ("POST", "/rest/v1/rpc/count_tasks", 200)
    assert record.query == "select=x"
    assert record.json_body() == {"p_project": "p1"}
    assert record.body_size == len(b'{"p_project":"p1"}')
    assert record.response_bytes == 1
    assert record.role == "service_role"
    assert record.headers["authorization"] == "Bearer <jwt>"
    assert record.headers["apikey"] == "<jwt>"


def test_request_log_over_http_and_clear(api: httpx.Client, conformance_server: RestServer) -> None:
    api.get("/projects")
    log = httpx.get(f"{conformance_server.url}/__requests").json()
    assert [entry["path"] for entry in log] == ["/rest/v1/projects"]
    assert httpx.delete(f"{conformance_server.url}/__requests").status_code == 204
    assert conformance_server.requests == []


def test_unknown_route_is_a_gateway_404(conformance_server: RestServer) -> None:
    response = httpx.get(f"{conformance_server.url}/auth/v1/health")
    assert response.status_code == 404
