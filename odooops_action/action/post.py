"""The post step (``post-entrypoint``, ``post-if: always()``): the fallback cancellation.

It runs in a new container after the job's steps. The main step saved ``run_id`` and
``should_cancel`` in ``GITHUB_STATE``; the runner hands them back as ``STATE_run_id`` and
``STATE_should_cancel``. Only ``should_cancel=true`` — the main step was following a run with
``cancel_on_abort`` and was stopped (killed, timed out, or its own cancel failed) before it could
cancel — leads to a request; every other case ends at once without touching the network.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import closing

from odooops_action.action.runtime import StoreOpener, actor_identity, cancel_safely, open_rest_store
from odooops_action.action.settings import InvalidInputsError, connection_from_environ
from odooops_action.errors import InputError
from odooops_action.github.commands import WorkflowCommands
from odooops_action.github.context import GitHubContext
from odooops_action.validation import validate_run_id

POST_TIMEOUT_SECONDS = 10.0
POST_RETRIES = 2


def run_post(
    environ: Mapping[str, str], commands: WorkflowCommands, store_opener: StoreOpener = open_rest_store
) -> int:
    run_id = environ.get("STATE_run_id", "").strip()
    if environ.get("STATE_should_cancel", "").strip() != "true" or not run_id:
        commands.debug("Post step: the main step left no run to cancel.")
        return 0
    try:
        url, key, token = connection_from_environ(environ)
        validate_run_id(run_id, "STATE_run_id")
    except InvalidInputsError as exc:
        for problem in exc.problems:
            commands.error(problem, title="OdooOps post step")
        return 1
    except InputError as exc:
        commands.error(str(exc), title="OdooOps post step")
        return 1
    commands.info(f"The main step was stopped while following run {run_id}: cancelling it.")
    store = store_opener(url, key, POST_TIMEOUT_SECONDS, POST_RETRIES, "supabase_key", token=token)
    with closing(store):
        report = cancel_safely(
            store,
            run_id,
            reason="the GitHub job was stopped while waiting (post step)",
            cancelled_by=actor_identity(GitHubContext.from_env(environ)),
        )
    if report.outcome == "cancelled":
        commands.warning(
            f"Run {run_id} was cancelled by the post step: the main step was stopped before it could "
            "cancel it.",
            title="OdooOps run cancelled",
        )
        return 0
    if report.stopped:
        commands.info(f"Nothing to cancel: {report.detail}")
        return 0
    commands.error(f"Could not cancel run {run_id}: {report.detail}", title="OdooOps post step")
    return 1
