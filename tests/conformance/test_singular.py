"""Accept: application/vnd.pgrst.object+json — exactly one row, or 406 PGRST116 and a rollback."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

Query = Callable[..., list[tuple[Any, ...]]]
OBJECT = {"Accept": "application/vnd.pgrst.object+json"}


def test_one_row_is_returned_as_an_object(api: httpx.Client) -> None:
    response = api.get(
        "/projects", params={"project_id": "eq.p2", "select": "project_id,name"}, headers=OBJECT
    )
    assert response.status_code == 200
    assert response.json() == {"project_id": "p2", "name": "Beta"}
    assert response.headers["Content-Type"].startswith("application/vnd.pgrst.object+json")


def test_no_row_is_406(api: httpx.Client) -> None:
    response = api.get("/projects", params={"project_id": "eq.nope"}, headers=OBJECT)
    assert response.status_code == 406
    body = response.json()
    assert body["code"] == "PGRST116"
    assert body["details"] == "The result contains 0 rows"


def test_many_rows_is_406(api: httpx.Client) -> None:
    response = api.get("/projects", headers=OBJECT)
    assert response.status_code == 406
    assert response.json()["details"] == "The result contains 3 rows"


def test_insert_representation_as_object(api: httpx.Client) -> None:
    response = api.post(
        "/projects",
        json={"project_id": "p4", "name": "D"},
        headers={**OBJECT, "Prefer": "return=representation"},
    )
    assert response.status_code == 201
    assert response.json()["project_id"] == "p4"


def test_patch_of_several_rows_is_rolled_back(api: httpx.Client, query: Query) -> None:
    response = api.patch(
        "/tasks",
        params={"project_id": "eq.p1"},
        json={"title": "clobbered"},
        headers={**OBJECT, "Prefer": "return=representation"},
    )
    assert response.status_code == 406
    assert response.json()["code"] == "PGRST116"
    assert query("SELECT count(*) FROM conformance.tasks WHERE title = 'clobbered'") == [(0,)]


def test_minimal_patch_is_checked_and_rolled_back_too(api: httpx.Client, query: Query) -> None:
    response = api.patch(
        "/tasks", params={"project_id": "eq.p1"}, json={"title": "clobbered"}, headers=OBJECT
    )
    assert response.status_code == 406
    assert query("SELECT count(*) FROM conformance.tasks WHERE title = 'clobbered'") == [(0,)]


def test_delete_of_no_row_is_406(api: httpx.Client) -> None:
    response = api.delete("/tasks", params={"task_id": "eq.999"}, headers=OBJECT)
    assert response.status_code == 406


def test_delete_of_several_rows_is_rolled_back(api: httpx.Client, query: Query) -> None:
    response = api.delete("/tasks", params={"project_id": "eq.p1"}, headers=OBJECT)
    assert response.status_code == 406
    assert query("SELECT count(*) FROM conformance.tasks WHERE project_id = 'p1'") == [(3,)]


def test_rpc_returning_several_rows_is_rolled_back(api: httpx.Client, query: Query) -> None:
    response = api.post("/rpc/add_tasks", json={"p_project": "p3", "p_count": 2}, headers=OBJECT)
    assert response.status_code == 406
    assert query("SELECT count(*) FROM conformance.tasks WHERE project_id = 'p3'") == [(0,)]


def test_rpc_returning_one_row_as_object(api: httpx.Client, query: Query) -> None:
    response = api.post("/rpc/add_tasks", json={"p_project": "p3", "p_count": 1}, headers=OBJECT)
    assert response.status_code == 200
    assert response.json()["title"] == "generated 1"
    assert query("SELECT count(*) FROM conformance.tasks WHERE project_id = 'p3'") == [(1,)]
