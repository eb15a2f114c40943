"""docs/TROUBLESHOOTING.md quotes the tools exactly: each case is run here against the local stack.

Every `error: ` line the CLI prints and every `::error`/`::warning`/`::notice` annotation the Action
writes in these cases must match a line of one of the guide's code blocks, where `<placeholders>`
stand for the parts that vary (run ids, hosts, times). When a message changes, this test names the
line to update.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from tests.devstack import DevStack

REPO_ROOT = Path(__file__).resolve().parents[2]
GUIDE = REPO_ROOT / "docs" / "TROUBLESHOOTING.md"
SHA = "c0ffee" + "0" * 34
UNKNOWN_RUN = "run-20250101-000000-abcdef1"
PLACEHOLDER = re.compile(r"<[A-Za-z_ ]+>")
MESSAGE = re.compile(r"^(error: |::(error|warning|notice) )")


def documented_patterns() -> list[re.Pattern[str]]:
    """One pattern per line of the guide's code blocks; `<anything>` matches any text."""
    lines: list[str] = []
    in_block = False
    for line in GUIDE.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_block = not in_block
        elif in_block and MESSAGE.match(line):
            lines.append(line)
    patterns = []
    for line in lines:
        pieces = PLACEHOLDER.split(line)
        patterns.append(re.compile(".+?".join(re.escape(piece) for piece in pieces)))
    return patterns


PATTERNS = documented_patterns()


def messages(output: str) -> list[str]:
    return [line for line in output.splitlines() if MESSAGE.match(line)]


def assert_documented(output: str) -> None:
    printed = messages(output)
    assert printed, f"the tool printed no message:\n{output}"
    for line in printed:
        assert any(pattern.fullmatch(line) for pattern in PATTERNS), (
            f"not in docs/TROUBLESHOOTING.md (update the guide):\n{line}"
        )


def cli(env: Mapping[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "odooops_action", *args],
        env={"PATH": os.environ["PATH"], "HOME": "/nonexistent", "PYTHONPATH": str(REPO_ROOT), **env},
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.stdout + done.stderr


def action(tmp_path: Path, inputs: Mapping[str, str]) -> str:
    """The entry point with the runner's environment: action.yml's defaults, then ``inputs``."""
    declared: dict[str, Any] = yaml.safe_load((REPO_ROOT / "action.yml").read_text())["inputs"]
    context = {"github.ref_name": "main", "github.sha": SHA, "github.token": "ghs_" + "t" * 36}
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "GITHUB_ACTIONS": "true",
        "GITHUB_REPOSITORY": "acme/shop",
        "GITHUB_RUN_ID": "77",
        "GITHUB_RUN_ATTEMPT": "1",
        "GITHUB_JOB": "ops",
        "GITHUB_ACTION": uuid.uuid4().hex,
        "GITHUB_WORKSPACE": str(tmp_path),
    }
    for name in ("GITHUB_OUTPUT", "GITHUB_STATE", "GITHUB_STEP_SUMMARY"):
        path = tmp_path / f"{name.lower()}-{uuid.uuid4().hex}"
        path.touch()
        env[name] = str(path)
    for name, spec in declared.items():
        default = str(spec.get("default", ""))
        for expression, value in context.items():
            default = default.replace("${{ " + expression + " }}", value)
        env[f"INPUT_{name.upper()}"] = inputs.get(name, default)
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "entrypoint.py")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.stdout


@pytest.fixture(scope="module")
def project(devstack: DevStack) -> str:
    project_id = f"guide-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(devstack.database_url, autocommit=True) as conn:
        conn.execute("insert into ops.projects (project_id, name) values (%s, 'Guide')", (project_id,))
        conn.execute("insert into ops.environments (project_id, env_id) values (%s, 'dev')", (project_id,))
    return project_id


@pytest.fixture
def rest(devstack: DevStack) -> dict[str, str]:
    return {"SUPABASE_URL": devstack.url, "SUPABASE_SERVICE_ROLE_KEY": devstack.service_role_key}


def create_run(rest: Mapping[str, str], project: str) -> str:
    """A new queued run, made with `odooops create` (which prints only its id on stdout)."""
    done = subprocess.run(
        [sys.executable, "-m", "odooops_action", "create", project, "build", "main", SHA],
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO_ROOT), **rest},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def finish(devstack: DevStack, run_id: str, *, status: str | None) -> None:
    """Claim and start ``run_id`` as worker w1; finish it with ``status`` unless None."""
    with psycopg.connect(devstack.database_url, autocommit=True) as conn:
        conn.execute("update ops.runs set status = 'claimed', claimed_by = 'w1' where run_id = %s", (run_id,))
        conn.execute("select ops.start_run(%s, 'w1')", (run_id,))
        if status is not None:
            conn.execute("select ops.finish_run(%s, 'w1', %s, 0)", (run_id, status))


def test_the_guide_has_message_blocks() -> None:
    assert len(PATTERNS) >= 15


@pytest.mark.parametrize(
    ("drop", "override"),
    [
        ("SUPABASE_URL", {}),
        ("SUPABASE_SERVICE_ROLE_KEY", {}),
        (None, {"SUPABASE_SERVICE_ROLE_KEY": "anon"}),
        (None, {"SUPABASE_SERVICE_ROLE_KEY": "publishable"}),
        (None, {"SUPABASE_SERVICE_ROLE_KEY": "sb_secret_" + "A" * 32}),
        (None, {"SUPABASE_URL": "http://127.0.0.1:9"}),
    ],
    ids=["no-url", "no-key", "anon-key", "publishable-key", "wrong-key", "unreachable"],
)
def test_configuration_and_connection_messages(
    devstack: DevStack, rest: dict[str, str], drop: str | None, override: dict[str, str]
) -> None:
    keys = {"anon": devstack.anon_key, "publishable": devstack.publishable_key}
    env = {name: keys.get(value, value) for name, value in {**rest, **override}.items() if name != drop}

    assert_documented(cli(env, "create", "shop", "build", "main", SHA))


def test_registration_and_run_id_messages(rest: dict[str, str], project: str) -> None:
    assert_documented(cli(rest, "create", f"{project}-missing", "build", "main", SHA))
    assert_documented(cli(rest, "create", project, "build", "main", SHA, "prod"))
    assert_documented(cli(rest, "wait", UNKNOWN_RUN, "5", "1"))


def test_wait_timeouts(devstack: DevStack, rest: dict[str, str], project: str, tmp_path: Path) -> None:
    queued_run = create_run(rest, project)
    connection = {"supabase_url": devstack.url, "supabase_key": devstack.service_role_key}
    assert_documented(cli(rest, "wait", queued_run, "1", "1"))
    assert_documented(
        action(tmp_path, {**connection, "mode": "wait", "run_id": queued_run, "timeout_seconds": "1"})
    )
    finish(devstack, queued_run, status=None)
    assert_documented(cli(rest, "wait", queued_run, "1", "1"))
    assert_documented(
        action(tmp_path, {**connection, "mode": "wait", "run_id": queued_run, "timeout_seconds": "1"})
    )


def test_cancel_messages(devstack: DevStack, rest: dict[str, str], project: str, tmp_path: Path) -> None:
    connection = {"supabase_url": devstack.url, "supabase_key": devstack.service_role_key}
    finished, cancelled = create_run(rest, project), create_run(rest, project)
    finish(devstack, finished, status="success")

    assert_documented(cli(rest, "destroy", finished))
    assert_documented(action(tmp_path, {**connection, "mode": "destroy", "run_id": finished}))
    action(tmp_path, {**connection, "mode": "destroy", "run_id": cancelled})
    assert_documented(action(tmp_path, {**connection, "mode": "destroy", "run_id": cancelled}))
    assert_documented(action(tmp_path, {**connection, "mode": "wait", "run_id": UNKNOWN_RUN}))


def test_action_configuration_and_connection_messages(
    devstack: DevStack, project: str, tmp_path: Path
) -> None:
    unreachable = {"supabase_url": "http://127.0.0.1:9", "supabase_key": devstack.service_role_key}
    wrong_key = {"supabase_url": devstack.url, "supabase_key": "sb_secret_" + "B" * 32}

    assert_documented(action(tmp_path, {"mode": "create", "project_id": project, "workflow_type": "build"}))
    assert_documented(action(tmp_path, {**unreachable, "mode": "destroy", "run_id": UNKNOWN_RUN}))
    assert_documented(action(tmp_path, {**wrong_key, "mode": "wait", "run_id": UNKNOWN_RUN}))


@pytest.fixture
def ops_hidden(devstack: DevStack) -> Iterator[str]:
    """A second REST server over the same database that exposes only `public`."""
    server = devstack.new_server(["public"]).start()
    try:
        yield server.url
    finally:
        server.stop()


def test_schema_not_exposed(devstack: DevStack, ops_hidden: str, tmp_path: Path) -> None:
    env = {"SUPABASE_URL": ops_hidden, "SUPABASE_SERVICE_ROLE_KEY": devstack.service_role_key}
    assert_documented(cli(env, "wait", UNKNOWN_RUN, "5", "1"))
    connection = {"supabase_url": ops_hidden, "supabase_key": devstack.service_role_key}
    assert_documented(action(tmp_path, {**connection, "mode": "wait", "run_id": UNKNOWN_RUN}))


def test_missing_migration_and_missing_grants(devstack: DevStack) -> None:
    from tests.devstack import role_jwt

    assert_documented(
        cli(
            {
                "SUPABASE_URL": devstack.url,
                "SUPABASE_SERVICE_ROLE_KEY": role_jwt("authenticated", devstack.keys.jwt_secret),
            },
            "create",
            "shop",
            "build",
            "main",
            SHA,
        )
    )
    with DevStack(migrations_dir=None) as bare:
        with bare.cluster.connect() as conn:
            conn.execute("create schema ops; grant usage on schema ops to service_role")
        env = {"SUPABASE_URL": bare.url, "SUPABASE_SERVICE_ROLE_KEY": bare.service_role_key}
        assert_documented(cli(env, "create", "shop", "build", "main", SHA))
