"""``odooops token create|list|revoke`` as real processes, and the CLI working with a token."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.devstack import DevStack
from tests.lifecycle.helpers import new_sha, run_cli


def service_env(devstack: DevStack) -> dict[str, str]:
    return {"SUPABASE_URL": devstack.url, "SUPABASE_SERVICE_ROLE_KEY": devstack.service_role_key}


def token_env(devstack: DevStack, token: str) -> dict[str, str]:
    return {
        "SUPABASE_URL": devstack.url,
        "SUPABASE_PUBLISHABLE_KEY": devstack.publishable_key,
        "ODOOOPS_TOKEN": token,
    }


def test_create_use_list_and_revoke(devstack: DevStack, projects: tuple[str, str], tmp_path: Path) -> None:
    project = projects[0]
    created = run_cli(
        service_env(devstack),
        *("token", "create", "--project", project, "--scope", "create,read,cancel", "--env", "dev"),
        *("--expires", "30d", "--note", "org/repo CI"),
        cwd=tmp_path,
    )
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("odooops_pat_")
    assert "\n" not in token
    assert "it is not shown again" in created.stderr
    assert token not in created.stderr
    token_id = created.stderr.split("Created token ", 1)[1].split(" ", 1)[0]

    queued = run_cli(token_env(devstack, token), "create", project, "build", "main", new_sha(), cwd=tmp_path)
    assert queued.returncode == 0, queued.stderr
    run_id = queued.stdout.strip()
    cancelled = run_cli(token_env(devstack, token), "destroy", run_id, cwd=tmp_path)
    assert (cancelled.returncode, cancelled.stdout.strip()) == (0, f"cancelled:{run_id}")

    listed = run_cli(service_env(devstack), "token", "list", "--project", project, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert token_id in listed.stdout
    assert "active" in listed.stdout
    assert "env dev" in listed.stdout
    as_json = run_cli(service_env(devstack), "token", "list", "--project", project, "--json", cwd=tmp_path)
    (entry,) = json.loads(as_json.stdout)
    assert (entry["token_id"], entry["scopes"], entry["note"]) == (
        token_id,
        ["cancel", "create", "read"],
        "org/repo CI",
    )
    assert entry["last_used_at"] is not None
    for output in (listed.stdout, as_json.stdout):
        assert token not in output
        assert token.removeprefix("odooops_pat_")[:8] not in output

    revoked = run_cli(service_env(devstack), "token", "revoke", token_id, cwd=tmp_path)
    assert (revoked.returncode, revoked.stdout.strip()) == (0, f"revoked:{token_id}")
    refused = run_cli(token_env(devstack, token), "wait", run_id, cwd=tmp_path)
    assert refused.returncode == 1
    assert f"error: OdooOps token {token_id} of project {project} was revoked at " in refused.stderr
    assert token not in refused.stderr + refused.stdout


def test_the_owner_manages_tokens_over_a_direct_connection(
    devstack: DevStack, projects: tuple[str, str], tmp_path: Path
) -> None:
    owner = {"DATABASE_URL": devstack.database_url}
    created = run_cli(owner, "token", "create", "--project", projects[1], "--scope", "read", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    assert "expires 20" in created.stderr  # 90 days by default
    listed = run_cli(owner, "token", "list", "--json", cwd=tmp_path)
    assert projects[1] in {entry["project_id"] for entry in json.loads(listed.stdout)}


def test_a_token_cannot_manage_tokens(devstack: DevStack, projects: tuple[str, str], tmp_path: Path) -> None:
    created = run_cli(
        service_env(devstack), "token", "create", "--project", projects[0], "--scope", "read", cwd=tmp_path
    )
    token = created.stdout.strip()
    env = {**token_env(devstack, token), "SUPABASE_KEY": devstack.publishable_key}
    refused = run_cli(env, "token", "list", cwd=tmp_path)
    assert refused.returncode == 2
    assert "odooops token needs the service role (SUPABASE_KEY holds a publishable key" in refused.stderr
    assert token not in refused.stderr


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["create", "--project", "p", "--scope", "create,delete"], "--scope must list operations among"),
        (
            ["create", "--project", "p", "--scope", "read", "--expires", "soon"],
            "--expires must be a duration",
        ),
        (
            ["create", "--project", "p", "--scope", "read", "--expires", "2001-01-01"],
            "--expires must be in the future",
        ),
        (["create", "--project", "bad project", "--scope", "read"], "--project"),
        (["revoke", "odooops_pat_x"], "TOKEN_ID must look like tok-"),
    ],
)
def test_bad_arguments_are_refused_before_any_request(
    arguments: list[str], expected: str, tmp_path: Path
) -> None:
    # No connection at all: an argument error must come first.
    result = run_cli({}, "token", *arguments, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
