"""GET/HEAD on tables: select, embedding, filters, logic trees, order, paging and counts."""

from __future__ import annotations

import httpx
import pytest

from tests.devstack import DevStack


def ids(response: httpx.Response, key: str = "project_id") -> list[str]:
    assert response.status_code in (200, 206), response.text
    return [row[key] for row in response.json()]


def test_plain_read_returns_an_array_with_open_content_range(api: httpx.Client) -> None:
    response = api.get("/projects", params={"order": "project_id"})
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.headers["Content-Range"] == "0-2/*"
    assert ids(response) == ["p1", "p2", "p3"]


def test_empty_result_has_star_content_range(api: httpx.Client) -> None:
    response = api.get("/projects", params={"project_id": "eq.nope"})
    assert response.json() == []
    assert response.headers["Content-Range"] == "*/*"


def test_select_columns_and_aliases(api: httpx.Client) -> None:
    response = api.get("/projects", params={"select": "project_id,label:name", "project_id": "eq.p1"})
    assert response.json() == [{"project_id": "p1", "label": "Alpha"}]


def test_select_with_cast(api: httpx.Client) -> None:
    response = api.get("/projects", params={"select": "priority::text", "project_id": "eq.p1"})
    assert response.json() == [{"priority": "3"}]


def test_timestamps_and_jsonb_are_rendered_like_postgrest(api: httpx.Client) -> None:
    row = api.get("/projects", params={"project_id": "eq.p1"}).json()[0]
    assert row["created_at"] == "2024-01-01T10:00:00+00:00"
    assert row["metadata"] == {"tier": "gold"}


def test_embedding_children_with_order_and_limit(api: httpx.Client) -> None:
    response = api.get(
        "/projects",
        params={
            "select": "project_id,tasks(seq,title),notes(*)",
            "project_id": "eq.p1",
            "tasks.order": "seq.desc",
            "tasks.limit": "2",
        },
    )
    [project] = response.json()
    assert [t["seq"] for t in project["tasks"]] == [3, 2]
    assert project["notes"][0]["body"] == "a note"


def test_embedding_returns_empty_array_for_no_children(api: httpx.Client) -> None:
    [project] = api.get("/projects", params={"select": "*,tasks(*)", "project_id": "eq.p3"}).json()
    assert project["tasks"] == []


def test_embedded_filters_apply_to_children_only(api: httpx.Client) -> None:
    response = api.get(
        "/projects",
        params={"select": "project_id,tasks(seq)", "tasks.done_at": "is.null", "order": "project_id"},
    )
    assert [(p["project_id"], [t["seq"] for t in p["tasks"]]) for p in response.json()] == [
        ("p1", [2]),
        ("p2", [1]),
        ("p3", []),
    ]


def test_inner_embedding_filters_parents(api: httpx.Client) -> None:
    response = api.get("/projects", params={"select": "project_id,tasks!inner(seq)", "tasks.seq": "eq.3"})
    assert ids(response) == ["p1"]


def test_many_to_one_embedding_is_an_object(api: httpx.Client) -> None:
    response = api.get("/tasks", params={"select": "seq,projects(name)", "project_id": "eq.p2"})
    assert response.json() == [{"seq": 1, "projects": {"name": "Beta"}}]


def test_unknown_relationship_is_pgrst200(api: httpx.Client) -> None:
    response = api.get("/projects", params={"select": "*,unrelated(*)"})
    assert response.status_code == 400
    assert response.json()["code"] == "PGRST200"


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"priority": "eq.3"}, ["p1"]),
        ({"priority": "neq.3"}, ["p2", "p3"]),
        ({"priority": "gt.1"}, ["p1", "p3"]),
        ({"priority": "gte.2"}, ["p1", "p3"]),
        ({"priority": "lt.2"}, ["p2"]),
        ({"priority": "lte.2"}, ["p2", "p3"]),
        ({"priority": "not.eq.3"}, ["p2", "p3"]),
        ({"archived": "is.null"}, ["p3"]),
        ({"archived": "is.true"}, ["p2"]),
        ({"archived": "is.false"}, ["p1"]),
        ({"archived": "not.is.null"}, ["p1", "p2"]),
        ({"name": "in.(Alpha,Beta)"}, ["p1", "p2"]),
        ({"name": 'in.("Gamma, Inc",Beta)'}, ["p2", "p3"]),
        ({"name": "not.in.(Alpha,Beta)"}, ["p3"]),
        ({"name": "like.*amm*"}, ["p3"]),
        ({"name": "ilike.al*"}, ["p1"]),
        ({"metadata": 'cs.{"tier":"gold"}'}, ["p1"]),
        ({"or": "(priority.eq.1,archived.is.null)"}, ["p2", "p3"]),
        ({"or": '(name.eq."Gamma, Inc",project_id.eq.p1)'}, ["p1", "p3"]),
        ({"or": "(priority.gte.3,and(priority.lt.3,archived.is.true))"}, ["p1", "p2"]),
        ({"not.or": "(priority.eq.1,priority.eq.2)"}, ["p1"]),
        ({"created_at": "gt.2024-01-01T10:00:00+00:00"}, ["p2", "p3"]),
    ],
)
def test_filters(api: httpx.Client, params: dict[str, str], expected: list[str]) -> None:
    assert ids(api.get("/projects", params={**params, "order": "project_id"})) == expected


def test_several_filters_on_one_column_are_anded(api: httpx.Client) -> None:
    response = api.get(
        "/projects", params=[("priority", "gt.1"), ("priority", "lt.3"), ("order", "project_id")]
    )
    assert ids(response) == ["p3"]


def test_hostile_value_is_one_literal_not_a_second_filter(api: httpx.Client) -> None:
    response = api.get("/projects", params={"project_id": "eq.x&status=neq.zzz"})
    assert response.status_code == 200
    assert response.json() == []
    assert "%26" in str(response.request.url)


def test_unencoded_plus_in_a_timestamp_becomes_a_space(api: httpx.Client) -> None:
    # "+" in a raw query string is a space to PostgREST; only %2B keeps the offset.
    raw = api.get("/projects?created_at=eq.2024-01-02T10:00:00+00:00")
    encoded = api.get("/projects?created_at=eq.2024-01-02T10:00:00%2B00:00")
    assert raw.status_code == 400
    assert raw.json()["code"] == "22007"
    assert ids(encoded) == ["p2"]


def test_unknown_operator_is_pgrst100(api: httpx.Client) -> None:
    response = api.get("/projects", params={"priority": "between.1.2"})
    assert response.status_code == 400
    assert response.json()["code"] == "PGRST100"


def test_unknown_column_is_a_postgres_error(api: httpx.Client) -> None:
    response = api.get("/projects", params={"nope": "eq.1"})
    assert response.status_code == 400
    assert response.json()["code"] == "42703"


def test_invalid_value_for_type_is_22p02(api: httpx.Client) -> None:
    response = api.get("/projects", params={"priority": "eq.high"})
    assert response.status_code == 400
    assert response.json()["code"] == "22P02"


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        ("priority.asc", ["p2", "p3", "p1"]),
        ("priority.desc", ["p1", "p3", "p2"]),
        ("archived.asc.nullsfirst,project_id", ["p3", "p1", "p2"]),
        ("archived.desc.nullslast", ["p2", "p1", "p3"]),
        ("archived.desc,project_id.desc", ["p3", "p2", "p1"]),
    ],
)
def test_order(api: httpx.Client, order: str, expected: list[str]) -> None:
    assert ids(api.get("/projects", params={"order": order})) == expected


def test_limit_and_offset(api: httpx.Client) -> None:
    response = api.get("/projects", params={"order": "project_id", "limit": "1", "offset": "1"})
    assert ids(response) == ["p2"]
    assert response.headers["Content-Range"] == "1-1/*"


def test_exact_count_with_a_partial_page_is_206(api: httpx.Client) -> None:
    response = api.get(
        "/projects", params={"order": "project_id", "limit": "2"}, headers={"Prefer": "count=exact"}
    )
    assert response.status_code == 206
    assert response.headers["Content-Range"] == "0-1/3"
    assert "count=exact" in response.headers["Preference-Applied"]


def test_exact_count_with_everything_is_200(api: httpx.Client) -> None:
    response = api.get("/projects", headers={"Prefer": "count=exact"})
    assert response.status_code == 200
    assert response.headers["Content-Range"] == "0-2/3"


def test_exact_count_of_nothing(api: httpx.Client) -> None:
    response = api.get("/projects", params={"priority": "gt.100"}, headers={"Prefer": "count=exact"})
    assert response.status_code == 200
    assert response.headers["Content-Range"] == "*/0"


def test_offset_past_the_end_with_count_is_416(api: httpx.Client) -> None:
    response = api.get("/projects", params={"offset": "10"}, headers={"Prefer": "count=exact"})
    assert response.status_code == 416
    assert response.json()["code"] == "PGRST103"
    assert response.headers["Content-Range"] == "*/3"


def test_count_respects_filters(api: httpx.Client) -> None:
    response = api.get(
        "/projects", params={"priority": "gte.2", "limit": "1"}, headers={"Prefer": "count=exact"}
    )
    assert response.headers["Content-Range"] == "0-0/2"


def test_range_header_pages(api: httpx.Client) -> None:
    response = api.get("/projects", params={"order": "project_id"}, headers={"Range": "1-2"})
    assert ids(response) == ["p2", "p3"]
    assert response.headers["Content-Range"] == "1-2/*"


def test_head_returns_headers_without_body(api: httpx.Client) -> None:
    response = api.head("/projects", headers={"Prefer": "count=exact"})
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["Content-Range"] == "0-2/3"


def test_max_rows_caps_every_read(devstack: DevStack, service_headers: dict[str, str]) -> None:
    with devstack.new_server(["conformance"], max_rows=2) as server:
        response = httpx.get(
            f"{server.rest_url}/projects", headers={**service_headers, "Prefer": "count=exact"}
        )
    assert len(response.json()) == 2
    assert response.headers["Content-Range"] == "0-1/3"


def test_read_transaction_is_read_only(api: httpx.Client) -> None:
    # GET on RPC runs read-only: a function that writes fails with 25006 → 405.
    response = api.get("/rpc/add_tasks", params={"p_project": "p1", "p_count": "1"})
    assert response.status_code == 405
    assert response.json()["code"] == "25006"
