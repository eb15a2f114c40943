"""``wait``: follow a run to its end, streaming its log, then report (outputs, summary, check run).

Exit codes: 0 when the run succeeded; 1 when it failed, was cancelled, was not found, the wait
timed out, or the workflow was cancelled while waiting. Each non-zero exit comes with an
``::error`` saying what happened and where to look.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from odooops_action.action.abort import AbortCanceller
from odooops_action.action.report import MAX_CHECK_ANNOTATIONS, LogReporter, RunReport
from odooops_action.action.runtime import (
    ABORT_CANCEL_RETRIES,
    ABORT_CANCEL_TIMEOUT_SECONDS,
    ActionContext,
    CancelReport,
    cancel_safely,
    describe,
    set_run_outputs,
)
from odooops_action.domain import artifact_url
from odooops_action.push import change_feed_for
from odooops_action.store.base import RunStore
from odooops_action.waiting import PollSchedule, WaitResult, wait_for_run

if TYPE_CHECKING:  # pydantic models: imported when a response is parsed, not at start-up
    from odooops_action.models import Run


# How long the main path waits for the abort cancel before reporting (it is itself bounded by
# ABORT_CANCEL_TIMEOUT_SECONDS per attempt).
ABORT_CANCEL_JOIN_SECONDS = 7.0

# The outcomes the job summary knows (odooops_action.github.summary.Outcome).
SummaryOutcome = Literal["success", "failed", "cancelled", "timeout", "not_found", "error"]


@dataclass(frozen=True)
class Ending:
    """How the step ends: the outcome for outputs/summary/check, the sentence, the exit code."""

    outcome: str
    summary_outcome: SummaryOutcome
    message: str
    exit_code: int


@dataclass(frozen=True)
class Followed:
    """What following one run produced."""

    run_id: str
    result: WaitResult
    report: RunReport
    ending: Ending
    run: Run | None  # the run as last known


def follow_run(ctx: ActionContext, store: RunStore, run_id: str) -> int:
    settings = ctx.settings
    canceller = _canceller(ctx, run_id) if settings.cancel_on_abort else None
    if canceller is not None:
        canceller.arm()
    else:
        ctx.files.save_state("run_id", run_id)
    reporter = LogReporter(
        ctx.commands,
        annotate_levels=settings.annotate_levels,
        check_annotation_path=ctx.github.workflow_file or ".github",
        annotation_title=f"OdooOps {run_id}",
        secrets=ctx.secrets,
    )
    ctx.commands.info(
        f"Waiting up to {settings.timeout_seconds:g}s for run {run_id} "
        f"(polling at most every {settings.poll_interval_seconds:g}s)."
    )
    try:
        result = wait_for_run(
            store,
            run_id,
            timeout=settings.timeout_seconds,
            schedule=PollSchedule.for_interval(settings.poll_interval_seconds),
            observer=reporter,
            stop=ctx.stop,
            changes=change_feed_for(store, run_id),
        )
    finally:
        reporter.close()
        if canceller is not None and not ctx.stop.is_set():
            canceller.disarm()
    abort = (
        canceller.result(ABORT_CANCEL_JOIN_SECONDS) if canceller and result.outcome == "interrupted" else None
    )
    timeout_cancel = _cancel_on_timeout(ctx, store, run_id) if result.outcome == "timeout" else None
    ending = _ending(ctx, run_id, result, abort, timeout_cancel)
    # A cancel made here changed the run after the last poll: report the run as it answered.
    latest = next((c.run for c in (abort, timeout_cancel) if c is not None and c.run is not None), None)
    followed = Followed(run_id, result, reporter.report, ending, latest or result.run or reporter.report.run)
    return _conclude(ctx, followed)


def _canceller(ctx: ActionContext, run_id: str) -> AbortCanceller:
    def cancel() -> CancelReport:
        # Not stoppable: it runs BECAUSE the step was stopped.
        store = ctx.open_store(ABORT_CANCEL_TIMEOUT_SECONDS, ABORT_CANCEL_RETRIES, interruptible=False)
        try:
            reason = "the GitHub workflow was cancelled while waiting"
            return cancel_safely(store, run_id, reason=reason, cancelled_by=ctx.identity)
        finally:
            store.close()

    return AbortCanceller(run_id, ctx.stop, cancel, ctx.files, ctx.commands)


def _cancel_on_timeout(ctx: ActionContext, store: RunStore, run_id: str) -> CancelReport | None:
    if not ctx.settings.cancel_on_timeout:
        return None
    reason = f"the GitHub step stopped waiting after {ctx.settings.timeout_seconds:g}s (cancel_on_timeout)"
    return cancel_safely(store, run_id, reason=reason, cancelled_by=ctx.identity)


def _reason(run: Run) -> str:
    parts = []
    if run.status_reason:
        parts.append(run.status_reason)
    if run.exit_code is not None:
        parts.append(f"exit code {run.exit_code}")
    return f" ({'; '.join(parts)})" if parts else ""


def _ending(
    ctx: ActionContext,
    run_id: str,
    result: WaitResult,
    abort: CancelReport | None,
    timeout_cancel: CancelReport | None,
) -> Ending:
    run = result.run
    events = f"See the run's log above and its events (ops.run_events where run_id = '{run_id}')."
    if result.outcome == "success" and run is not None:
        return Ending("success", "success", f"Run {run_id} succeeded: {describe(run)}.", 0)
    if result.outcome == "failed" and run is not None:
        return Ending("failed", "failed", f"Run {run_id} ({describe(run)}) failed{_reason(run)}. {events}", 1)
    if result.outcome == "cancelled" and run is not None:
        message = f"Run {run_id} ({describe(run)}) was cancelled{_reason(run)}. {events}"
        return Ending("cancelled", "cancelled", message, 1)
    if result.outcome == "not_found":
        message = (
            f"Run {run_id} was not found: check the run_id input (it must come from a create step "
            "against the same Supabase project as supabase_url)."
        )
        return Ending("not_found", "not_found", message, 1)
    if result.outcome == "timeout":
        return _timeout_ending(ctx, run_id, result, timeout_cancel)
    return _interrupted_ending(run_id, ctx.settings.cancel_on_abort, abort)


def _timeout_ending(
    ctx: ActionContext, run_id: str, result: WaitResult, cancel: CancelReport | None
) -> Ending:
    status = result.run.status if result.run is not None else "unknown"
    message = (
        f"Gave up waiting for run {run_id} after {ctx.settings.timeout_seconds:g}s; it is still {status}."
    )
    if status == "queued":
        message += " No worker claimed it: is a worker running for this project and environment?"
    if cancel is None:
        message += (
            " It keeps going: raise timeout_seconds, cancel it with mode: destroy, or set "
            "cancel_on_timeout: true."
        )
    elif cancel.stopped:
        message += f" cancel_on_timeout: {cancel.detail}."
    else:
        message += f" cancel_on_timeout could not cancel it: {cancel.detail}"
    if result.last_error is not None:
        message += f" Last polling error: {result.last_error}"
    return Ending("timeout", "timeout", message, 1)


def _interrupted_ending(run_id: str, cancel_on_abort: bool, abort: CancelReport | None) -> Ending:
    message = f"The workflow was cancelled while waiting for run {run_id}."
    if not cancel_on_abort:
        message += " cancel_on_abort is false: the run keeps going (cancel it with mode: destroy)."
    elif abort is None:
        message += " The cancel request did not finish in time; the post step will try again."
    elif abort.stopped:
        message += f" cancel_on_abort: {abort.detail}."
    else:
        message += f" It could not be cancelled ({abort.detail}); the post step will try again."
    return Ending("interrupted", "cancelled" if abort and abort.stopped else "error", message, 1)


def _conclude(ctx: ActionContext, followed: Followed) -> int:
    commands, ending, artifacts = ctx.commands, followed.ending, followed.result.artifacts
    if ending.exit_code == 0:
        commands.info(ending.message)
        if artifacts:
            commands.info(f"Artifact: {artifact_url(artifacts)}")
    else:
        commands.error(ending.message, title=f"OdooOps run {ending.outcome.replace('_', ' ')}")
    ctx.files.set_output("run_id", followed.run_id)
    set_run_outputs(ctx.files, run=followed.run, outcome=ending.outcome, artifacts=artifacts)
    markdown = ctx.redact(_summary(ctx, followed))
    ctx.files.append_summary(markdown)
    if ctx.settings.check_run and followed.run is not None and ending.outcome != "interrupted":
        _publish_check(ctx, followed.run, followed, markdown)
    return ending.exit_code


def _suppressed(ctx: ActionContext, report: RunReport) -> dict[str, int]:
    return {
        level: count + ctx.commands.suppressed.get(level, 0)
        for level, count in report.suppressed.items()
        if count + ctx.commands.suppressed.get(level, 0)
    }


def _summary(ctx: ActionContext, followed: Followed) -> str:
    from odooops_action.github.summary import SummaryView, render_summary

    report, ending = followed.report, followed.ending
    view = SummaryView(
        run=followed.run,
        outcome=ending.summary_outcome,
        now=datetime.now(UTC),
        outcome_detail=None if ending.exit_code == 0 else ending.message,
        artifacts=followed.result.artifacts,
        notable_events=report.notable_events,
        log_tail=list(report.log_tail),
        total_events=report.total_events,
        suppressed_annotations=_suppressed(ctx, report),
        github=ctx.github,
        level_counts=report.level_counts,
        status_events=report.status_events,
    )
    return render_summary(view)


def _publish_check(ctx: ActionContext, run: Run, followed: Followed, markdown: str) -> None:
    from odooops_action.github.checks import conclusion_for, publish_check_run
    from odooops_action.github.context import pull_request_from_fork

    token = ctx.settings.github_token
    repository = ctx.github.repository
    if token is None or not repository:
        ctx.commands.warning("check_run is true but GITHUB_REPOSITORY is not set: no check run was created.")
        return
    name = ctx.settings.check_name_for(run.workflow_type)
    outcome = followed.ending.outcome
    result = publish_check_run(
        token.get_secret_value(),
        repository,
        run.git_sha,
        name,
        f"Run {run.run_id}: {outcome.replace('_', ' ')}",
        markdown,
        conclusion_for(outcome),
        followed.report.check_annotations,
        details_url=ctx.github.run_url,
        api_url=ctx.github.api_url,
        from_fork=pull_request_from_fork(ctx.environ),
    )
    if result.degraded_reason:
        ctx.commands.warning(result.degraded_reason, title="Check run not created")
    elif result.error:
        ctx.commands.warning(result.error, title="Check run not published")
    else:
        if result.html_url:
            ctx.files.set_output("check_run_url", result.html_url)
        message = f"Check run {name!r} published with {result.annotations_sent} annotations."
        dropped = result.annotations_dropped + followed.report.check_annotations_dropped
        if dropped:
            message += f" {dropped} more were left out (at most {MAX_CHECK_ANNOTATIONS} per check run)."
        ctx.commands.info(message)
