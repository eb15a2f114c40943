"""Hostile run events cannot run a workflow command or break the summary; secrets never leak."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from action_harness import FakeWorker, StepResult, Workspace, queue_run

from tests.github.gh_markdown import render_markdown
from tests.github.gh_runner_model import RunnerModel

HOSTILE = [
    "::add-mask::main",
    "::error::pwned-v2",
    "  ::warning title=x::indented pwned",
    "::stop-commands::letmein",
    "::warning::after a forged stop-commands",
    "::letmein::",
    "##[error]pwned-v1 at the start",
    "text before ##[warning]pwned-v1 in the middle",
    "ok\r::warning::carriage return",
    "first line\n::error file=x.py::second line",
    "line\u2028::error::unicode line separator",
    "\x1b[8m::error::hidden by ansi\x1b[0m",
    "::group::forged group",
    "::endgroup::",
    "::set-output name=run_id::forged",
    "::save-state name=should_cancel::false",
    "::echo::on",
    "<script>alert(1)</script> <img src=x onerror=alert(1)> [click](https://evil.example) "
    "![img](https://evil.example/x.png) @admin #1 | cell | `code` **bold** https://evil.example",
    "```\nfenced\n```\n</details><details open>",
]
OUR_COMMANDS = {"add-mask", "stop-commands", "group", "endgroup", "error", "warning", "notice", "debug"}


def hostile_run(
    workspace: Workspace, connection: dict[str, str], project: str, pg_dsn: str, level: str
) -> StepResult:
    events = [(level, text, {"phase": text[:40]}) for text in HOSTILE]
    worker = FakeWorker(pg_dsn, project, events=events, final_status="failed", reason=HOSTILE[1]).start()
    result = workspace.run(
        {**connection, "mode": "create", "project_id": project, "workflow_type": "build", "wait": "true"}
    )
    worker.join()
    return result


@pytest.mark.parametrize("lenient", [False, True])
@pytest.mark.parametrize("level", ["info", "error"])
def test_event_text_cannot_run_commands(
    *,
    workspace: Workspace,
    connection: dict[str, str],
    project: str,
    pg_dsn: str,
    level: str,
    lenient: bool,
) -> None:
    result = hostile_run(workspace, connection, project, pg_dsn, level)
    runner = RunnerModel(lenient=lenient).feed(result.stdout)

    assert not runner.paused
    tokens = {c.data.lower() for c in runner.processed if c.name == "stop-commands"}
    assert "letmein" not in tokens
    for command in runner.processed:
        name = command.name.lower()
        assert name in OUR_COMMANDS or name in tokens, command.line
        if name == "add-mask":
            assert command.data in (connection["supabase_key"], workspace.github.token)
        if name in ("error", "warning"):
            # Our annotations only: each carries our title, and its text is one event's message.
            assert command.properties.get("title", "").startswith("OdooOps"), command.line
    # Every hostile line is still visible as text.
    visible = "\n".join(runner.plain)
    assert "pwned-v2" in visible
    assert "pwned-v1 at the start" in visible
    assert result.outputs["run_id"].startswith("run-")
    assert result.state["should_cancel"] == "false"


def test_hostile_groups_are_titles_not_commands(
    workspace: Workspace, connection: dict[str, str], project: str, pg_dsn: str
) -> None:
    result = hostile_run(workspace, connection, project, pg_dsn, "info")

    groups = result.commands("group")
    # A payload phase becomes a title: the data of OUR group command, escaped, one line.
    assert any(g.data.startswith("::error::pwned-v2") for g in groups)
    assert all("\n" not in g.data and "\r" not in g.data for g in groups)
    assert len(result.commands("endgroup")) == len(groups)


def test_hostile_text_cannot_break_the_summary(
    workspace: Workspace, connection: dict[str, str], project: str, pg_dsn: str
) -> None:
    result = hostile_run(workspace, connection, project, pg_dsn, "error")
    rendered = render_markdown(result.summary)

    assert "script" not in rendered.tags
    assert "img" not in rendered.tags
    hrefs = [href for href, _ in rendered.links]
    assert all(not href.startswith("https://evil.example") for href in hrefs), hrefs
    assert hrefs == ["https://github.com/acme/shop/actions/runs/9900001"]
    assert "<script>alert(1)</script>" in rendered.text  # shown as text
    assert rendered.tags.count("details") == result.summary.count("<details>")


def assert_no_secret(result: StepResult, secrets: list[str]) -> None:
    """Secrets may appear only inside the ``::add-mask::`` commands the runner consumes."""
    for line in result.stdout.splitlines():
        if line.startswith("::add-mask::"):
            continue
        for secret in secrets:
            assert secret not in line, f"secret in log line {line[:80]!r}"
    for secret in secrets:
        assert secret not in result.stderr
        assert secret not in result.summary
        assert all(secret not in name and secret not in value for name, value in result.outputs.items())
        assert all(secret not in value for value in result.state.values())


def test_secrets_never_leak_in_any_mode(
    *,
    workspace: Workspace,
    connection: dict[str, str],
    project: str,
    pg_dsn: str,
    db: psycopg.Connection[Any],
    secret_key: str,
) -> None:
    secrets = [connection["supabase_key"], workspace.github.token, secret_key]
    # A worker that quotes the key in its log (a careless build script) must not leak it either.
    worker = FakeWorker(
        pg_dsn, project, events=[("error", f"curl -H 'apikey: {connection['supabase_key']}'", {})]
    ).start()
    results = [
        workspace.run(
            {**connection, "mode": "create", "project_id": project, "workflow_type": "build", "wait": "true"}
        ),
    ]
    worker.join()
    run_id = queue_run(db, project)
    results += [
        workspace.run({**connection, "mode": "destroy", "run_id": run_id}),
        workspace.run({**connection, "mode": "wait", "run_id": run_id, "check_run": "maybe"}),
        workspace.run(
            {
                "supabase_url": connection["supabase_url"],
                "supabase_key": secret_key,
                "mode": "wait",
                "run_id": run_id,
            }
        ),
        workspace.run(
            {**connection, "supabase_url": "http://127.0.0.1:9", "mode": "destroy", "run_id": run_id}
        ),
        workspace.run({**connection, "mode": "wait", "run_id": run_id, "supabase_url": "not a url"}),
    ]
    for result in results:
        assert_no_secret(result, secrets)
    masks = [c.data for c in results[0].commands("add-mask")]
    assert connection["supabase_key"] in masks
    assert workspace.github.token in masks
    masks_secret_key_run = [c.data for c in results[3].commands("add-mask")]
    assert secret_key in masks_secret_key_run


def test_masks_come_before_any_other_output(workspace: Workspace, connection: dict[str, str]) -> None:
    result = workspace.run({**connection, "mode": "wait", "run_id": "bad"})

    lines = result.stdout.splitlines()
    assert lines[0].startswith("::add-mask::")
    assert lines[1].startswith("::add-mask::")
    assert result.exit_code == 2
