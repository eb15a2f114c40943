"""Nothing internal is callable through the API: the functions each API role may execute in the
exposed schemas are exactly docs/SECURITY.md's list, and the REST server agrees."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.devstack import DevStack
from tests.security.conftest import Api

SECURITY_DOC = Path(__file__).resolve().parents[2] / "docs" / "SECURITY.md"
API_ROLES = ("anon", "authenticated", "service_role", "odooops_worker")
_ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|\s*([^|]+?)\s*\|$")


def documented() -> dict[str, set[str]]:
    """{role: {function signature}} from the table between the exposed-functions markers."""
    text = SECURITY_DOC.read_text(encoding="utf-8")
    block = text.split("<!-- exposed-functions:start -->", 1)[1].split("<!-- exposed-functions:end -->", 1)[0]
    listed: dict[str, set[str]] = {role: set() for role in API_ROLES}
    for line in block.splitlines():
        match = _ROW.match(line.strip())
        if match:
            for role in match.group(2).split(","):
                listed[role.strip()].add(match.group(1))
    return listed


def executable(db: psycopg.Connection[Any], schemas: list[str]) -> dict[str, set[str]]:
    rows = db.execute(
        "SELECT r.role, p.oid::regprocedure::text FROM pg_proc p"
        " JOIN pg_namespace n ON n.oid = p.pronamespace CROSS JOIN unnest(%s::text[]) AS r(role)"
        " WHERE n.nspname = ANY(%s) AND p.prokind = 'f' AND has_function_privilege(r.role, p.oid, 'EXECUTE')",
        (list(API_ROLES), schemas),
    ).fetchall()
    found: dict[str, set[str]] = {role: set() for role in API_ROLES}
    for role, signature in rows:
        found[role].add(signature)
    return found


def test_the_documented_list_is_what_the_database_grants(
    devstack: DevStack, db: psycopg.Connection[Any]
) -> None:
    listed = documented()
    assert sum(len(functions) for functions in listed.values()) > 10  # the table was parsed
    assert executable(db, devstack.db_schemas) == listed


def arguments_of(db: psycopg.Connection[Any], signature: str) -> dict[str, None]:
    row = db.execute(
        "SELECT coalesce(proargnames, '{}') FROM pg_proc WHERE oid = %s::regprocedure", (signature,)
    ).fetchone()
    assert row is not None
    return dict.fromkeys(row[0])


def functions_in_ops(db: psycopg.Connection[Any]) -> list[str]:
    rows = db.execute(
        "SELECT p.oid::regprocedure::text FROM pg_proc p WHERE p.pronamespace = 'ops'::regnamespace"
        " AND p.prokind = 'f' AND p.prorettype <> 'trigger'::regtype ORDER BY 1"
    ).fetchall()
    return [row[0] for row in rows]


@pytest.mark.parametrize("role", ["anon", "service_role"])
def test_through_the_rest_api_only_the_listed_functions_run(
    role: str, devstack: DevStack, db: psycopg.Connection[Any]
) -> None:
    """Every function of ops called over REST with null arguments: the listed ones get past the
    privilege check (anon: into the token check), every other one is refused with 42501."""
    key = devstack.anon_key if role == "anon" else devstack.service_role_key
    api = Api(devstack, key)
    listed = documented()[role]
    outcomes: dict[str, str] = {}
    for signature in functions_in_ops(db):
        name = signature.split("(", 1)[0].removeprefix("ops.")
        answer: httpx.Response = api.rpc(name, arguments_of(db, signature))
        code = answer.json().get("code") if answer.status_code >= 400 else "ok"
        outcomes[signature] = str(code)
    refused = {signature for signature, code in outcomes.items() if code == "42501"}
    assert refused == set(outcomes) - listed, outcomes
    if role == "anon":
        assert {outcomes[signature] for signature in listed} == {"PT401"}, outcomes
