"""The stack itself: keys, the PostgreSQL cluster lifecycle, restarts, and ``python -m tests.devstack``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.devstack import DevStack, PostgresCluster, RestServer, decode_jwt, role_jwt
from tests.devstack.keys import JwtError
from tests.devstack.postgres import REPO_ROOT
from tests.devstack.restserver import content_range, pg_error_status


def test_role_jwt_round_trips_with_supabase_claims() -> None:
    claims = decode_jwt(role_jwt("anon", "s" * 40), "s" * 40)
    assert claims["role"] == "anon"
    assert claims["iss"] == "supabase"
    assert claims["exp"] > claims["iat"]


def test_tampered_jwt_is_rejected() -> None:
    header, payload, signature = role_jwt("anon").split(".")
    forged = role_jwt("service_role").split(".")[1]
    with pytest.raises(JwtError) as caught:
        decode_jwt(f"{header}.{forged}.{signature}")
    assert caught.value.code == "PGRST301"
    assert payload != forged


def test_opaque_keys_have_supabase_prefixes(devstack: DevStack) -> None:
    assert devstack.secret_key.startswith("sb_secret_")
    assert devstack.publishable_key.startswith("sb_publishable_")
    assert devstack.keys.opaque_roles()[devstack.secret_key] == "service_role"


@pytest.mark.parametrize(
    ("sqlstate", "authenticated", "status"),
    [
        ("23505", False, 409),
        ("23503", False, 409),
        ("23514", False, 400),
        ("23502", False, 400),
        ("22P02", False, 400),
        ("22023", False, 400),
        ("P0001", False, 400),
        ("42501", False, 401),
        ("42501", True, 403),
        ("42P01", False, 404),
        ("42883", False, 404),
        ("25006", False, 405),
        ("57014", False, 500),
        ("08006", False, 503),
        ("53300", False, 503),
        ("40001", False, 500),
        ("PT404", False, 404),
        ("PT409", False, 409),
        ("XX000", False, 500),
    ],
)
def test_sqlstate_to_http_status(sqlstate: str, authenticated: bool, status: int) -> None:
    assert pg_error_status(sqlstate, authenticated) == status


def test_content_range_format() -> None:
    assert content_range(0, 25, 3573) == "0-24/3573"
    assert content_range(0, 0, 0) == "*/0"
    assert content_range(10, 0, None) == "*/*"


def test_roles_are_bootstrapped_like_supabase(devstack: DevStack) -> None:
    with psycopg.connect(devstack.database_url) as conn:
        rows = conn.execute(
            "SELECT rolname, rolcanlogin, rolinherit, rolbypassrls FROM pg_roles"
            " WHERE rolname IN ('anon', 'authenticated', 'service_role', 'authenticator') ORDER BY rolname"
        ).fetchall()
        members = conn.execute(
            "SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid"
            " JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = 'authenticator' ORDER BY 1"
        ).fetchall()
    assert rows == [
        ("anon", False, False, False),
        ("authenticated", False, False, False),
        ("authenticator", True, False, False),
        ("service_role", False, False, True),
    ]
    assert [m[0] for m in members] == ["anon", "authenticated", "service_role"]


def test_migrations_apply_in_name_order_and_stop_cleans_up(tmp_path: Path) -> None:
    (tmp_path / "20240102_second.sql").write_text("INSERT INTO public.trail VALUES ('second');")
    (tmp_path / "20240101_first.sql").write_text("CREATE TABLE public.trail (step text);")
    (tmp_path / "README.md").write_text("not a migration")
    cluster = PostgresCluster(tmp_path)
    with cluster:
        base_dir = cluster.base_dir
        with cluster.connect() as conn:
            assert conn.execute("SELECT step FROM public.trail").fetchall() == [("second",)]
        assert cluster.applied_migrations == ["20240101_first.sql", "20240102_second.sql"]
        process_count = _postgres_processes(base_dir)
        assert process_count >= 1
    assert not base_dir.exists()
    assert _postgres_processes(base_dir) == 0


def _postgres_processes(data_path: Path) -> int:
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    return sum(1 for line in out.splitlines() if str(data_path) in line)


def test_rest_server_survives_a_database_restart(devstack: DevStack, conformance_server: RestServer) -> None:
    key = devstack.service_role_key
    headers = {"apikey": key, "Authorization": f"Bearer {key}", "Accept-Profile": "conformance"}
    url = f"{conformance_server.rest_url}/projects"
    assert httpx.get(url, headers=headers).status_code == 200
    devstack.cluster.restart()
    response = httpx.get(url, headers=headers)
    assert response.status_code == 200
    assert len(response.json()) == 3


def test_rest_server_answers_503_while_the_database_is_down(devstack: DevStack) -> None:
    key = devstack.service_role_key
    headers = {"apikey": key, "Authorization": f"Bearer {key}"}
    cluster = PostgresCluster(None)
    with cluster:
        with cluster.connect() as conn:
            conn.execute("CREATE TABLE public.things (id int)")
        with RestServer(cluster.dsn("authenticator"), db_schemas=["public"], keys=devstack.keys) as server:
            cluster.halt()
            down = httpx.get(f"{server.rest_url}/things", headers=headers)
            cluster.start()
            up = httpx.get(f"{server.rest_url}/things", headers=headers)
    assert down.status_code == 503
    assert down.json()["code"] == "PGRST001"
    assert "Retry-After" in down.headers
    assert up.status_code == 200


def test_module_entry_point_writes_and_removes_the_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / "stack.env"
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.devstack", "--env-file", str(env_file)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 30
        while not env_file.exists() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.1)
        env = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
        assert env["SUPABASE_SECRET_KEY"].startswith("sb_secret_")
        response = httpx.get(
            f"{env['SUPABASE_URL']}/rest/v1/",
            headers={"apikey": env["SUPABASE_ANON_KEY"]},
        )
        assert response.status_code == 200
        with psycopg.connect(env["DATABASE_URL"]) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=30)[0].decode()
    assert process.returncode == 0, output
    assert not env_file.exists()
    assert "devstack stopped" in output
