"""``odooops list | status | logs | retry | workers`` over REST and PostgreSQL, as real processes."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from odooops_action.operator.commands import EVENT_FIELDS, RUN_FIELDS, WORKER_FIELDS
from tests.lifecycle.helpers import unique_id
from tests.operator.conftest import Cli, Runs


def test_list_shows_a_projects_runs_newest_first_in_an_aligned_table(cli: Cli, runs: Runs) -> None:
    done = cli("list", "--project", runs.project_id)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["RUN", "PROJECT", "ENV", "TYPE", "REF", "STATUS", "QUEUED", "TOOK", "WORKER"]
    assert [line.split()[0] for line in lines[1:]] == [runs.queued, runs.running, runs.failed, runs.success]
    status_column = lines[0].index("STATUS")
    assert [line[status_column:].split()[0] for line in lines[1:]] == [
        "queued",
        "running",
        "failed",
        "success",
    ]
    assert "\x1b[" not in done.stdout  # not a terminal: no colour


def test_list_filters_and_json_fields(cli: Cli, runs: Runs) -> None:
    done = cli("list", "--project", runs.project_id, "--status", "failed", "--json")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert [run["run_id"] for run in answer["runs"]] == [runs.failed]
    assert list(answer["runs"][0]) == sorted(RUN_FIELDS)
    assert answer["has_more"] is False
    assert answer["next_before"] is None
    by_type = json.loads(
        cli("list", "--project", runs.project_id, "--workflow-type", "test", "--json").stdout
    )
    assert [run["run_id"] for run in by_type["runs"]] == [runs.running]
    by_env = json.loads(
        cli("list", "--project", runs.project_id, "--env", "dev", "--since", "1h", "--json").stdout
    )
    assert len(by_env["runs"]) == 4


def test_list_pages_with_limit_and_before(cli: Cli, runs: Runs) -> None:
    first = json.loads(cli("list", "--project", runs.project_id, "--limit", "3", "--json").stdout)
    assert [run["run_id"] for run in first["runs"]] == [runs.queued, runs.running, runs.failed]
    assert first["has_more"] is True
    assert first["next_before"] == runs.failed
    second = json.loads(
        cli(
            "list", "--project", runs.project_id, "--limit", "3", "--before", first["next_before"], "--json"
        ).stdout
    )
    assert [run["run_id"] for run in second["runs"]] == [runs.success]
    assert second["has_more"] is False
    human = cli("list", "--project", runs.project_id, "--limit", "3")
    assert f"--before {runs.failed}" in human.stdout.splitlines()[-1]


def test_list_with_nothing_to_show(cli: Cli) -> None:
    done = cli("list", "--project", unique_id("nothing"))
    assert done.returncode == 0
    assert done.stdout.strip() == "No runs match."
    assert json.loads(cli("list", "--project", unique_id("nothing"), "--json").stdout)["runs"] == []


def test_status_shows_facts_timeline_artifacts_and_last_events(cli: Cli, runs: Runs) -> None:
    done = cli("status", runs.success)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.splitlines()[0].split() == [runs.success, "success"]
    for fact in (
        "project:",
        runs.project_id,
        "exit code:   0",
        "Timeline",
        "Artifacts",
        "ghcr.io/o/r:abc1234",
    ):
        assert fact in out
    timeline = out.split("Timeline")[1].split("Artifacts")[0]
    assert [line.split()[3] for line in timeline.strip().splitlines()[1:]] == [
        "queued",
        "claimed",
        "running",
        "success",
    ]
    # Untrusted text is inert: the escape and the workflow command do not reach the output raw.
    assert "\x1b" not in out
    assert not any(line.startswith("::") for line in out.splitlines())
    assert "[error] ::error::not a workflow command\\x1b[31m" in out


def test_status_json(cli: Cli, runs: Runs) -> None:
    answer = json.loads(cli("status", runs.failed, "--json").stdout)
    assert answer["run"]["status"] == "failed"
    assert answer["run"]["exit_code"] == 3
    assert answer["run"]["metadata"]["k"] == 1
    assert [e["payload"]["to"] for e in answer["timeline"]] == ["queued", "claimed", "running", "failed"]
    assert all(list(e) == sorted(EVENT_FIELDS) for e in answer["events"])


def test_logs_every_event_once_in_order_with_level_and_since(cli: Cli, runs: Runs) -> None:
    everything = [json.loads(line) for line in cli("logs", runs.success, "--json").stdout.splitlines()]
    seqs = [event["seq"] for event in everything]
    assert seqs == list(range(1, len(seqs) + 1))
    warnings = [
        json.loads(line)
        for line in cli("logs", runs.success, "--level", "warn", "--json").stdout.splitlines()
    ]
    assert [e["message"] for e in warnings] == ["warn line", "::error::not a workflow command\x1b[31m"]
    later = [
        json.loads(line)["seq"]
        for line in cli("logs", runs.success, "--since", "4", "--json").stdout.splitlines()
    ]
    assert later == seqs[4:]
    human = cli("logs", runs.success, "--level", "error")
    assert human.stdout.splitlines()[0].endswith("[error] ::error::not a workflow command\\x1b[31m")


def test_logs_follow_exits_with_the_runs_verdict(cli: Cli, runs: Runs) -> None:
    succeeded = cli("logs", runs.success, "--follow")
    assert succeeded.returncode == 0
    assert "info line" in succeeded.stdout
    failed = cli("logs", runs.failed, "--follow")
    assert failed.returncode == 1
    assert "Run failed" in failed.stdout


def test_retry_queues_a_linked_copy_and_refuses_an_active_run(
    cli: Cli, runs: Runs, db: psycopg.Connection[Any]
) -> None:
    done = cli("retry", runs.failed)
    assert done.returncode == 0, done.stderr
    new_id = done.stdout.strip()
    assert new_id != runs.failed
    assert f"queued as a retry of {runs.failed}" in done.stderr
    original, retried = (
        db.execute(
            "SELECT project_id, env_id, workflow_type, git_ref, git_sha, metadata, status FROM ops.runs "
            "WHERE run_id = %s",
            (run_id,),
        ).fetchone()
        for run_id in (runs.failed, new_id)
    )
    assert original is not None
    assert retried is not None
    assert retried[:5] == original[:5]
    assert retried[5]["retry_of"] == runs.failed
    assert retried[5]["k"] == 1
    assert retried[6] == "queued"
    refused = cli("retry", runs.running)
    assert refused.returncode == 1
    assert f"run {runs.running} is running: only a finished run can be retried" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_workers_lists_registered_workers(cli: Cli, db: psycopg.Connection[Any]) -> None:
    worker_id = unique_id("w")
    db.execute(
        "SELECT ops.worker_beat(worker_id => %s, state => 'busy', current_run_id => "
        "'run-20260101-000000-abcdef0', "
        "host => 'build-7', filters => '{\"project_id\": \"p1\"}'::jsonb)",
        (worker_id,),
    )
    try:
        human = cli("workers")
        assert human.returncode == 0
        row = next(line for line in human.stdout.splitlines() if line.startswith(worker_id))
        assert row.split()[:3] == [worker_id, "build-7", "busy"]
        assert "project_id=p1" in row
        listed = json.loads(cli("workers", "--json").stdout)["workers"]
        mine = next(w for w in listed if w["worker_id"] == worker_id)
        assert list(mine) == sorted(WORKER_FIELDS)
        assert mine["current_run_id"] == "run-20260101-000000-abcdef0"
    finally:
        db.execute("DELETE FROM ops.workers WHERE worker_id = %s", (worker_id,))


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["status", "run-1"], "run_id must look like"),
        (["logs", "run-20260101-000000-abcdef0", "--level", "loud"], "--level must be one of"),
        (["logs", "run-20260101-000000-abcdef0", "--since", "-3"], "--since must be a whole number"),
        (["list", "--since", "2 fortnights"], "--since must be a positive duration"),
        (["list", "--status", "done"], "--status must be one of"),
        (["list", "--workflow-type", "lint"], "--workflow-type must be one of"),
        (["list", "--limit", "0"], "--limit must be between 1 and 1000"),
        (["list", "--project", "bad id"], "--project must be 1 to 100 characters"),
        (["retry", "nope"], "run_id must look like"),
        (["workers", "--seen-within", "soon"], "--seen-within must be a positive duration"),
        (["doctor", "--lease", "x"], "--lease must be a whole number"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_before_any_request(cli: Cli, args: list[str], named: str) -> None:
    # An unreachable server: any request would fail differently (and slowly).
    unreachable = Cli(
        cli.transport,
        {"SUPABASE_URL": "http://127.0.0.1:9", "SUPABASE_SERVICE_ROLE_KEY": "sb_secret_x"},
        cli.cwd,
    )
    done = unreachable(*args)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert done.stderr.startswith("error: ")
    assert named in done.stderr


def test_unknown_run_is_one_line_exit_1(cli: Cli) -> None:
    for command in ("status", "retry", "logs"):
        done = cli(command, "run-20000101-000000-abcdef0")
        assert done.returncode == 1
        assert "run run-20000101-000000-abcdef0 not found" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
