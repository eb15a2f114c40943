"""POST /rpc/<fn>: argument passing and result shapes (setof, composite, scalar, void), errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

Query = Callable[..., list[tuple[Any, ...]]]


def test_setof_returns_an_array(api: httpx.Client) -> None:
    response = api.post("/rpc/list_tasks", json={"p_project": "p1"})
    assert response.status_code == 200
    assert [t["seq"] for t in response.json()] == [1, 2, 3]


def test_empty_setof_returns_an_empty_array(api: httpx.Client) -> None:
    response = api.post("/rpc/list_tasks", json={"p_project": "p3"})
    assert response.status_code == 200
    assert response.json() == []


def test_setof_results_accept_filters_order_and_count(api: httpx.Client) -> None:
    response = api.post(
        "/rpc/list_tasks",
        params={"seq": "gte.2", "order": "seq.desc", "select": "seq"},
        json={"p_project": "p1"},
        headers={"Prefer": "count=exact"},
    )
    assert response.json() == [{"seq": 3}, {"seq": 2}]
    assert response.headers["Content-Range"] == "0-1/2"


def test_composite_returns_an_object(api: httpx.Client) -> None:
    response = api.post("/rpc/get_project", json={"p_project": "p2"})
    assert response.status_code == 200
    body = response.json()
    assert isinstance(body, dict)
    assert body["name"] == "Beta"


def test_scalar_returns_the_bare_value(api: httpx.Client) -> None:
    assert api.post("/rpc/count_tasks", json={"p_project": "p1"}).json() == 3
    assert api.post("/rpc/count_tasks", json={"p_project": "p1", "p_only_done": True}).json() == 2


def test_setof_scalar_returns_an_array_of_values(api: httpx.Client) -> None:
    assert api.post("/rpc/task_titles", json={"p_project": "p1"}).json() == ["first", "second", "third"]


def test_jsonb_scalar_is_nested_json(api: httpx.Client) -> None:
    body = api.post("/rpc/echo", json={"a": [1, {"b": None}]}).json()
    assert body == {"a": [1, {"b": None}]}


def test_void_returns_204_and_commits(api: httpx.Client, query: Query) -> None:
    response = api.post("/rpc/archive", json={"p_project": "p1"})
    assert response.status_code == 204
    assert response.content == b""
    assert query("SELECT archived FROM conformance.projects WHERE project_id = 'p1'") == [(True,)]


def test_get_rpc_takes_arguments_from_the_query(api: httpx.Client) -> None:
    assert api.get("/rpc/count_tasks", params={"p_project": "p2"}).json() == 1


def test_raise_pt409_maps_to_409_and_rolls_back(api: httpx.Client, query: Query) -> None:
    response = api.post("/rpc/add_task_then_fail", json={"p_project": "p1"})
    assert response.status_code == 409
    assert response.json() == {
        "code": "PT409",
        "message": "state conflict for p1",
        "details": "run is finished",
        "hint": "cancel it first",
    }
    assert query("SELECT count(*) FROM conformance.tasks WHERE seq = 999") == [(0,)]


@pytest.mark.parametrize(
    ("sqlstate", "status"), [("PT404", 404), ("PT400", 400), ("PT503", 503), ("P0002", 500)]
)
def test_custom_sqlstates(api: httpx.Client, sqlstate: str, status: int) -> None:
    response = api.post("/rpc/fail_with", json={"p_sqlstate": sqlstate, "p_message": "custom"})
    assert response.status_code == status
    assert response.json()["code"] == sqlstate
    assert response.json()["message"] == "custom"


def test_plain_raise_is_p0001_and_400(api: httpx.Client) -> None:
    response = api.post("/rpc/boom", json={})
    assert response.status_code == 400
    assert response.json()["code"] == "P0001"
    assert response.json()["message"] == "boom"


def test_empty_body_calls_a_function_without_arguments(api: httpx.Client) -> None:
    response = api.post("/rpc/whoami", headers={"Content-Type": "application/json"})
    assert response.status_code == 200
    assert response.json()["role"] == "service_role"


def test_volatile_function_runs_read_write_and_commits(api: httpx.Client, query: Query) -> None:
    response = api.post("/rpc/add_tasks", json={"p_project": "p3", "p_count": 2})
    assert [t["seq"] for t in response.json()] == [101, 102]
    assert query("SELECT count(*) FROM conformance.tasks WHERE project_id = 'p3'") == [(2,)]


def test_stable_function_runs_read_only(api: httpx.Client) -> None:
    assert api.post("/rpc/whoami", json={}).json()["read_only"] == "on"


def test_rpc_accepts_only_get_and_post(api: httpx.Client) -> None:
    response = api.patch("/rpc/whoami", json={})
    assert response.status_code == 405
    assert response.json()["code"] == "PGRST101"
