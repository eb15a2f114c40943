"""Input validation: every problem named by its input, reported before any side effect.

These run ``main(environ)`` in-process with the environment the runner would build; the server
URL points at a closed port, so any request that slipped through would fail differently.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from action_harness import FakeGitHub, Workspace, input_env_name, load_manifest

from odooops_action.action.main import main
from odooops_action.action.settings import (
    INPUT_NAMES,
    ActionSettings,
    InvalidInputsError,
    derived_idempotency_key,
    parse_boolean,
    parse_levels,
)
from odooops_action.errors import InputError

CLOSED_PORT_URL = "http://127.0.0.1:9"
SERVICE_KEY = "sb_secret_" + "x" * 32
RUN_ID = "run-20260101-120000-abcdef0"


def run_main(
    workspace: Workspace, inputs: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, dict[str, str]]:
    env = workspace.environment({"supabase_url": CLOSED_PORT_URL, "supabase_key": SERVICE_KEY, **inputs})
    exit_code = main(env)
    out = capsys.readouterr().out
    written = {
        name: Path(env[name]).read_text() for name in ("GITHUB_OUTPUT", "GITHUB_STATE", "GITHUB_STEP_SUMMARY")
    }
    return exit_code, out, written


def errors_in(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("::error")]


def assert_no_side_effect(written: dict[str, str]) -> None:
    assert written == {"GITHUB_OUTPUT": "", "GITHUB_STATE": "", "GITHUB_STEP_SUMMARY": ""}


def test_input_names_match_action_yml() -> None:
    assert tuple(load_manifest()["inputs"]) == INPUT_NAMES


def test_missing_mode_is_reported_by_name(workspace: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    exit_code, out, written = run_main(workspace, {}, capsys)

    assert exit_code == 2
    (error,) = errors_in(out)
    assert "mode (INPUT_MODE) is required" in error
    assert "create, wait, destroy" in error
    assert_no_side_effect(written)


def test_create_reports_every_missing_input_at_once(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    exit_code, out, written = run_main(workspace, {"mode": "create"}, capsys)

    assert exit_code == 2
    errors = "\n".join(errors_in(out))
    assert "project_id (INPUT_PROJECT_ID) is required in mode create" in errors
    assert "workflow_type (INPUT_WORKFLOW_TYPE) is required in mode create" in errors
    assert len(errors_in(out)) == 2  # git_ref and commit_sha came from the github context defaults
    assert_no_side_effect(written)


@pytest.mark.parametrize("mode", ["wait", "destroy"])
def test_run_id_is_required_to_wait_or_destroy(
    workspace: Workspace, capsys: pytest.CaptureFixture[str], mode: str
) -> None:
    exit_code, out, written = run_main(workspace, {"mode": mode}, capsys)

    assert exit_code == 2
    (error,) = errors_in(out)
    assert f"run_id (INPUT_RUN_ID) is required in mode {mode}" in error
    assert_no_side_effect(written)


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        ({"commit_sha": "abc123"}, "commit_sha (INPUT_COMMIT_SHA) must be the full 40-character commit SHA"),
        ({"commit_sha": "z" * 40}, "commit_sha (INPUT_COMMIT_SHA) must be a hexadecimal commit SHA"),
        (
            {"workflow_type": "release"},
            "workflow_type (INPUT_WORKFLOW_TYPE) must be one of build, deploy, test",
        ),
        ({"timeout_seconds": "20m"}, "timeout_seconds (INPUT_TIMEOUT_SECONDS) must be a number of seconds"),
        ({"timeout_seconds": "-5"}, "timeout_seconds (INPUT_TIMEOUT_SECONDS) must be a positive number"),
        (
            {"poll_interval_seconds": "nan"},
            "poll_interval_seconds (INPUT_POLL_INTERVAL_SECONDS) must be a positive",
        ),
        (
            {"poll_interval_seconds": "0.01"},
            "poll_interval_seconds (INPUT_POLL_INTERVAL_SECONDS) must be at least 0.2 seconds",
        ),
        ({"wait": "yes"}, "wait (INPUT_WAIT) must be true or false"),
        ({"cancel_on_abort": "1"}, "cancel_on_abort (INPUT_CANCEL_ON_ABORT) must be true or false"),
        ({"check_run": "tRuE"}, "check_run (INPUT_CHECK_RUN) must be true or false"),
        ({"annotate_levels": "warn,fatal"}, "annotate_levels (INPUT_ANNOTATE_LEVELS) must list event levels"),
        ({"metadata": "{pr: 42}"}, "metadata (INPUT_METADATA) must be a JSON object"),
        (
            {"metadata": "[1, 2]"},
            'metadata (INPUT_METADATA) must be a JSON object such as {"pr": 42}, got a JSON list',
        ),
        ({"env_id": "-prod"}, "env_id (INPUT_ENV_ID) must be 1 to 63 characters"),
        ({"project_id": "a b"}, "project_id (INPUT_PROJECT_ID) must be 1 to 100 characters"),
        ({"mode": "deploy"}, "mode (INPUT_MODE) must be one of create, wait, destroy"),
        (
            {"supabase_url": "ftp://example.com"},
            "supabase_url (INPUT_SUPABASE_URL): SUPABASE_URL must start with https://",
        ),
        ({"supabase_key": "sb_publishable_abc"}, "supabase_key (INPUT_SUPABASE_KEY) holds a publishable key"),
        (
            {"github_token": "", "check_run": "true"},
            "github_token (INPUT_GITHUB_TOKEN) is empty but check_run",
        ),
    ],
)
def test_bad_input_is_refused_with_its_name(
    workspace: Workspace, capsys: pytest.CaptureFixture[str], inputs: dict[str, str], expected: str
) -> None:
    base = {"mode": "create", "project_id": "shop", "workflow_type": "build"}
    exit_code, out, written = run_main(workspace, {**base, **inputs}, capsys)

    assert exit_code == 2
    errors = errors_in(out)
    assert any(expected in error for error in errors), errors
    assert_no_side_effect(written)


def test_run_id_format_is_checked(workspace: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    exit_code, out, _ = run_main(workspace, {"mode": "wait", "run_id": "12345"}, capsys)

    assert exit_code == 2
    assert "run_id (INPUT_RUN_ID) must look like run-YYYYMMDD-HHMMSS-<sha7>" in errors_in(out)[0]


@pytest.mark.parametrize("word", ["true", "True", "TRUE"])
def test_yaml_core_true(word: str) -> None:
    assert parse_boolean(word, "wait", default=False) is True


@pytest.mark.parametrize("word", ["false", "False", "FALSE"])
def test_yaml_core_false(word: str) -> None:
    assert parse_boolean(word, "wait", default=True) is False


@pytest.mark.parametrize("word", ["yes", "on", "1", "tRUE", "t"])
def test_other_booleans_are_errors(word: str) -> None:
    with pytest.raises(InputError, match="must be true or false"):
        parse_boolean(word, "wait", default=False)


def test_annotate_levels_parsing() -> None:
    assert parse_levels("warn,error", "x") == {"warn", "error"}
    assert parse_levels(" Warning , ERROR\ninfo", "x") == {"warn", "error", "info"}
    assert parse_levels("none", "x") == frozenset()
    assert parse_levels("", "x") == frozenset()


def settings_from(github: FakeGitHub, **inputs: str) -> tuple[ActionSettings, dict[str, str]]:
    workspace_env = {
        **github.env(),
        **{input_env_name(name): value for name, value in inputs.items()},
    }
    return ActionSettings.from_environ(workspace_env), workspace_env


def test_defaults_of_action_yml_are_the_settings_defaults(workspace: Workspace) -> None:
    env = workspace.environment(
        {"mode": "wait", "run_id": RUN_ID, "supabase_url": CLOSED_PORT_URL, "supabase_key": SERVICE_KEY}
    )
    settings = ActionSettings.from_environ(env)

    assert settings.timeout_seconds == 1200
    assert settings.poll_interval_seconds == 5
    assert settings.cancel_on_abort is True
    assert settings.cancel_on_timeout is False
    assert settings.check_run is False
    assert settings.annotate_levels == {"warn", "error"}
    assert settings.env_id == "dev"
    assert settings.github_token is not None
    assert settings.github_token.get_secret_value() == workspace.github.token
    assert workspace.github.token not in repr(settings)
    assert SERVICE_KEY not in repr(settings)


def test_connection_may_come_from_the_steps_env() -> None:
    env = {
        "INPUT_MODE": "wait",
        "INPUT_RUN_ID": RUN_ID,
        "SUPABASE_URL": "https://x.supabase.co/rest/v1/",
        "SUPABASE_SECRET_KEY": SERVICE_KEY,
    }
    settings = ActionSettings.from_environ(env)

    assert settings.supabase_url == "https://x.supabase.co"
    assert settings.supabase_key.get_secret_value() == SERVICE_KEY


def test_missing_connection_names_both_inputs() -> None:
    with pytest.raises(InvalidInputsError) as caught:
        ActionSettings.from_environ({"INPUT_MODE": "wait", "INPUT_RUN_ID": RUN_ID})

    text = " ".join(caught.value.problems)
    assert "supabase_url (INPUT_SUPABASE_URL) is required" in text
    assert "supabase_key (INPUT_SUPABASE_KEY) is required" in text


class TestIdempotencyKey:
    def key(self, github: FakeGitHub, **inputs: str) -> str | None:
        base = {"mode": "create", "project_id": "shop", "workflow_type": "build", "git_ref": "main"}
        base |= {"commit_sha": github.sha, "supabase_url": CLOSED_PORT_URL, "supabase_key": SERVICE_KEY}
        settings, env = settings_from(github, **(base | inputs))
        return derived_idempotency_key(settings, env)

    def test_same_step_same_key(self) -> None:
        github = FakeGitHub()
        assert self.key(github) == self.key(github)
        assert (self.key(github) or "").startswith("gha-")

    @pytest.mark.parametrize(
        "change",
        [
            {"run_attempt": "2"},
            {"run_id": "123"},
            {"action": "__acme_odooops-action_2"},
            {"job": "other"},
            {"repository": "acme/other"},
        ],
    )
    def test_another_step_or_attempt_gets_another_key(self, change: dict[str, str]) -> None:
        github = FakeGitHub()
        changed = FakeGitHub(**{**github.__dict__, **change})
        assert self.key(github) != self.key(changed)

    @pytest.mark.parametrize(
        "change",
        [{"env_id": "prod"}, {"workflow_type": "test"}, {"metadata": '{"leg": 2}'}, {"git_ref": "dev"}],
    )
    def test_another_request_gets_another_key(self, change: dict[str, str]) -> None:
        github = FakeGitHub()
        assert self.key(github) != self.key(github, **change)

    def test_metadata_key_order_does_not_matter(self) -> None:
        github = FakeGitHub()
        assert self.key(github, metadata='{"a": 1, "b": 2}') == self.key(github, metadata='{"b": 2, "a": 1}')

    def test_explicit_key_wins(self) -> None:
        assert self.key(FakeGitHub(), idempotency_key="mine") == "mine"

    def test_no_key_outside_github_actions(self) -> None:
        settings, _ = settings_from(
            FakeGitHub(),
            mode="create",
            project_id="shop",
            workflow_type="build",
            git_ref="main",
            commit_sha="a" * 40,
            supabase_url=CLOSED_PORT_URL,
            supabase_key=SERVICE_KEY,
        )
        assert derived_idempotency_key(settings, {}) is None


def test_metadata_is_kept_as_parsed_json(workspace: Workspace) -> None:
    env = workspace.environment(
        {
            "mode": "create",
            "project_id": "shop",
            "workflow_type": "build",
            "metadata": json.dumps({"pr": 7}),
            "supabase_url": CLOSED_PORT_URL,
            "supabase_key": SERVICE_KEY,
        }
    )
    assert ActionSettings.from_environ(env).metadata == {"pr": 7}
