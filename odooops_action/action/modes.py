"""The three modes of the main step: ``create`` (queue, optionally wait), ``wait`` and ``destroy``.

``destroy`` cancels a run. A run that is already cancelled is a notice and exit 0. A run that
already finished (success or failed) cannot be cancelled; that is a warning and exit 0 as well:
the point of ``destroy`` — nothing left running — holds, and cleanup steps (often
``if: always()``) should not fail a job for it. The ``outcome`` output (``already_finished``) and
the ``status`` output tell the two apart. A run that does not exist fails the step.
"""

from __future__ import annotations

from contextlib import closing
from typing import TYPE_CHECKING

from odooops_action.action.follow import follow_run
from odooops_action.action.markdown import code, plain
from odooops_action.action.runtime import (
    ActionContext,
    CancelReport,
    cancel_safely,
    describe,
    set_run_outputs,
)
from odooops_action.action.settings import derived_idempotency_key, label
from odooops_action.domain import CreateRunRequest, new_key
from odooops_action.errors import TransientError

if TYPE_CHECKING:  # pydantic models: imported when a response is parsed, not at start-up
    from odooops_action.models import Run


def run_mode(ctx: ActionContext) -> int:
    mode = ctx.settings.mode
    if mode == "create":
        return create(ctx)
    if mode == "wait":
        return wait(ctx)
    return destroy(ctx)


def create(ctx: ActionContext) -> int:
    settings = ctx.settings
    assert settings.workflow_type is not None
    assert settings.git_ref is not None
    assert settings.commit_sha is not None
    request = CreateRunRequest(
        project_id=settings.project_id,
        workflow_type=settings.workflow_type,
        git_ref=settings.git_ref,
        git_sha=settings.commit_sha,
        env_id=settings.env_id,
        created_by=ctx.identity,
        # Outside GitHub Actions no step identity exists: a key of this invocation still makes
        # its retries safe.
        idempotency_key=derived_idempotency_key(settings, ctx.environ) or new_key("action"),
        request_key=new_key("action-request"),
        metadata=settings.metadata,
    )
    if settings.check_run and not settings.wait:
        ctx.commands.warning(
            f"{label('check_run')} is true but {label('wait')} is false: a check run reports a run's "
            "result, so it is published only by a step that follows the run (wait: true, or mode: wait).",
            title="check_run has no effect here",
        )
    with closing(ctx.open_store()) as store:
        try:
            created = store.create_run(request)
        except TransientError as unavailable:
            raise _maybe_queued(
                unavailable, request.idempotency_key, settings.idempotency_key
            ) from unavailable
        run = created.run
        # First, so that a later step (or the post step) can act on the run whatever happens next.
        ctx.files.set_output("run_id", run.run_id)
        ctx.files.save_state("run_id", run.run_id)
        if created.created:
            ctx.commands.info(f"Queued run {run.run_id}: {describe(run)}.")
        else:
            ctx.commands.info(
                f"Run {run.run_id} was already queued by an earlier try of this step (same idempotency "
                f"key); it is {run.status} and was not queued again."
            )
        if settings.wait:
            return follow_run(ctx, store, run.run_id)
        # A run found by its key may be well along (or done): report it as it is now, artifacts too.
        current = None if created.created else store.poll_run(run.run_id, max_events=0)
    if current is None:
        set_run_outputs(ctx.files, run=run, outcome="queued")
        ctx.commands.notice(f"Run {run.run_id} queued: {describe(run)}.", title="OdooOps run queued")
    else:
        run = current.run
        set_run_outputs(ctx.files, run=run, outcome="existing", artifacts=current.artifacts)
        ctx.commands.notice(
            f"Run {run.run_id} was not queued again: {describe(run)}, {run.status}.",
            title="OdooOps run already queued",
        )
    ctx.files.append_summary(ctx.redact(_queued_summary(run, created.created)))
    return 0


def _maybe_queued(unavailable: TransientError, key: str | None, given: str | None) -> TransientError:
    """The connection failed after retries: the run may or may not be queued; say how to tell."""
    if given:
        again = f"re-running the job with the same {label('idempotency_key')} gets it, not a second one"
    else:  # derived from the workflow run's attempt: "Re-run jobs" derives another key
        again = '"Re-run jobs" starts a new workflow attempt, which queues a new run: look for this one first'
    return TransientError(
        unavailable.message,
        hint=(
            f"The run may have been queued before that (idempotency key {key}); {again}: "
            f"SELECT run_id, status FROM ops.runs WHERE idempotency_key = '{key}';"
        ),
    )


def wait(ctx: ActionContext) -> int:
    run_id = ctx.settings.run_id
    assert run_id is not None
    with closing(ctx.open_store()) as store:
        return follow_run(ctx, store, run_id)


def destroy(ctx: ActionContext) -> int:
    run_id = ctx.settings.run_id
    assert run_id is not None
    with closing(ctx.open_store()) as store:
        report = cancel_safely(store, run_id, reason="cancelled by a destroy step", cancelled_by=ctx.identity)
    ctx.files.set_output("run_id", run_id)
    set_run_outputs(ctx.files, run=report.run, outcome=report.outcome)
    exit_code = _report_destroy(ctx, run_id, report)
    ctx.files.append_summary(ctx.redact(_destroy_summary(run_id, report)))
    return exit_code


def _report_destroy(ctx: ActionContext, run_id: str, report: CancelReport) -> int:
    commands = ctx.commands
    if report.outcome == "cancelled":
        commands.info(f"Cancelled run {run_id}.")
        return 0
    if report.outcome == "already_cancelled":
        commands.notice(f"Nothing to do: {report.detail}.", title="OdooOps run already cancelled")
        return 0
    if report.outcome == "already_finished":
        status = report.run.status if report.run is not None else "finished"
        commands.warning(
            f"Run {run_id} already finished ({status}), so there is nothing to cancel: {report.detail}",
            title="OdooOps run already finished",
        )
        return 0
    if report.outcome == "not_found":
        commands.error(
            f"Run {run_id} was not found, so it could not be cancelled: check the run_id input.",
            title="OdooOps run not found",
        )
        return 1
    commands.error(f"Could not cancel run {run_id}: {report.detail}", title="OdooOps cancel failed")
    return 1


def _queued_summary(run: Run, created: bool) -> str:
    verb = (
        "was queued"
        if created
        else f"was already queued by an earlier try of this step; it is {plain(run.status)}"
    )
    return (
        "## OdooOps run\n\n"
        f"🕒 **The {plain(run.workflow_type)} run {code(run.run_id)} of {plain(run.project_id)} on "
        f"{plain(run.env_id)} {verb}** (commit {code(run.short_sha)}, ref {code(run.git_ref)}).\n\n"
        f"Follow it in a later step with `mode: wait` and `run_id: {run.run_id}`.\n"
    )


_DESTROY_HEADLINES = {
    "cancelled": "🚫 **Run {run} was cancelled.**",
    "already_cancelled": "🚫 **Run {run} was already cancelled.**",
    "already_finished": "ℹ️ **Run {run} had already finished ({status}); nothing was cancelled.**",  # noqa: RUF001
    "not_found": "❓ **Run {run} was not found.**",
    "error": "⚠️ **Run {run} could not be cancelled.**",
}


def _destroy_summary(run_id: str, report: CancelReport) -> str:
    status = plain(report.run.status) if report.run is not None else "finished"
    headline = _DESTROY_HEADLINES[report.outcome].format(run=code(run_id), status=status)
    return f"## OdooOps run\n\n{headline}\n\n{plain(report.detail, 2000)}\n"
