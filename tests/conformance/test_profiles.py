"""Schema selection (Accept-Profile / Content-Profile), schema cache errors and reloads."""

from __future__ import annotations

import time
from typing import Any

import httpx
import psycopg

from tests.devstack import DevStack, RestServer


def auth_headers(devstack: DevStack) -> dict[str, str]:
    key = devstack.service_role_key
    return {"apikey": key, "Authorization": f"Bearer {key}"}


def test_without_profile_the_first_schema_is_used(bare: httpx.Client, devstack: DevStack) -> None:
    response = bare.get("/projects", headers=auth_headers(devstack))
    assert response.status_code == 404
    body = response.json()
    assert body["code"] == "PGRST205"
    assert body["message"] == "Could not find the table 'public.projects' in the schema cache"


def test_unknown_accept_profile_is_pgrst106(bare: httpx.Client, devstack: DevStack) -> None:
    response = bare.get("/projects", headers={**auth_headers(devstack), "Accept-Profile": "ops_missing"})
    assert response.status_code == 406
    body = response.json()
    assert body["code"] == "PGRST106"
    assert "public, conformance, conformance_alt" in body["message"]


def test_unknown_content_profile_is_pgrst106_for_writes(bare: httpx.Client, devstack: DevStack) -> None:
    response = bare.post(
        "/rpc/whoami", json={}, headers={**auth_headers(devstack), "Content-Profile": "ops_missing"}
    )
    assert response.status_code == 406
    assert response.json()["code"] == "PGRST106"


def test_accept_profile_is_ignored_for_writes(bare: httpx.Client, devstack: DevStack) -> None:
    # A POST reads Content-Profile only: with just Accept-Profile it targets the default schema.
    response = bare.post(
        "/projects",
        json={"project_id": "x", "name": "x"},
        headers={**auth_headers(devstack), "Accept-Profile": "conformance"},
    )
    assert response.status_code == 404
    assert response.json()["code"] == "PGRST205"


def test_profiles_switch_between_schemas(bare: httpx.Client, devstack: DevStack) -> None:
    main = bare.get("/projects", headers={**auth_headers(devstack), "Accept-Profile": "conformance"})
    alt = bare.get("/projects", headers={**auth_headers(devstack), "Accept-Profile": "conformance_alt"})
    assert {p["project_id"] for p in main.json()} == {"p1", "p2", "p3"}
    assert alt.json() == [{"project_id": "alt-1", "name": "From the other schema"}]
    assert alt.headers["Content-Profile"] == "conformance_alt"


def test_missing_function_is_pgrst202(api: httpx.Client) -> None:
    response = api.post("/rpc/no_such_function", json={"a": 1})
    assert response.status_code == 404
    assert response.json()["code"] == "PGRST202"


def test_wrong_argument_names_are_pgrst202_with_a_hint(api: httpx.Client) -> None:
    response = api.post("/rpc/list_tasks", json={"project": "p1"})
    assert response.status_code == 404
    body = response.json()
    assert body["code"] == "PGRST202"
    assert "list_tasks(project)" in body["message"]
    assert "p_project" in body["hint"]


def test_missing_required_argument_is_pgrst202(api: httpx.Client) -> None:
    response = api.post("/rpc/count_tasks", json={"p_only_done": True})
    assert response.status_code == 404
    assert response.json()["code"] == "PGRST202"


def test_a_schema_not_exposed_is_pgrst106_even_if_it_exists(devstack: DevStack) -> None:
    with devstack.new_server(["public"]) as server:
        response = httpx.get(
            f"{server.rest_url}/projects",
            headers={**auth_headers(devstack), "Accept-Profile": "conformance"},
        )
    assert response.status_code == 406
    assert response.json()["code"] == "PGRST106"


def _wait_for_status(client: httpx.Client, path: str, status: int, timeout: float = 5.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(path)
        if response.status_code == status or time.monotonic() > deadline:
            return response
        time.sleep(0.05)


def test_notify_pgrst_reloads_the_schema_cache(
    api: httpx.Client, db: psycopg.Connection[Any], conformance_server: RestServer
) -> None:
    db.execute("DROP TABLE IF EXISTS conformance.late_table")
    conformance_server.reload_schema()
    assert api.get("/late_table").json()["code"] == "PGRST205"
    db.execute("CREATE TABLE conformance.late_table (id int PRIMARY KEY)")
    db.execute("GRANT ALL ON conformance.late_table TO service_role")
    db.execute("INSERT INTO conformance.late_table VALUES (7)")
    db.execute("NOTIFY pgrst, 'reload schema'")
    response = _wait_for_status(api, "/late_table", 200)
    assert response.json() == [{"id": 7}]
    db.execute("DROP TABLE conformance.late_table")
    conformance_server.reload_schema()
