"""The log reporter in-process: figures that stay true and memory that stays bounded on huge runs."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime

import pytest

from odooops_action.action.report import LOG_TAIL_EVENTS, MAX_KEPT_MESSAGE_CHARS, LogReporter, RunReport
from odooops_action.github.commands import WorkflowCommands
from odooops_action.github.files import SUMMARY_LIMIT_BYTES
from odooops_action.github.summary import SummaryView, render_summary
from tests.github.gh_factories import make_event, make_run
from tests.github.gh_runner_model import RunnerModel

RUN = make_run(status="failed", exit_code=1, finished_at=None)


def stream(events_by_batch: list[list[tuple[str, str, dict[str, object]]]]) -> tuple[RunReport, str]:
    out = io.StringIO()
    reporter = LogReporter(WorkflowCommands(out), annotate_levels=frozenset(), check_annotation_path="ci.yml")
    base = make_event(1, "")
    seq = 0
    for batch in events_by_batch:
        events = []
        for level, message, payload in batch:
            seq += 1
            events.append(
                base.model_copy(update={"seq": seq, "level": level, "message": message, "payload": payload})
            )
        reporter.on_events(RUN, events)
    reporter.close()
    return reporter.report, out.getvalue()


def summary_of(report: RunReport) -> str:
    return render_summary(
        SummaryView(
            run=report.run,
            outcome="failed",
            now=datetime.now(UTC),
            notable_events=report.notable_events,
            log_tail=list(report.log_tail),
            total_events=report.total_events,
            level_counts=report.level_counts,
            status_events=report.status_events,
        )
    )


def test_counts_stay_true_past_what_is_kept() -> None:
    levels = ["error", "warn", "warn", "info"]
    batches = [[(levels[n % 4], f"event {b}-{n}", {}) for n in range(1000)] for b in range(12)]

    report, _ = stream(batches)
    page = summary_of(report)

    assert report.total_events == 12_000
    assert report.level_counts == {"error": 3000, "warn": 6000, "info": 3000}
    assert "### Warnings and errors (3,000 errors, 6,000 warnings)" in page
    assert "…and 8,950 more." in page  # 9,000 notable events, 50 listed
    assert "last 200 of 12,000 events" in page


def test_a_million_events_give_a_small_summary_with_true_figures() -> None:
    report = RunReport(run=RUN, total_events=1_000_000, level_counts={"error": 400_000, "warn": 500_000})
    report.notable_events = [make_event(n, "x" * 5000, "error") for n in range(1, 1001)]
    report.log_tail.extend(make_event(n, "`" * 3000, "error") for n in range(999_801, 1_000_001))

    page = summary_of(report)

    assert len(page.encode()) < SUMMARY_LIMIT_BYTES
    assert "400,000 errors, 500,000 warnings" in page
    assert "…and 899,950 more." in page
    assert "of 1,000,000 events" in page


@pytest.mark.slow  # a 10 MB message
def test_a_10_mb_message_is_printed_whole_but_kept_short() -> None:
    hostile_line = "::error::forged\r##[warning]v1 ::add-mask::x " + "A" * 1000
    message = "\n".join([hostile_line] * 10_000)  # ~10 MB
    report, log = stream([[("error", message, {"blob": "b" * 100_000}), ("info", "after", {})]])

    kept = report.notable_events[0]
    assert len(kept.message) == MAX_KEPT_MESSAGE_CHARS
    assert kept.payload == {}
    runner = RunnerModel().feed(log)
    assert {c.name for c in runner.processed} <= {"group", "endgroup", "stop-commands"} | {
        c.name for c in runner.processed if re.fullmatch(r"[0-9a-f]{32}", c.name)
    }
    assert not runner.paused
    assert sum(1 for line in runner.plain if line.endswith("A" * 1000)) == 10_000
    assert len(summary_of(report).encode()) < 64 * 1024


def test_the_timeline_keeps_status_changes_that_left_the_log_tail() -> None:
    status = {"kind": "status", "from": "queued", "to": "claimed", "worker": "w-1"}
    batches = [[("info", "Worker w-1 claimed run (attempt 1)", status)]]
    batches += [[("info", f"line {n}", {}) for n in range(LOG_TAIL_EVENTS * 2)]]

    report, _ = stream(batches)
    page = summary_of(report)

    timeline = page.split("### Timeline", 1)[1].split("###", 1)[0]
    assert "Worker w-1 claimed run (attempt 1)" in timeline
