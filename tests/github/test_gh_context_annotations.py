"""The GitHub environment view, and annotations derived from run events."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from odooops_action.github.annotations import (
    MAX_MESSAGE_BYTES,
    MAX_TITLE_CHARS,
    Annotation,
    annotations_from_events,
    emit_annotations,
)
from odooops_action.github.commands import WorkflowCommands
from odooops_action.github.context import GitHubContext, pull_request_from_fork
from tests.github.gh_factories import make_event
from tests.github.gh_runner_model import RunnerModel

ENV = {
    "GITHUB_SERVER_URL": "https://github.example.com/",
    "GITHUB_API_URL": "https://github.example.com/api/v3",
    "GITHUB_REPOSITORY": "acme/shop",
    "GITHUB_RUN_ID": "4242",
    "GITHUB_RUN_ATTEMPT": "3",
    "GITHUB_JOB": "deploy",
    "GITHUB_WORKFLOW_REF": "acme/shop/.github/workflows/ci.yml@refs/heads/feature@x",
    "GITHUB_SHA": "abc123",
    "GITHUB_REF": "refs/heads/feature@x",
    "GITHUB_REF_NAME": "feature@x",
    "GITHUB_ACTOR": "octocat",
    "GITHUB_EVENT_NAME": "push",
}


class TestContext:
    def test_reads_the_environment(self) -> None:
        context = GitHubContext.from_env(ENV)
        assert context.server_url == "https://github.example.com"
        assert context.api_url == "https://github.example.com/api/v3"
        assert (context.repository, context.run_id, context.run_attempt) == ("acme/shop", "4242", 3)
        assert (context.job, context.sha, context.ref_name) == ("deploy", "abc123", "feature@x")
        assert (context.actor, context.event_name, context.ref) == ("octocat", "push", "refs/heads/feature@x")
        assert context.workflow_file == ".github/workflows/ci.yml"
        assert context.run_url == "https://github.example.com/acme/shop/actions/runs/4242/attempts/3"
        assert context.has_token is False

    def test_first_attempt_url_and_defaults(self) -> None:
        context = GitHubContext.from_env({"GITHUB_REPOSITORY": "a/b", "GITHUB_RUN_ID": "1"})
        assert context.run_url == "https://github.com/a/b/actions/runs/1"
        assert context.api_url == "https://api.github.com"
        assert context.workflow_file is None

    @pytest.mark.parametrize("attempt", ["", "zero", "0", "-2"])
    def test_bad_attempt_means_first(self, attempt: str) -> None:
        assert GitHubContext.from_env({"GITHUB_RUN_ATTEMPT": attempt}).run_attempt == 1

    def test_no_run_url_outside_actions(self) -> None:
        assert GitHubContext.from_env({}).run_url is None

    def test_token_presence_but_never_the_token(self) -> None:
        context = GitHubContext.from_env({"INPUT_GITHUB_TOKEN": "ghs_secret"})
        assert context.has_token is True
        assert "ghs_secret" not in repr(context)
        assert GitHubContext.from_env({}, token="ghs_x").has_token is True

    def test_reusable_workflow_ref_of_another_repository(self) -> None:
        context = GitHubContext.from_env(
            {"GITHUB_REPOSITORY": "a/b", "GITHUB_WORKFLOW_REF": "org/shared/.github/workflows/x.yaml@v1"}
        )
        assert context.workflow_file == ".github/workflows/x.yaml"


def event(level: str, payload: dict[str, Any], message: str = "msg") -> Any:
    return make_event(1, message, level, payload=payload)


class TestAnnotations:
    def test_levels_map_and_filter(self) -> None:
        events = [event("debug", {}), event("info", {}), event("warn", {}), event("error", {})]
        result = annotations_from_events(events, {"warn", "error"}, ".github/workflows/ci.yml")
        assert [a.level for a in result] == ["warning", "failure"]
        notices = annotations_from_events(events, {"info"}, "wf.yml")
        assert [a.level for a in notices] == ["notice"]

    def test_location_from_payload(self) -> None:
        [annotation] = annotations_from_events(
            [event("error", {"file": "addons/x/models.py", "line": 10, "end_line": 12, "title": "Lint"})],
            {"error"},
            "wf.yml",
        )
        assert annotation == Annotation("failure", "msg", "Lint", "addons/x/models.py", 10, 12)

    @pytest.mark.parametrize(
        "payload",
        [
            {"file": 5, "line": 3},
            {"file": "", "line": 3},
            {"file": "/etc/passwd", "line": 3},
            {"file": "../outside.py", "line": 3},
            {"file": "a/../../b.py", "line": 3},
            {"file": "a\nb.py", "line": 3},
            {"file": "C:\\x.py", "line": 3},
            {"file": "x" * 2000, "line": 3},
            {"line": 3},
        ],
    )
    def test_bad_files_fall_back_to_the_workflow_file_line_1(self, payload: dict[str, Any]) -> None:
        [annotation] = annotations_from_events([event("warn", payload)], {"warn"}, ".github/workflows/ci.yml")
        assert (annotation.path, annotation.start_line, annotation.end_line) == (
            ".github/workflows/ci.yml",
            1,
            1,
        )

    @pytest.mark.parametrize(
        ("line", "end_line", "expected"),
        [
            ("10", None, (1, 1)),
            (True, None, (1, 1)),
            (0, None, (1, 1)),
            (-4, 9, (1, 1)),
            (3.5, None, (1, 1)),
            (7, "9", (7, 7)),
            (7, 5, (7, 7)),
            (7, False, (7, 7)),
            (7, 9, (7, 9)),
        ],
    )
    def test_line_validation(self, line: Any, end_line: Any, expected: tuple[int, int]) -> None:
        payload = {"file": "a.py", "line": line, "end_line": end_line}
        [annotation] = annotations_from_events([event("warn", payload)], {"warn"}, "wf.yml")
        assert annotation.path == "a.py"
        assert (annotation.start_line, annotation.end_line) == expected

    def test_message_and_title_limits(self) -> None:
        message = "é" * 40_000 + "tail"  # 80,004 bytes
        [annotation] = annotations_from_events(
            [event("error", {"title": "T" * 300 + "\nX"}, message)], {"error"}, "wf.yml"
        )
        assert len(annotation.message.encode("utf-8")) <= MAX_MESSAGE_BYTES
        assert annotation.message.startswith("é" * 1000)
        assert annotation.message.endswith("…")
        assert annotation.title is not None
        assert len(annotation.title) == MAX_TITLE_CHARS
        assert "\n" not in annotation.title

    def test_bad_title_and_empty_message(self) -> None:
        [annotation] = annotations_from_events([event("warn", {"title": 42}, "  ")], {"warn"}, "wf.yml")
        assert annotation.title is None
        assert annotation.message == "(no message)"

    def test_check_api_shape(self) -> None:
        annotation = Annotation("warning", "m", None, "a.py", 2, 3)
        assert annotation.as_check_annotation() == {
            "path": "a.py",
            "start_line": 2,
            "end_line": 3,
            "annotation_level": "warning",
            "message": "m",
        }

    def test_emit_as_workflow_commands_respects_the_limit(self) -> None:
        out = io.StringIO()
        commands = WorkflowCommands(out)
        annotations = [Annotation("failure", f"e{i}", "t", "a.py", i + 1, i + 1) for i in range(12)]
        # 9 of GitHub's 10: the last error slot is the runner's, should the job be cancelled.
        assert emit_annotations(commands, annotations) == 9
        processed = RunnerModel().feed(out.getvalue()).processed
        assert [c.name for c in processed] == ["error"] * 9
        assert processed[0].properties == {"title": "t", "file": "a.py", "line": "1", "endLine": "1"}
        assert commands.suppressed["error"] == 3


@pytest.mark.parametrize(
    ("event_name", "payload", "expected"),
    [
        ("push", None, False),
        (
            "pull_request",
            {"head": {"repo": {"full_name": "someone/shop"}}, "base": {"repo": {"full_name": "acme/shop"}}},
            True,
        ),
        (
            "pull_request",
            {"head": {"repo": {"full_name": "acme/shop"}}, "base": {"repo": {"full_name": "acme/shop"}}},
            False,
        ),
        ("pull_request", {"head": {"repo": None}, "base": {"repo": {"full_name": "acme/shop"}}}, True),
        ("pull_request", "unreadable", None),
    ],
)
def test_pull_request_from_fork(
    tmp_path: Path, event_name: str, payload: object, expected: bool | None
) -> None:
    event = tmp_path / "event.json"
    if payload == "unreadable":
        event.write_text("{not json")
    elif payload is not None:
        event.write_text(json.dumps({"pull_request": payload}))
    environ = {"GITHUB_EVENT_NAME": event_name, "GITHUB_EVENT_PATH": str(event)}

    assert pull_request_from_fork(environ) is expected
