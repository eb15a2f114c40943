"""Schema evolution: migrations applied in order over a database holding data of the first
schema leave the data intact and give exactly the schema of a fresh install.

Generic over supabase/migrations: every later migration is held to it without changing this test.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.devstack.postgres import DEFAULT_MIGRATIONS_DIR, PostgresCluster, apply_migration, migration_files

SCHEMAS = ["ops", "ops_private"]
DATA_TABLES = ["projects", "environments", "runs", "run_events", "artifacts"]

# What the schema is made of, each as rows that must be equal between the two databases.
SCHEMA_QUERIES: dict[str, str] = {
    "schemas": "SELECT nspname, nspacl::text FROM pg_namespace WHERE nspname = ANY(%(s)s)",
    "columns": """
        SELECT c.oid::regclass::text, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid), a.attacl::text
          FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
          LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE n.nspname = ANY(%(s)s) AND a.attnum > 0 AND NOT a.attisdropped""",
    "relations": """
        SELECT c.oid::regclass::text, c.relkind, c.relrowsecurity, c.relforcerowsecurity, c.relacl::text,
               obj_description(c.oid, 'pg_class')
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ANY(%(s)s)""",
    "constraints": """
        SELECT conrelid::regclass::text, contypid::regtype::text, conname, pg_get_constraintdef(oid)
          FROM pg_constraint
         WHERE connamespace IN (SELECT oid FROM pg_namespace WHERE nspname = ANY(%(s)s))""",
    "indexes": "SELECT schemaname, indexname, indexdef FROM pg_indexes WHERE schemaname = ANY(%(s)s)",
    "functions": """
        SELECT p.oid::regprocedure::text, pg_get_function_arguments(p.oid), pg_get_function_result(p.oid),
               p.prosecdef, p.provolatile, p.proconfig::text, md5(p.prosrc), p.proacl::text,
               obj_description(p.oid, 'pg_proc')
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = ANY(%(s)s)""",
    "types": """
        SELECT t.oid::regtype::text, t.typtype, a.attname, format_type(a.atttypid, a.atttypmod)
          FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
          LEFT JOIN pg_attribute a ON a.attrelid = t.typrelid AND a.attnum > 0
         WHERE n.nspname = ANY(%(s)s) AND t.typtype IN ('c', 'd', 'e')
           AND (t.typrelid = 0 OR EXISTS (
               SELECT 1 FROM pg_class c WHERE c.oid = t.typrelid AND c.relkind = 'c'))""",
    "triggers": """
        SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid) FROM pg_trigger
         WHERE NOT tgisinternal AND tgrelid IN (
               SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = ANY(%(s)s))""",
    "policies": "SELECT schemaname, tablename, policyname, permissive, roles::text, cmd, qual, with_check"
    " FROM pg_policies WHERE schemaname = ANY(%(s)s)",
    "default_privileges": """
        SELECT pg_get_userbyid(d.defaclrole), n.nspname, d.defaclobjtype, d.defaclacl::text
          FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace
         WHERE n.nspname IS NULL OR n.nspname = ANY(%(s)s)""",
    "roles": """
        SELECT rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolbypassrls,
               rolconfig::text FROM pg_roles
         WHERE rolname IN ('anon', 'authenticated', 'service_role', 'odooops_worker')""",
    "memberships": """
        SELECT r.rolname, m.rolname FROM pg_auth_members a JOIN pg_roles r ON r.oid = a.roleid
          JOIN pg_roles m ON m.oid = a.member""",
}


def schema_of(conn: psycopg.Connection[Any]) -> dict[str, list[tuple[Any, ...]]]:
    return {
        name: sorted(conn.execute(query, {"s": SCHEMAS}).fetchall(), key=repr)
        for name, query in SCHEMA_QUERIES.items()
    }


def rows_of(conn: psycopg.Connection[Any], table: str, columns: list[str]) -> list[str]:
    selected = ", ".join(f'"{column}"' for column in columns)
    rows = conn.execute(f"SELECT json_build_array({selected})::text FROM ops.{table}").fetchall()
    return sorted(row[0] for row in rows)


def columns_of(conn: psycopg.Connection[Any], table: str) -> list[str]:
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'ops' AND table_name = %s"
        " ORDER BY ordinal_position",
        (table,),
    ).fetchall()
    return [row[0] for row in rows]


def fill_with_the_first_schema(conn: psycopg.Connection[Any]) -> None:
    """Runs in every status, events and artifacts, written through the first schema's functions."""
    conn.execute("INSERT INTO ops.projects (project_id, name) VALUES ('old-app', 'Before the upgrade')")
    for env in ("dev", "prod"):
        conn.execute("INSERT INTO ops.environments (project_id, env_id) VALUES ('old-app', %s)", (env,))
    for index, final in enumerate(["claimed", "running", "success", "failed", "cancelled", "queued"]):
        sha = f"{index:040x}"
        created = conn.execute(
            "SELECT ops.create_run('old-app', 'build', 'main', %s, 'dev', 'ci', %s, %s)",
            (sha, f"key-{index}", json.dumps({"pr": index})),
        ).fetchone()
        assert created is not None
        run_id = created[0]["run"]["run_id"]
        if final == "cancelled":
            conn.execute("SELECT ops.cancel_run(%s, 'not needed', 'tester')", (run_id,))
            continue
        if final == "queued":
            continue
        conn.execute("SELECT * FROM ops.claim_next_run('old-worker', 'old-app')")
        if final == "claimed":
            continue
        conn.execute("SELECT ops.start_run(%s, 'old-worker')", (run_id,))
        conn.execute(
            "SELECT ops.append_events(%s, %s)",
            (
                run_id,
                json.dumps(
                    [{"level": "info", "message": f"line {n}", "payload": {"n": n}} for n in range(5)]
                ),
            ),
        )
        conn.execute(
            "SELECT ops.add_artifact(%s, 'image', %s, %s, 1234)",
            (run_id, f"ghcr.io/org/app:{sha[:7]}", "sha256:" + "ab" * 32),
        )
        if final in ("success", "failed"):
            conn.execute("SELECT ops.finish_run(%s, 'old-worker', %s, 0)", (run_id, final))


@pytest.fixture(scope="module")
def clusters() -> Iterator[tuple[PostgresCluster, PostgresCluster]]:
    fresh, upgraded = PostgresCluster(None), PostgresCluster(None)
    try:
        yield fresh.start(), upgraded.start()
    finally:
        fresh.stop()
        upgraded.stop()


def test_migrations_over_existing_data_keep_it_and_equal_a_fresh_install(
    clusters: tuple[PostgresCluster, PostgresCluster],
) -> None:
    first, *later = migration_files(DEFAULT_MIGRATIONS_DIR)
    assert later, "only one migration: nothing to upgrade"
    fresh, upgraded = clusters
    with fresh.connect() as conn:
        for path in (first, *later):
            apply_migration(conn, path)
        fresh_schema = schema_of(conn)
    with upgraded.connect() as conn:
        apply_migration(conn, first)
        fill_with_the_first_schema(conn)
        before = {table: (columns_of(conn, table), None) for table in DATA_TABLES}
        data = {table: rows_of(conn, table, columns) for table, (columns, _) in before.items()}
        assert len(data["runs"]) == 6
        assert len(data["run_events"]) > 20
        assert len(data["artifacts"]) == 3
        for path in later:
            apply_migration(conn, path)
        after = {table: rows_of(conn, table, columns) for table, (columns, _) in before.items()}
        upgraded_schema = schema_of(conn)
    assert after == data
    # The snapshot sees the schema (no policies exist: RLS without policies denies by default; no
    # default privileges are set).
    empty_today = {"policies", "default_privileges"}
    assert all(fresh_schema[part] for part in SCHEMA_QUERIES if part not in empty_today), fresh_schema
    for part, rows in fresh_schema.items():
        assert upgraded_schema[part] == rows, part
