"""Check runs through PyGithub against a real loopback server validating GitHub's request schemas."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from odooops_action.github.annotations import Annotation, annotations_from_events
from odooops_action.github.checks import (
    MAX_SUMMARY_CHARS,
    CheckRunResult,
    conclusion_for,
    limit_summary,
    publish_check_run,
)
from tests.github.gh_factories import make_event
from tests.github.gh_fake_api import CREATE, UPDATE, VENDORED, FakeGitHub, serve

TOKEN = "ghs_TESTTOKEN_0123456789abcdefABCDEF"
SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def fake() -> Iterator[FakeGitHub]:
    with serve(FakeGitHub()) as server:
        yield server


def make_annotations(count: int) -> list[Annotation]:
    return [
        Annotation("warning", f"message {i}", f"title {i}", "addons/x.py", i + 1, i + 1) for i in range(count)
    ]


def publish(fake: FakeGitHub, items: list[Annotation], **changes: object) -> CheckRunResult:
    arguments: dict[str, object] = {
        "token": TOKEN,
        "repository": "acme/shop",
        "head_sha": SHA,
        "name": "OdooOps build",
        "title": "Build run-0001 succeeded",
        "summary_markdown": "## OdooOps run\n\n✅ done",
        "conclusion": "success",
        "annotations": items,
        "details_url": "https://github.com/acme/shop/actions/runs/9",
        "api_url": fake.base_url,
        "seconds_between_writes": None,
    }
    arguments.update(changes)
    return publish_check_run(**arguments)  # type: ignore[arg-type]


def test_vendored_schema_records_its_source() -> None:
    assert VENDORED["source"]["package"] == "@octokit/openapi"
    assert VENDORED["source"]["version"]
    assert set(VENDORED["operations"]) == {CREATE, UPDATE}


class TestBatching:
    def test_120_annotations_are_one_post_and_two_patches(self, fake: FakeGitHub) -> None:
        result = publish(fake, make_annotations(120))

        assert fake.problems == []
        assert [r.operation for r in fake.requests] == [CREATE, UPDATE, UPDATE]
        batches = [r.body["output"]["annotations"] for r in fake.requests]
        assert [len(batch) for batch in batches] == [50, 50, 20]
        messages = [a["message"] for batch in batches for a in batch]
        assert messages == [f"message {i}" for i in range(120)]
        create = fake.requests[0].body
        assert create["status"] == "completed"
        assert create["conclusion"] == "success"
        assert create["head_sha"] == SHA
        assert create["details_url"] == "https://github.com/acme/shop/actions/runs/9"
        assert fake.requests[1].path == f"/repos/acme/shop/check-runs/{result.check_run_id}"
        for request in fake.requests:
            assert request.headers["Authorization"].endswith(TOKEN)
            assert request.body["output"]["title"] == "Build run-0001 succeeded"
        assert result == CheckRunResult(
            check_run_id=result.check_run_id,
            html_url=f"https://github.com/acme/shop/runs/{result.check_run_id}",
            annotations_sent=120,
            annotations_dropped=0,
            requests=3,
        )
        assert result.published

    def test_no_annotations_is_a_single_post(self, fake: FakeGitHub) -> None:
        result = publish(fake, [], details_url="javascript:alert(1)")
        assert fake.problems == []
        assert [r.operation for r in fake.requests] == [CREATE]
        assert "annotations" not in fake.requests[0].body["output"]
        assert "details_url" not in fake.requests[0].body
        assert result.published

    def test_exactly_50_needs_no_patch(self, fake: FakeGitHub) -> None:
        publish(fake, make_annotations(50))
        assert [r.operation for r in fake.requests] == [CREATE]

    def test_annotation_total_is_capped(self, fake: FakeGitHub) -> None:
        result = publish(fake, make_annotations(130), max_annotations=100)
        assert [len(r.body["output"]["annotations"]) for r in fake.requests] == [50, 50]
        assert (result.annotations_sent, result.annotations_dropped) == (100, 30)


class TestLimits:
    def test_long_title_summary_and_messages_fit(self, fake: FakeGitHub) -> None:
        summary = "## Report\n\n<details><summary>log</summary>\n\n````text\n" + "log line ✅\n" * 20_000
        events = [make_event(1, "é" * 50_000, "error", payload={"title": "T" * 400})]
        items = annotations_from_events(events, {"error"}, ".github/workflows/ci.yml")
        result = publish(fake, items, title="A very long title " * 40, summary_markdown=summary)

        assert fake.problems == []
        output = fake.requests[0].body["output"]
        assert len(output["title"]) <= 255
        assert len(output["summary"]) <= MAX_SUMMARY_CHARS
        assert len(output["summary"].encode("utf-8")) <= MAX_SUMMARY_CHARS
        assert output["summary"].startswith("## Report")
        assert "````\n\n</details>\n" in output["summary"]  # the open fence and details are closed
        assert "Summary truncated" in output["summary"]
        [annotation] = output["annotations"]
        assert len(annotation["message"].encode("utf-8")) <= 64 * 1024
        assert len(annotation["title"]) == 255
        assert annotation["annotation_level"] == "failure"
        assert result.published

    def test_limit_summary_leaves_short_text_alone(self) -> None:
        assert limit_summary("short ```") == "short ```"

    def test_limit_summary_counts_bytes(self) -> None:
        limited = limit_summary("✅" * 30_000, 1000)
        assert len(limited.encode("utf-8")) <= 1000


class TestDegradation:
    def test_403_degrades_with_the_permission_to_add(self, fake: FakeGitHub) -> None:
        fake.fail[CREATE] = (403, {"message": "Resource not accessible by integration"})
        result = publish(fake, make_annotations(120))

        assert len(fake.requests) == 1  # no retry (so no back-off wait), no patch
        assert result.check_run_id is None
        assert result.error is None
        assert not result.published
        assert result.degraded_reason is not None
        assert "403" in result.degraded_reason
        assert "Resource not accessible by integration" in result.degraded_reason
        assert "permissions:\n  checks: write\n" in result.degraded_reason
        assert "job log" in result.degraded_reason

    @pytest.mark.parametrize("from_fork", [True, False, None])
    def test_403_names_the_cause_it_can_tell(self, fake: FakeGitHub, from_fork: bool | None) -> None:
        fake.fail[CREATE] = (403, {"message": "Resource not accessible by integration"})
        result = publish(fake, make_annotations(1), from_fork=from_fork)

        reason = result.degraded_reason
        assert reason is not None
        assert "Resource not accessible by integration" in reason
        assert "job log" in reason
        # A fork's token is read-only: advising `checks: write` there cannot help.
        assert ("fork" in reason) == (from_fork is not False)
        assert ("checks: write" in reason) == (from_fork is not True)

    def test_404_explains_fork_pull_requests(self, fake: FakeGitHub) -> None:
        fake.fail[CREATE] = (404, {"message": "Not Found"})
        result = publish(fake, make_annotations(1))
        assert result.degraded_reason is not None
        assert "fork" in result.degraded_reason
        assert "checks: write" in result.degraded_reason
        assert result.error is None

    def test_rate_limit_is_an_error_not_a_permission_problem(self, fake: FakeGitHub) -> None:
        fake.fail[CREATE] = (403, {"message": "API rate limit exceeded for installation ID 1."})
        result = publish(fake, [])
        assert result.degraded_reason is None
        assert result.error is not None
        assert "rate limit" in result.error

    def test_422_is_reported_clearly(self, fake: FakeGitHub) -> None:
        fake.fail[CREATE] = (422, {"message": "Validation Failed", "errors": ["No commit found for SHA"]})
        result = publish(fake, [])
        assert result.error is not None
        assert "422" in result.error
        assert "No commit found for SHA" in result.error

    def test_failed_patch_keeps_what_was_published(self, fake: FakeGitHub) -> None:
        fake.fail[UPDATE] = (500, {"message": "Server Error"})
        result = publish(fake, make_annotations(120))
        assert [r.operation for r in fake.requests] == [CREATE, UPDATE]
        assert result.check_run_id is not None
        assert result.annotations_sent == 50
        assert result.error is not None
        assert "500" in result.error

    def test_unreachable_api_does_not_raise(self) -> None:
        with socket.socket() as probe:  # a port with nobody listening
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        result = publish_check_run(
            TOKEN,
            "acme/shop",
            SHA,
            "n",
            "t",
            "s",
            "failure",
            [],
            api_url=f"http://127.0.0.1:{port}",
            timeout=2,
        )
        assert result.error is not None
        assert "ConnectionError" in result.error
        assert TOKEN not in result.error


class TestSecrecy:
    def test_token_never_appears_in_results_or_logs(
        self, fake: FakeGitHub, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
    ) -> None:
        caplog.set_level(logging.DEBUG)
        fake.fail[CREATE] = (401, {"message": f"Bad credentials for {TOKEN}"})
        failed = publish(fake, make_annotations(3))
        fake.fail[CREATE] = (403, {"message": "x" * 462 + f" Resource not accessible by {TOKEN}"})
        degraded = publish(fake, make_annotations(3))
        fake.fail.clear()
        ok = publish(fake, make_annotations(60))

        assert failed.error is not None
        assert "401" in failed.error
        assert degraded.degraded_reason is not None
        captured = capsys.readouterr()
        everything = "".join(
            [repr(failed), repr(degraded), repr(ok), caplog.text, captured.out, captured.err]
            + [request.raw for request in fake.requests]
        )
        assert TOKEN not in everything
        assert TOKEN[:8] not in everything  # not even a fragment cut by shortening


@pytest.mark.parametrize(
    ("outcome", "conclusion"),
    [
        ("success", "success"),
        ("failed", "failure"),
        ("cancelled", "cancelled"),
        ("timeout", "timed_out"),
        ("not_found", "failure"),
        ("error", "failure"),
        ("anything", "failure"),
    ],
)
def test_conclusion_for(outcome: str, conclusion: str) -> None:
    assert conclusion_for(outcome) == conclusion


def test_light_modules_do_not_import_heavy_ones() -> None:
    code = (
        "import sys\n"
        "from odooops_action.github import annotations, checks, commands, context, files, summary\n"
        "heavy = [m for m in ('github', 'requests', 'actions_toolkit.core', 'urllib3') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    root = Path(__file__).resolve().parents[2]
    command = [sys.executable, "-c", code]
    result = subprocess.run(command, capture_output=True, text=True, cwd=root, check=True)
    assert result.stdout.strip() == ""
