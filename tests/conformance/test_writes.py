"""POST/PATCH/PUT/DELETE: Prefer return modes, upserts, constraint errors and bodies."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

Query = Callable[..., list[tuple[Any, ...]]]
REPRESENTATION = {"Prefer": "return=representation"}


def test_insert_defaults_to_minimal(api: httpx.Client, query: Query) -> None:
    response = api.post("/projects", json={"project_id": "p4", "name": "Delta"})
    assert response.status_code == 201
    assert response.content == b""
    assert response.headers["Content-Range"] == "*/*"
    assert query("SELECT name, priority FROM conformance.projects WHERE project_id = 'p4'") == [("Delta", 0)]


def test_insert_with_representation_returns_an_array(api: httpx.Client) -> None:
    response = api.post("/projects", json={"project_id": "p4", "name": "Delta"}, headers=REPRESENTATION)
    assert response.status_code == 201
    [row] = response.json()
    assert row["project_id"] == "p4"
    assert row["metadata"] == {}
    assert "return=representation" in response.headers["Preference-Applied"]


def test_insert_representation_honours_select(api: httpx.Client) -> None:
    response = api.post(
        "/tasks",
        params={"select": "seq,title"},
        json={"project_id": "p3", "seq": 1, "title": "t"},
        headers=REPRESENTATION,
    )
    assert response.json() == [{"seq": 1, "title": "t"}]


def test_insert_headers_only_gives_location(api: httpx.Client) -> None:
    response = api.post(
        "/projects", json={"project_id": "p 4", "name": "D"}, headers={"Prefer": "return=headers-only"}
    )
    assert response.status_code == 201
    assert response.content == b""
    assert response.headers["Location"] == "/projects?project_id=eq.p%204"


def test_bulk_insert_with_missing_keys_uses_null(api: httpx.Client) -> None:
    rows = [{"project_id": "p4", "name": "D", "archived": True}, {"project_id": "p5", "name": "E"}]
    response = api.post("/projects", json=rows, headers=REPRESENTATION)
    assert response.status_code == 201
    assert [(r["project_id"], r["archived"]) for r in response.json()] == [("p4", True), ("p5", None)]


def test_insert_of_an_empty_array_is_a_no_op(api: httpx.Client, query: Query) -> None:
    response = api.post("/projects", json=[], headers=REPRESENTATION)
    assert response.status_code == 201
    assert response.json() == []
    assert query("SELECT count(*) FROM conformance.projects") == [(3,)]


def test_unknown_column_is_pgrst204(api: httpx.Client) -> None:
    response = api.post("/projects", json={"project_id": "p4", "name": "D", "colour": "red"})
    assert response.status_code == 400
    assert response.json()["code"] == "PGRST204"


def test_invalid_json_is_pgrst102(api: httpx.Client) -> None:
    response = api.post("/projects", content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["code"] == "PGRST102"


@pytest.mark.parametrize(
    ("row", "status", "code"),
    [
        ({"project_id": "p1", "name": "dup"}, 409, "23505"),
        ({"project_id": "p4", "name": "bad", "priority": -1}, 400, "23514"),
        ({"project_id": "p4"}, 400, "23502"),
        ({"project_id": "p4", "name": "x", "priority": "high"}, 400, "22P02"),
    ],
)
def test_constraint_errors(api: httpx.Client, row: dict[str, Any], status: int, code: str) -> None:
    response = api.post("/projects", json=row)
    assert response.status_code == status
    body = response.json()
    assert body["code"] == code
    assert set(body) == {"code", "message", "details", "hint"}


def test_foreign_key_violation_is_409_with_details(api: httpx.Client) -> None:
    response = api.post("/tasks", json={"project_id": "nope", "seq": 1, "title": "t"})
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "23503"
    assert "nope" in body["details"]


def test_upsert_merge_duplicates(api: httpx.Client, query: Query) -> None:
    rows = [{"project_id": "p1", "name": "Alpha 2"}, {"project_id": "p4", "name": "Delta"}]
    response = api.post(
        "/projects", json=rows, headers={"Prefer": "resolution=merge-duplicates,return=representation"}
    )
    assert response.status_code == 201
    assert sorted(r["name"] for r in response.json()) == ["Alpha 2", "Delta"]
    assert query("SELECT name, priority FROM conformance.projects WHERE project_id = 'p1'") == [
        ("Alpha 2", 3)
    ]


def test_upsert_ignore_duplicates_returns_only_inserted(api: httpx.Client, query: Query) -> None:
    rows = [{"project_id": "p1", "name": "ignored"}, {"project_id": "p4", "name": "Delta"}]
    response = api.post(
        "/projects", json=rows, headers={"Prefer": "resolution=ignore-duplicates,return=representation"}
    )
    assert [r["project_id"] for r in response.json()] == ["p4"]
    assert query("SELECT name FROM conformance.projects WHERE project_id = 'p1'") == [("Alpha",)]


def test_upsert_on_a_unique_key_with_on_conflict(api: httpx.Client, query: Query) -> None:
    response = api.post(
        "/tasks",
        params={"on_conflict": "project_id,seq"},
        json={"project_id": "p1", "seq": 2, "title": "second, renamed"},
        headers={"Prefer": "resolution=merge-duplicates"},
    )
    assert response.status_code == 201
    assert query("SELECT title FROM conformance.tasks WHERE project_id = 'p1' AND seq = 2") == [
        ("second, renamed",)
    ]


def test_insert_conflict_without_resolution_is_409(api: httpx.Client) -> None:
    response = api.post(
        "/tasks", params={"on_conflict": "project_id,seq"}, json={"project_id": "p1", "seq": 2, "title": "x"}
    )
    assert response.status_code == 409


def test_patch_defaults_to_204(api: httpx.Client, query: Query) -> None:
    response = api.patch("/projects", params={"project_id": "eq.p2"}, json={"archived": False})
    assert response.status_code == 204
    assert response.content == b""
    assert query("SELECT archived FROM conformance.projects WHERE project_id = 'p2'") == [(False,)]


def test_patch_representation_returns_changed_rows(api: httpx.Client) -> None:
    response = api.patch(
        "/tasks",
        params={"project_id": "eq.p1", "done_at": "is.null"},
        json={"title": "done"},
        headers=REPRESENTATION,
    )
    assert response.status_code == 200
    assert [(r["seq"], r["title"]) for r in response.json()] == [(2, "done")]
    assert response.headers["Content-Range"] == "0-0/*"


def test_conditional_patch_that_matches_nothing_returns_empty_array(api: httpx.Client, query: Query) -> None:
    response = api.patch(
        "/projects",
        params={"project_id": "eq.p2", "archived": "is.false"},
        json={"name": "changed"},
        headers=REPRESENTATION,
    )
    assert response.status_code == 200
    assert response.json() == []
    assert query("SELECT name FROM conformance.projects WHERE project_id = 'p2'") == [("Beta",)]


def test_patch_filter_sees_old_values_and_representation_new_ones(api: httpx.Client) -> None:
    response = api.patch(
        "/projects",
        params={"project_id": "eq.p1", "priority": "eq.3"},
        json={"priority": 4},
        headers=REPRESENTATION,
    )
    assert [r["priority"] for r in response.json()] == [4]


def test_patch_with_an_array_body_is_pgrst102(api: httpx.Client) -> None:
    response = api.patch("/projects", params={"project_id": "eq.p1"}, json=[{"name": "x"}])
    assert response.status_code == 400
    assert response.json()["code"] == "PGRST102"


def test_delete_minimal_and_representation(api: httpx.Client, query: Query) -> None:
    assert api.delete("/tasks", params={"task_id": "eq.4"}).status_code == 204
    response = api.delete("/tasks", params={"project_id": "eq.p1", "seq": "gte.2"}, headers=REPRESENTATION)
    assert response.status_code == 200
    assert sorted(r["seq"] for r in response.json()) == [2, 3]
    assert query("SELECT task_id FROM conformance.tasks") == [(1,)]


def test_put_upserts_one_row_by_primary_key(api: httpx.Client, query: Query) -> None:
    response = api.put("/projects", params={"project_id": "eq.p9"}, json={"project_id": "p9", "name": "Nine"})
    assert response.status_code == 204
    assert query("SELECT name FROM conformance.projects WHERE project_id = 'p9'") == [("Nine",)]


def test_put_with_mismatching_key_is_pgrst115(api: httpx.Client) -> None:
    response = api.put("/projects", params={"project_id": "eq.p9"}, json={"project_id": "p8", "name": "x"})
    assert response.status_code == 400
    assert response.json()["code"] == "PGRST115"


def test_count_on_write(api: httpx.Client) -> None:
    response = api.patch(
        "/tasks", params={"project_id": "eq.p1"}, json={"title": "x"}, headers={"Prefer": "count=exact"}
    )
    assert response.status_code == 204
    assert response.headers["Content-Range"] == "0-2/3"
