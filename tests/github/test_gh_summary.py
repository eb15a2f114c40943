"""The job summary: structure, escaping of hostile values (rendered by cmark-gfm), size bound."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from odooops_action.github.context import GitHubContext
from odooops_action.github.files import SUMMARY_LIMIT_BYTES
from odooops_action.github.summary import (
    DEFAULT_MAX_BYTES,
    SummaryView,
    durations,
    human_duration,
    human_size,
    render_summary,
)
from tests.github.gh_factories import T0, make_artifact, make_event, make_run
from tests.github.gh_markdown import render_markdown

GITHUB = GitHubContext(
    repository="acme/shop",
    run_id="99",
    run_attempt=2,
    workflow_ref="acme/shop/.github/workflows/ci.yml@refs/heads/main",
)
RUN_URL = "https://github.com/acme/shop/actions/runs/99/attempts/2"
ALLOWED_TAGS = {
    "h2", "h3", "p", "strong", "em", "code", "pre", "table", "thead", "tbody", "tr", "th", "td",
    "ul", "li", "details", "summary", "a", "hr", "blockquote",
}  # fmt: skip
HOSTILE = (
    "x | y\nnew line <script>alert(1)</script> &amp; [link](javascript:alert(1)) "
    "![img](https://evil.example/p.png) https://evil.example www.evil.example a@evil.example "
    "@octocat #12 :smile: **bold** `tick` ``` </details> <!-- \\| ~~~"
)


def view(**changes: Any) -> SummaryView:
    fields: dict[str, Any] = {
        "run": make_run(),
        "outcome": "success",
        "now": T0 + timedelta(minutes=5),
        "github": GITHUB,
        "total_events": 0,
    }
    fields.update(changes)
    return SummaryView(**fields)


def size(text: str) -> int:
    return len(text.encode("utf-8"))


class TestStructure:
    def test_golden_structure(self) -> None:
        artifacts = [
            make_artifact("https://files.example.com/build/42/odoo.tar.gz", artifact_type="logs"),
            make_artifact("ghcr.io/acme/odoo@sha256:" + "ab" * 32, size_bytes=None, digest=None),
        ]
        events = [
            make_event(1, "queued", payload={"kind": "status", "from": None, "to": "queued"}),
            make_event(6, "claimed", payload={"kind": "status", "from": "queued", "to": "claimed"}),
            make_event(20, "deprecated option", "warn"),
            make_event(30, "module x failed to load", "error"),
            make_event(40, "line one\nline two"),
        ]
        page = render_summary(
            view(
                artifacts=artifacts,
                notable_events=[events[2], events[3]],
                log_tail=events,
                total_events=40,
            )
        )
        rendered = render_markdown(page)

        assert page.startswith("## OdooOps run\n\n✅ **The build run ")
        first_paragraph = page.split("\n\n")[1]
        assert "run-0001" in first_paragraph
        assert "succeeded" in first_paragraph
        headings = [line for line in page.splitlines() if line.startswith("#")]
        assert headings == [
            "## OdooOps run",
            "### Timeline",
            "### Artifacts",
            "### Warnings and errors (1 error, 1 warning)",
        ]

        run_table, timeline, artifact_table = rendered.tables
        fields = {row[0]: row[1] for row in run_table[1:]}
        assert fields["Run"] == "run-0001"
        assert fields["Project"] == "acme"
        assert fields["Environment"] == "staging"
        assert fields["Workflow"] == "build"
        assert fields["Ref"] == "refs/heads/main"
        assert fields["Commit"] == "0123456"
        assert fields["Queued by"] == "octocat"
        assert fields["Status"] == "success (exit code 0)"
        assert fields["Worker"] == "worker-1"
        assert (fields["Queued for"], fields["Running for"], fields["Total"]) == ("5s", "1m 05s", "1m 12s")

        changes = [row[2] for row in timeline[1:]]
        assert changes == [
            "new → queued — queued",
            "queued → claimed — claimed",
            "started",
            "finished: success (exit code 0)",
        ]
        assert [row[1] for row in timeline[1:]] == ["+1s", "+6s", "+7s", "+1m 12s"]

        assert artifact_table[1] == [
            "logs",
            "https://files.example.com/build/42/odoo.tar.gz",
            "sha256:abababababab",
            "12.3 MiB",
        ]
        assert artifact_table[2][1].startswith("ghcr.io/acme/odoo@sha256:")
        assert artifact_table[2][2:] == ["—", "—"]
        assert rendered.links == [
            (
                "https://files.example.com/build/42/odoo.tar.gz",
                "https://files.example.com/build/42/odoo.tar.gz",
            ),
            (RUN_URL, "GitHub workflow run"),
        ]

        assert "deprecated option" in rendered.text
        assert "module x failed to load" in rendered.text
        [log] = rendered.pre_blocks
        assert log.splitlines() == [
            "12:00:01 INFO  queued",
            "12:00:06 INFO  claimed",
            "12:00:20 WARN  deprecated option",
            "12:00:30 ERROR module x failed to load",
            "12:00:40 INFO  line one",
            "               line two",
        ]
        assert "<summary>Log: last 5 of 40 events</summary>" in page
        assert ".github/workflows/ci.yml" in rendered.text
        assert set(rendered.tags) <= ALLOWED_TAGS

    @pytest.mark.parametrize(
        ("outcome", "first"),
        [
            ("success", "✅"),
            ("failed", "❌"),
            ("cancelled", "🚫"),
            ("timeout", "⏱️"),
            ("not_found", "❓"),
            ("error", "⚠️"),
        ],
    )
    def test_outcome_comes_first(self, outcome: str, first: str) -> None:
        page = render_summary(view(outcome=outcome, outcome_detail="waited 10m"))
        assert page.split("\n\n")[1].startswith(first)
        assert "waited 10m" in page.split("\n\n")[2]

    def test_without_a_run_or_github_context(self) -> None:
        page = render_summary(view(run=None, outcome="not_found", outcome_detail="no run r-1", github=None))
        rendered = render_markdown(page)
        assert rendered.tables == []
        assert rendered.links == []
        assert "was not found" in rendered.text
        assert "no run r-1" in rendered.text

    def test_notable_events_are_capped_with_a_count(self) -> None:
        events = [make_event(i, f"warning {i}", "warn") for i in range(120)]
        rendered = render_markdown(render_summary(view(notable_events=events)))
        assert "warning 49" in rendered.text
        assert "warning 50" not in rendered.text
        assert "…and 70 more." in rendered.text

    def test_suppressed_annotations_are_mentioned(self) -> None:
        events = [make_event(1, "w", "warn")]
        page = render_summary(view(notable_events=events, suppressed_annotations={"warning": 3, "error": 0}))
        assert "3 `` warning ``" not in page  # rendered as a code span of the level name
        rendered = render_markdown(page)
        assert "3 warning not annotated" in rendered.text


class TestEscaping:
    def hostile_page(self) -> str:
        run = make_run(
            run_id="run|1" + HOSTILE,
            project_id=HOSTILE,
            env_id="<b>env</b>",
            git_ref="refs/heads/`x`|<i>",
            created_by="@octocat",
            claimed_by="worker|<img src=x>",
            status="failed",
            exit_code=2,
            status_reason=HOSTILE,
            metadata={"k|<b>": HOSTILE, "n": {"nested": "<i>|"}},
        )
        artifacts = [
            make_artifact("javascript:alert(1)"),
            make_artifact('https://ok.example/a%20b|c<d>"'),
            make_artifact("https://ok.example/with space"),
            make_artifact("data:text/html,<script>x</script>"),
            make_artifact("//evil.example/no-scheme"),
            make_artifact(HOSTILE, digest=HOSTILE),
        ]
        events = [
            make_event(1, HOSTILE, "error"),
            make_event(2, "````\n```\n</details>\n<script>", "warn"),
            make_event(3, HOSTILE, payload={"kind": "status", "from": HOSTILE, "to": "<b>|"}),
        ]
        return render_summary(
            view(
                run=run,
                outcome="failed",
                outcome_detail=HOSTILE,
                artifacts=artifacts,
                notable_events=events,
                log_tail=events,
                total_events=3,
            )
        )

    def test_no_html_links_or_images_get_through(self) -> None:
        rendered = render_markdown(self.hostile_page())
        assert set(rendered.tags) <= ALLOWED_TAGS, rendered.html
        assert "<script" not in rendered.html
        assert "<img" not in rendered.html
        assert "<b>" not in rendered.html
        assert "<i>" not in rendered.html
        hrefs = [href for href, _ in rendered.links]
        assert hrefs == ["https://ok.example/a%20b%7Cc%3Cd%3E%22", RUN_URL]

    def test_tables_keep_their_shape_and_show_the_text(self) -> None:
        rendered = render_markdown(self.hostile_page())
        for table in rendered.tables:
            widths = {len(row) for row in table}
            assert len(widths) == 1, table
        run_table = rendered.tables[0]
        fields = {row[0]: row[1] for row in run_table[1:]}
        assert fields["Environment"] == "<b>env</b>"
        assert fields["Ref"] == "refs/heads/`x`|<i>"
        assert fields["Worker"] == "worker|<img src=x>"
        assert fields["Project"].startswith("x | y new line <script>alert(1)</script> &amp; [link]")
        metadata = rendered.tables[1]
        assert metadata[1][0] == "k|<b>"
        assert metadata[2] == ["n", '{"nested": "<i>|"}']

    def test_log_fence_cannot_be_closed_from_inside(self) -> None:
        page = self.hostile_page()
        rendered = render_markdown(page)
        [log] = rendered.pre_blocks
        assert "12:00:02 WARN  ````" in log
        assert "               </details>" in log
        assert rendered.html.count("<details>") == rendered.html.count("</details>") == 2
        opening = next(line for line in page.splitlines() if line.startswith("```") and line.endswith("text"))
        assert len(opening) - len("text") == 5  # longer than the 4-backtick run in the content

    def test_only_http_urls_are_linked(self) -> None:
        rendered = render_markdown(self.hostile_page())
        artifact_table = rendered.tables[-1]
        locations = [row[1] for row in artifact_table[1:]]
        assert locations[0] == "javascript:alert(1)"
        assert locations[2] == "https://ok.example/with space"
        assert locations[3] == "data:text/html,<script>x</script>"
        assert locations[4] == "//evil.example/no-scheme"
        assert all(not href.startswith(("javascript", "data", "//")) for href, _ in rendered.links)


class TestSizeBound:
    @pytest.mark.slow  # 1 GB of events
    def test_200000_events_of_5kb_stay_under_1_mib(self) -> None:
        message = ("0123456789abcdef`" * 300)[:5000]  # backticks force a long fence
        base = make_event(1, message, "warn")
        # Copies share the one 5 KB string: 200,000 events cost ~100 MB less than distinct ones.
        events = [base.model_copy(update={"seq": i}) for i in range(200_000)]
        events[-1] = make_event(200_000, "the very last event", "error")
        page = render_summary(
            view(notable_events=events, log_tail=events, total_events=200_000),
            max_bytes=SUMMARY_LIMIT_BYTES - 1,
        )

        assert size(page) < SUMMARY_LIMIT_BYTES
        assert size(page) > SUMMARY_LIMIT_BYTES - 64 * 1024  # the budget is used, not wasted
        assert "earlier log events were cut to keep this page small" in page
        assert "…and 199,950 more." in page
        rendered = render_markdown(page)
        [log] = rendered.pre_blocks
        assert log.count("WARN") > 100
        assert log.rstrip("\n").endswith("ERROR the very last event")
        assert f"WARN  {message[:4000]}" in log  # long events are cut, not dropped

    def test_default_budget_is_below_the_limit(self) -> None:
        events = [make_event(i, "x" * 5000) for i in range(400)]
        page = render_summary(view(log_tail=events, total_events=400))
        assert size(page) <= DEFAULT_MAX_BYTES < SUMMARY_LIMIT_BYTES

    def test_tail_is_trimmed_before_notable_events(self) -> None:
        notable = [make_event(i, f"problem {i} " + "p" * 500, "error") for i in range(50)]
        tail = [make_event(i, f"log {i} " + "l" * 1000) for i in range(100)]
        full = render_summary(view(notable_events=notable, log_tail=tail, total_events=100), max_bytes=10**7)
        budget = size(full) - 20_000
        page = render_summary(view(notable_events=notable, log_tail=tail, total_events=100), max_bytes=budget)
        assert size(page) <= budget
        assert "problem 49" in page  # all notable events kept
        assert "log 99 " in page  # newest log lines kept
        assert "log 0 " not in page
        assert "earlier log events were cut" in page

    def test_then_notable_events_are_trimmed(self) -> None:
        notable = [make_event(i, f"problem {i} " + "p" * 500, "error") for i in range(50)]
        tail = [make_event(i, f"log {i} " + "l" * 1000) for i in range(100)]
        page = render_summary(view(notable_events=notable, log_tail=tail, total_events=100), max_bytes=15_000)
        assert size(page) <= 15_000
        assert "log 99 " not in page
        assert "problem 0 " in page
        assert "problem 49" not in page
        assert "more." in page
        assert page.startswith("## OdooOps run")

    def test_a_budget_above_the_limit_is_clamped(self) -> None:
        events = [make_event(i, "y" * 5000) for i in range(400)]
        page = render_summary(view(log_tail=events, total_events=400), max_bytes=10 * SUMMARY_LIMIT_BYTES)
        assert SUMMARY_LIMIT_BYTES - 64 * 1024 < size(page) < SUMMARY_LIMIT_BYTES

    def test_tiny_budget_still_bounded(self) -> None:
        page = render_summary(view(log_tail=[make_event(1, "x")]), max_bytes=100)
        assert size(page) <= 100
        page.encode("utf-8").decode("utf-8")


class TestFormatting:
    @pytest.mark.parametrize(
        ("seconds", "expected"),
        [
            (0, "0s"),
            (-5, "0s"),
            (59.9, "59s"),
            (65, "1m 05s"),
            (3600, "1h 00m 00s"),
            (3725, "1h 02m 05s"),
            (90061, "1d 01h 01m"),
        ],
    )
    def test_human_duration(self, seconds: float, expected: str) -> None:
        assert human_duration(seconds) == expected

    @pytest.mark.parametrize(
        ("size_bytes", "expected"),
        [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (12_900_000, "12.3 MiB"), (5 * 1024**4, "5.0 TiB")],
    )
    def test_human_size(self, size_bytes: int, expected: str) -> None:
        assert human_size(size_bytes) == expected

    def test_durations_of_a_running_run_count_up_to_now(self) -> None:
        run = make_run(status="running", finished_at=None, exit_code=None)
        spent = durations(run, T0 + timedelta(minutes=2))
        assert spent.queued == "5s"
        assert spent.running == "1m 53s (so far)"
        assert spent.total == "2m 00s (so far)"

    def test_durations_of_a_queued_run(self) -> None:
        run = make_run(status="queued", claimed_at=None, started_at=None, finished_at=None, exit_code=None)
        spent = durations(run, T0 + timedelta(seconds=42))
        assert (spent.queued, spent.running, spent.total) == ("42s (so far)", "—", "42s (so far)")

    def test_durations_of_a_run_cancelled_in_the_queue(self) -> None:
        run = make_run(status="cancelled", claimed_at=None, started_at=None, exit_code=None)
        spent = durations(run, T0 + timedelta(hours=3))
        assert (spent.queued, spent.running, spent.total) == ("1m 12s", "—", "1m 12s")
