"""``odooops selftest`` against the local stack (REST and PostgreSQL) and against broken ones.

After it — passed, failed or interrupted — the database holds exactly what it held before.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from odooops_action.store.operations import OperationStore
from tests.devstack import DevStack
from tests.devstack.postgres import DEFAULT_MIGRATIONS_DIR
from tests.lifecycle.helpers import cli_command, cli_environment
from tests.operator.conftest import Cli, connection_env

# Whole stacks of their own and processes waiting out retries: not the fast tier.
pytestmark = pytest.mark.slow

TABLES = ("projects", "environments", "runs", "run_events", "artifacts", "workers")


def snapshot(db: psycopg.Connection[Any]) -> dict[str, tuple[int, str]]:
    """Row count and a digest of every row of every ops table."""
    state = {}
    for table in TABLES:
        row = db.execute(
            "SELECT count(*), coalesce(md5(string_agg(t::text, ',' ORDER BY t::text)), '') FROM "
            f"ops.{table} t"
        ).fetchone()
        assert row is not None
        state[table] = (row[0], row[1])
    return state


def seed_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("[")]


def test_selftest_passes_and_leaves_the_database_as_it_found_it(
    cli: Cli, db: psycopg.Connection[Any]
) -> None:
    before = snapshot(db)
    done = cli("selftest")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = seed_lines(done.stdout)
    tests = [line for line in lines if line.startswith("[TEST]")]
    assert [line.split(":")[0] for line in tests] == [f"[TEST] Test {n}" for n in range(1, 19)]
    assert tests[0] == "[TEST] Test 1: Create test project in ops.projects"
    assert tests[11] == "[TEST] Test 12: Create run, mark as failed, verify wait_ready detects it"
    seed_part = lines[: lines.index(tests[12])]
    assert sum(1 for line in seed_part if line.startswith("[PASS]")) == 14  # the seed's 14 assertions
    assert not any(line.startswith("[FAIL]") for line in lines)
    # Over PostgreSQL the anon key and token checks (REST only) are skipped; over REST the token
    # check runs where the store manages scoped tokens.
    tokens = hasattr(OperationStore, "manage_tokens")
    skipped = 2 if cli.transport == "postgres" else 0 if tokens else 1
    assert f"PASSED: {14 + 6 - skipped}" in done.stdout  # the seed's 14, then 6 own checks
    assert (f"SKIPPED: {skipped}" in done.stdout) == (skipped > 0)
    assert "FAILED: 0" in done.stdout
    assert done.stdout.rstrip().endswith("All tests passed!")
    assert re.fullmatch(r"Cleanup: removed project selftest-\S+ and its \d+ run\(s\)\.\n", done.stderr)
    assert snapshot(db) == before


def test_selftest_json_report(cli: Cli, db: psycopg.Connection[Any]) -> None:
    before = snapshot(db)
    done = cli("selftest", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["failed"] == 0
    assert report["transport"] == cli.transport
    assert [test["number"] for test in report["tests"]] == list(range(1, 19))
    assert report["tests"][10]["results"] == [
        {"outcome": "pass", "message": report["tests"][10]["results"][0]["message"]},
        {"outcome": "pass", "message": "Run status confirmed as cancelled"},
    ]
    assert snapshot(db) == before


def test_keep_leaves_the_selftest_project_and_says_how_to_remove_it(
    devstack: DevStack, tmp_path: Path, db: psycopg.Connection[Any]
) -> None:
    cli = Cli("postgres", connection_env(devstack, "postgres"), tmp_path)
    done = cli("selftest", "--keep", "--json")
    assert done.returncode == 0
    project = json.loads(done.stdout)["project_id"]
    assert "SELECT ops.delete_selftest_project(" in done.stderr
    removal = done.stderr.split("Remove them with: ")[1].strip()
    try:
        runs = db.execute("SELECT count(*) FROM ops.runs WHERE project_id = %s", (project,)).fetchone()
        assert runs is not None
        assert runs[0] > 5
        # Another nonce cannot remove it; the printed statement can.
        with pytest.raises(psycopg.Error, match="not created by this odooops selftest"):
            db.execute("SELECT ops.delete_selftest_project(%s, 'guess')", (project,))
        db.execute(removal)
        assert db.execute("SELECT 1 FROM ops.projects WHERE project_id = %s", (project,)).fetchone() is None
    finally:
        db.execute("DELETE FROM ops.projects WHERE project_id = %s", (project,))


def test_selftest_never_removes_a_project_it_did_not_create(db: psycopg.Connection[Any]) -> None:
    db.execute("INSERT INTO ops.projects (project_id) VALUES ('not-a-selftest')")
    try:
        with pytest.raises(psycopg.Error, match="not created by this odooops selftest"):
            db.execute("SELECT ops.delete_selftest_project('not-a-selftest', NULL)")
    finally:
        db.execute("DELETE FROM ops.projects WHERE project_id = 'not-a-selftest'")


def test_a_real_worker_cannot_claim_the_selftests_runs(db: psycopg.Connection[Any]) -> None:
    db.execute("SELECT ops.create_project('st-reserved')")
    try:
        db.execute("SELECT ops.create_environment('st-reserved', 'dev')")
        db.execute(
            "SELECT ops.create_run('st-reserved', 'build', 'main', repeat('a', 40), "
            'metadata => \'{"selftest_worker": "selftest-worker-1"}\')'
        )
        other = db.execute("SELECT count(*) FROM ops.claim_next_run('worker-prod', 'st-reserved')").fetchone()
        assert other == (0,)
        mine = db.execute(
            "SELECT status FROM ops.claim_next_run('selftest-worker-1', 'st-reserved')"
        ).fetchone()
        assert mine == ("claimed",)
    finally:
        db.execute("DELETE FROM ops.projects WHERE project_id = 'st-reserved'")


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_selftest_interrupted_cleans_up(
    devstack: DevStack, tmp_path: Path, db: psycopg.Connection[Any], stop: signal.Signals
) -> None:
    before = snapshot(db)
    env = cli_environment(connection_env(devstack, "rest"))
    with subprocess.Popen(
        cli_command("selftest"),
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("[TEST] Test 6:"):
                process.send_signal(stop)
                break
        rest, _ = process.communicate(timeout=60)
    lines += rest.splitlines()
    assert process.returncode == 1
    assert f"[FAIL] interrupted by {stop.name}; the selftest's data was removed" in lines
    assert snapshot(db) == before


# -- broken deployments: the first [FAIL] names the cause -------------------------------------------


def first_failure(done_stdout: str) -> str:
    return next(line for line in done_stdout.splitlines() if line.startswith("[FAIL]"))


@pytest.fixture(scope="module")
def core_only_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    """A deployment whose migrations stop at the core schema (no operator functions)."""
    migrations = tmp_path_factory.mktemp("core-only")
    shutil.copy(sorted(DEFAULT_MIGRATIONS_DIR.glob("*.sql"))[0], migrations)
    with DevStack(migrations_dir=migrations) as stack:
        yield stack


@pytest.mark.parametrize("transport", ["rest", "postgres"])
def test_selftest_on_a_missing_migration(core_only_stack: DevStack, tmp_path: Path, transport: str) -> None:
    done = Cli(transport, connection_env(core_only_stack, transport), tmp_path)("selftest")
    assert done.returncode == 1
    assert seed_lines(done.stdout)[0] == "[TEST] Test 1: Create test project in ops.projects"
    failure = first_failure(done.stdout)
    assert "create_project" in failure
    assert "migration" in failure
    assert "FAILED: 1" in done.stdout


def test_selftest_when_ops_is_not_exposed(devstack: DevStack, tmp_path: Path) -> None:
    with devstack.new_server(["public"]).start() as hidden:
        env = connection_env(devstack, "rest") | {"SUPABASE_URL": hidden.url}
        done = Cli("rest", env, tmp_path)("selftest")
    assert done.returncode == 1
    assert "Schema ops is not exposed" in first_failure(done.stdout)
    assert "PGRST106" in first_failure(done.stdout)


def test_selftest_with_the_anon_key(devstack: DevStack, tmp_path: Path) -> None:
    env = {"SUPABASE_URL": devstack.url, "SUPABASE_SERVICE_ROLE_KEY": devstack.anon_key}
    done = Cli("rest", env, tmp_path)("selftest")
    assert done.returncode == 1
    assert seed_lines(done.stdout)[0].startswith("[TEST] Test 1:")
    assert "anon (public) key" in first_failure(done.stdout)


def test_selftest_with_an_unreachable_url(tmp_path: Path) -> None:
    env = {"SUPABASE_URL": "http://127.0.0.1:9", "SUPABASE_SERVICE_ROLE_KEY": "sb_secret_abcdefghijklmnop"}
    done = Cli("rest", env, tmp_path)("selftest")
    assert done.returncode == 1
    failure = first_failure(done.stdout)
    assert "127.0.0.1:9" in failure
    assert "unavailable" in failure or "Cannot send" in failure
