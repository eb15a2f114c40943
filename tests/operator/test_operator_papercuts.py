"""What a newcomer tripped over following the README (issue 11, item 6): the CLI, the schema and
the README, each pinned. (The Action's side is in tests/action/test_action_papercuts.py.)"""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.devstack import DevStack
from tests.devstack.postgres import DEFAULT_MIGRATIONS_DIR
from tests.lifecycle.helpers import REPO_ROOT, cli_environment, new_sha, run_cli, unique_id

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
UTC_TEXT = r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC"


@pytest.fixture
def project(db: psycopg.Connection[Any]) -> Any:
    project_id = unique_id("pc")
    db.execute("SELECT ops.create_project(%s)", (project_id,))
    db.execute("SELECT ops.create_environment(%s, 'dev')", (project_id,))
    yield project_id
    db.execute("DELETE FROM ops.projects WHERE project_id = %s", (project_id,))


def queue(db: psycopg.Connection[Any], project: str) -> str:
    row = db.execute(
        "SELECT ops.create_run(%s, 'build', 'main', %s) -> 'run' ->> 'run_id'", (project, new_sha())
    )
    found = row.fetchone()
    assert found is not None
    return str(found[0])


def test_the_workers_default_command_names_the_sample(devstack: DevStack, tmp_path: Path) -> None:
    env = cli_environment({"DATABASE_URL": devstack.database_url})
    done = subprocess.run(
        [sys.executable, "-m", "odooops_action", "worker", "--once"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "--command ./scripts/odooops/execute_run.sh is not an executable file" in done.stderr
    assert "the repository's sample is examples/execute_run.sh" in done.stderr
    assert (REPO_ROOT / "examples" / "execute_run.sh").is_file()
    assert "odooops worker --command ./examples/execute_run.sh" in README


def test_readme_step_1_says_the_local_stack_has_applied_the_schema(db: psycopg.Connection[Any]) -> None:
    """Applying the first migration again fails as the README says it does."""
    first = sorted(DEFAULT_MIGRATIONS_DIR.glob("*.sql"))[0].read_text()
    with pytest.raises(psycopg.Error) as failure, db.transaction():
        db.execute(first)
    quoted = re.search(r"fails with `([^`]+)`", README)
    assert quoted is not None
    assert quoted.group(1) in str(failure.value)
    step_1 = README.split("## Set up your Supabase project once")[1].split("2. ")[0]
    assert "`make stack`" in step_1
    assert "already applied" in step_1


def test_readme_lists_every_key_of_devstack_env(devstack: DevStack) -> None:
    sentence = README.split("writes `.devstack.env` (")[1].split(")")[0]
    listed = set(re.findall(r"`([A-Z_]+)`", sentence))
    assert listed == set(devstack.env())


def test_a_run_ids_second_is_its_queue_times_second(db: psycopg.Connection[Any], project: str) -> None:
    run_id = queue(db, project)
    for candidate in (run_id,):
        row = db.execute(
            "SELECT to_char(queued_at AT TIME ZONE 'UTC', 'YYYYMMDD-HH24MISS') FROM ops.runs WHERE run_id "
            "= %s",
            (candidate,),
        ).fetchone()
        assert row is not None
        assert candidate[4:19] == row[0]
    sha = new_sha()
    future = datetime.now(UTC).replace(microsecond=0).timestamp() + 1
    future_id = "run-" + datetime.fromtimestamp(future, UTC).strftime("%Y%m%d-%H%M%S") + "-" + sha[:7]
    with db.transaction():  # one transaction: now() stays before the id's second
        db.execute(
            "INSERT INTO ops.runs (run_id, project_id, env_id, workflow_type, git_sha, git_ref) "
            "VALUES (%s, %s, 'dev', 'build', %s, 'main')",
            (future_id, project, sha),
        )
        row = db.execute(
            "SELECT to_char(queued_at AT TIME ZONE 'UTC', 'YYYYMMDD-HH24MISS'), queued_at >= now() "
            "FROM ops.runs WHERE run_id = %s",
            (future_id,),
        ).fetchone()
    assert row == (future_id[4:19], True)


def test_wait_shows_the_claimed_event_before_status_running(
    db: psycopg.Connection[Any], project: str, devstack: DevStack, tmp_path: Path
) -> None:
    run_id = queue(db, project)
    db.execute("SELECT ops.claim_next_run('w-pc', %s)", (project,))
    db.execute("SELECT ops.start_run(%s, 'w-pc')", (run_id,))
    db.execute("SELECT ops.finish_run(%s, 'w-pc', 'failed', 3, 'the command exited with code 3')", (run_id,))
    done = run_cli({"DATABASE_URL": devstack.database_url}, "wait", run_id, "10", "1", cwd=tmp_path)
    lines = done.stderr.splitlines()
    claimed = next(i for i, line in enumerate(lines) if "claimed run" in line)
    started = next(i for i, line in enumerate(lines) if "Run started" in line)
    assert claimed < started
    assert not any(line.startswith("Status: running") for line in lines[:claimed])
    # One statement of the exit code, one timestamp format.
    assert lines[-1].startswith(f"error: run {run_id} failed (the command exited with code 3).")


def test_running_status_line_follows_its_events(
    db: psycopg.Connection[Any], project: str, devstack: DevStack, tmp_path: Path
) -> None:
    run_id = queue(db, project)
    db.execute("SELECT ops.claim_next_run('w-pc2', %s)", (project,))
    db.execute("SELECT ops.start_run(%s, 'w-pc2')", (run_id,))
    done = run_cli({"DATABASE_URL": devstack.database_url}, "wait", run_id, "1", "0.5", cwd=tmp_path)
    lines = done.stderr.splitlines()
    status = next(i for i, line in enumerate(lines) if line.startswith("Status: running"))
    started = next(i for i, line in enumerate(lines) if "Run started" in line)
    assert started < status
    db.execute("SELECT ops.cancel_run(%s)", (run_id,))


def test_messages_use_one_timestamp_format(
    db: psycopg.Connection[Any], project: str, devstack: DevStack, tmp_path: Path
) -> None:
    run_id = queue(db, project)
    db.execute("SELECT ops.cancel_run(%s)", (run_id,))
    env = {"DATABASE_URL": devstack.database_url}
    again = run_cli(env, "destroy", run_id, cwd=tmp_path)
    assert re.search(rf"was already cancelled at {UTC_TEXT}; nothing to do", again.stderr), again.stderr
    waited = run_cli(env, "wait", run_id, "5", "1", cwd=tmp_path)
    assert re.search(rf"was cancelled \(by [^)]*\) at {UTC_TEXT}\.$", waited.stderr.strip()), waited.stderr
    assert "+00:00" not in again.stderr + waited.stderr
