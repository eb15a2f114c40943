"""``odooops``: queue, wait for and cancel runs; the seed scripts' interfaces as one command.

    odooops create <project_id> <workflow_type> <git_ref> <commit_sha> [env_id]   (env_create.sh)
    odooops wait <run_id> [max_wait_seconds] [sleep_seconds]                       (env_wait_ready.sh)
    odooops destroy <run_id>                                                       (env_destroy.sh)
    odooops worker ...                                                             (the worker)
    odooops list | status | logs | retry | workers | doctor | selftest             (operators)
    odooops token create|list|revoke ...                  (scoped project tokens, docs/SECURITY.md)

stdout carries only the result a script captures (the run id, the artifact URL or ``success``,
``cancelled:<run_id>``); progress and errors go to stderr. Every argument is checked before any
request is sent; a bad one exits 2. Any other error prints one line ``error: <message>`` and exits
with the error's code (1 unless stated otherwise).

Connection: ``SUPABASE_URL`` + ``SUPABASE_SERVICE_ROLE_KEY`` (REST), or ``SUPABASE_URL`` +
``SUPABASE_PUBLISHABLE_KEY`` + ``ODOOOPS_TOKEN`` (a scoped project token), or ``DATABASE_URL``
(PostgreSQL), from the environment or ``./.env``. When both are configured REST is used; ``--rest``
or ``--postgres`` force a choice and ``--database-url`` gives the PostgreSQL URL on the command line.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from odooops_action.domain import artifact_url
from odooops_action.errors import (
    InputError,
    OdooOpsError,
    RunNotFoundError,
    StoppedBySignal,
    TransientError,
)
from odooops_action.validation import (
    parse_poll_interval,
    parse_positive_seconds,
    validate_database_url,
    validate_env_id,
    validate_git_ref,
    validate_idempotency_key,
    validate_project_id,
    validate_run_id,
    validate_sha,
    validate_workflow_type,
)

if TYPE_CHECKING:
    from odooops_action.domain import CreateRunRequest
    from odooops_action.models import CreatedRun, Run
    from odooops_action.store.base import RunStore
    from odooops_action.store.factory import StorePreference
    from odooops_action.waiting import WaitResult

DEFAULT_MAX_WAIT_SECONDS = "1200"
DEFAULT_SLEEP_SECONDS = "5"
DEFAULT_ENV_ID = "dev"
PROGRAM = "odooops"

Handler = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """Argument errors become an :class:`InputError` (one line, exit 2) instead of a usage dump."""

    def error(self, message: str) -> NoReturn:
        usage = " ".join(self.format_usage().split())
        raise InputError(f"{message}.", hint=f"({usage}; see `{self.prog} --help`)")


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments and arguments[0] == "worker":
        return _run_worker(arguments[1:])
    if arguments and arguments[0] == "token":
        from odooops_action import tokens

        return tokens.main(arguments[1:])
    try:
        options = _build_parser().parse_args(arguments)
        handler: Handler = options.handler
        return handler(options)
    except OdooOpsError as error:
        _print_error(error)
        return error.exit_code
    except KeyboardInterrupt:
        stopped = StoppedBySignal("interrupted.")
        _print_error(stopped)
        return stopped.exit_code
    except SystemExit as exiting:  # --help
        return exiting.code if isinstance(exiting.code, int) else 0


# -- parser -------------------------------------------------------------------------------------


def _build_parser() -> _Parser:
    connection = _Parser(add_help=False)
    group = connection.add_argument_group("connection (default: REST when SUPABASE_URL is set)")
    choice = group.add_mutually_exclusive_group()
    choice.add_argument("--rest", action="store_true", help="use the Supabase REST API (SUPABASE_URL + key)")
    choice.add_argument("--postgres", action="store_true", help="use DATABASE_URL (direct PostgreSQL)")
    choice.add_argument("--database-url", metavar="URL", help="connect to this PostgreSQL URL")

    parser = _Parser(prog=PROGRAM, description="Queue, wait for and cancel OdooOps runs.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="command", parser_class=_Parser)

    create = commands.add_parser("create", parents=[connection], help="queue a run; prints its id")
    create.add_argument("project_id")
    create.add_argument("workflow_type", help="build, deploy or test")
    create.add_argument("git_ref", help="branch or tag, e.g. main")
    create.add_argument("commit_sha", help="full 40-character commit SHA")
    create.add_argument("env_id", nargs="?", default=DEFAULT_ENV_ID, help="environment (default: dev)")
    create.add_argument("--idempotency-key", help="queue at most one run per key (retries are safe)")
    create.add_argument("--created-by", help="recorded on the run (default: $USER, else cli)")
    create.set_defaults(handler=_create)

    wait = commands.add_parser("wait", parents=[connection], help="wait for a run; prints its artifact URL")
    wait.add_argument("run_id")
    wait.add_argument("max_wait_seconds", nargs="?", default=DEFAULT_MAX_WAIT_SECONDS, help="default 1200")
    wait.add_argument(
        "sleep_seconds", nargs="?", default=DEFAULT_SLEEP_SECONDS, help="poll interval, default 5"
    )
    wait.add_argument(
        "--cancel-on-timeout", action="store_true", help="cancel the run when the wait times out"
    )
    wait.set_defaults(handler=_wait)

    destroy = commands.add_parser("destroy", parents=[connection], help="cancel a run; prints cancelled:<id>")
    destroy.add_argument("run_id")
    destroy.add_argument("--reason", default="odooops destroy", help="recorded with the cancellation")
    destroy.add_argument("--cancelled-by", help="recorded with the cancellation (default: $USER, else cli)")
    destroy.set_defaults(handler=_destroy)

    commands.add_parser("worker", add_help=False, help="run a worker (see `odooops worker --help`)")
    commands.add_parser(
        "token", add_help=False, help="create, list, revoke project tokens (see `odooops token --help`)"
    )

    from odooops_action.operator.commands import register as register_operator_commands

    register_operator_commands(commands, connection, _connected)
    return parser


# -- commands -----------------------------------------------------------------------------------


def _create(options: argparse.Namespace) -> int:
    from odooops_action.domain import CreateRunRequest, new_key

    # Every invocation has a key, kept across its retries: a retry after a lost answer finds the
    # run instead of queueing a second one (and is told that this invocation queued it).
    given_key = options.idempotency_key
    request = CreateRunRequest(
        project_id=validate_project_id(options.project_id),
        workflow_type=validate_workflow_type(options.workflow_type),
        git_ref=validate_git_ref(options.git_ref),
        git_sha=validate_sha(options.commit_sha),
        env_id=validate_env_id(options.env_id),
        created_by=options.created_by or _current_user(),
        idempotency_key=new_key("cli") if given_key is None else validate_idempotency_key(given_key),
        request_key=new_key("cli-request"),
    )
    created: CreatedRun | None = None
    sent = False
    try:
        with _connected(options) as store:
            sent = True
            try:
                created = store.create_run(request)
            except TransientError as unavailable:
                raise _maybe_queued(unavailable, request.idempotency_key) from unavailable
    except KeyboardInterrupt:
        raise _interrupted_create(request, sent, created) from None
    if not created.created:
        _note(
            f"Run {created.run.run_id} already exists for idempotency key {request.idempotency_key!r} "
            f"(status {created.run.status}); no new run was queued."
        )
    _output(created.run.run_id)
    return 0


def _maybe_queued(unavailable: TransientError, key: str | None) -> TransientError:
    """The connection failed after retries: the run may or may not be queued; say how to tell."""
    return TransientError(
        unavailable.message,
        hint=(
            f"The run may have been queued before that: run the same command again with --idempotency-key "
            f"{key} to get it (or queue it, if it was not) instead of a second one, or look: "
            f"SELECT run_id, status FROM ops.runs WHERE idempotency_key = '{key}';"
        ),
    )


def _interrupted_create(request: CreateRunRequest, sent: bool, created: CreatedRun | None) -> OdooOpsError:
    """Ctrl-C during ``create``: say whether the run is queued, and how to find it when unsure."""
    if created is not None:
        run_id = created.run.run_id
        return StoppedBySignal(
            f"interrupted, but run {run_id} is queued.",
            hint=f"Wait for it with `odooops wait {run_id}`, or cancel it with `odooops destroy {run_id}`.",
        )
    if not sent:
        return StoppedBySignal("interrupted before the request was sent: no run was queued.")
    return StoppedBySignal(
        "interrupted while queuing the run: it may or may not have been queued.",
        hint=(
            "To find out without queuing a second run, repeat the command with the same "
            f"--idempotency-key {request.idempotency_key!r}: it prints the run's id, queuing it "
            "only if it was not queued."
        ),
    )


def _wait(options: argparse.Namespace) -> int:
    from odooops_action.push import change_feed_for
    from odooops_action.waiting import PollSchedule, PrintObserver, run_interruptibly, wait_for_run

    run_id = validate_run_id(options.run_id)
    timeout = parse_positive_seconds(options.max_wait_seconds, "max_wait_seconds")
    interval = parse_poll_interval(options.sleep_seconds, "sleep_seconds")
    schedule = PollSchedule.for_interval(interval)
    with _connected(options) as store:
        _note(f"Waiting for run {run_id} to complete (timeout: {timeout:.15g}s)...")
        result, received = run_interruptibly(
            lambda stop: wait_for_run(
                store,
                run_id,
                timeout=timeout,
                schedule=schedule,
                observer=PrintObserver(),
                stop=stop,
                detail=False,  # the CLI prints [level] message
                changes=change_feed_for(store, run_id),  # LISTEN over a direct connection
            )
        )
        if result.outcome == "timeout" and options.cancel_on_timeout:
            _cancel_after_timeout(store, run_id, timeout)
    return _report_wait(run_id, timeout, result, received)


def _destroy(options: argparse.Namespace) -> int:
    run_id = validate_run_id(options.run_id)
    with _connected(options) as store:
        cancelled = store.cancel_run(
            run_id, reason=options.reason, cancelled_by=options.cancelled_by or _current_user()
        )
    if cancelled.outcome == "already_cancelled":
        _note(f"Run {run_id} was already cancelled{_at(cancelled.run)}; nothing to do.")
    else:
        _note(f"Run {run_id} cancelled.")
    _output(f"cancelled:{run_id}")
    return 0


def _run_worker(arguments: list[str]) -> int:
    try:
        worker_cli = importlib.import_module("odooops_action.worker.cli")
    except ModuleNotFoundError as missing:
        if not (missing.name or "").startswith("odooops_action.worker"):
            raise
        _print_error(OdooOpsError("the worker is not part of this installation (odooops_action.worker)."))
        return 1
    return int(worker_cli.main(arguments))


# -- wait outcomes ------------------------------------------------------------------------------


def _report_wait(run_id: str, timeout: float, result: WaitResult, received: signal.Signals | None) -> int:
    run = result.run
    if result.outcome == "success":
        _note(f"Run completed successfully: {run_id}")
        _output(artifact_url(result.artifacts) or "success")
        return 0
    if result.outcome == "not_found":
        raise RunNotFoundError(
            f"run {run_id} not found.",
            hint="Check the id printed by `odooops create` (ops.runs lists the runs).",
        )
    if run is None:  # no poll was ever answered: the run may well exist
        raise _never_answered(run_id, timeout, result, received)
    if result.outcome == "failed":
        raise OdooOpsError(
            f"run {run_id} failed{_failure_detail(run)}.",
            hint=(
                f"See the events above, or query ops.run_events: SELECT level, message FROM ops.run_events "
                f"WHERE run_id = '{run_id}' ORDER BY seq;"
            ),
        )
    if result.outcome == "cancelled":
        reason = f" ({run.status_reason})" if run.status_reason else ""
        raise OdooOpsError(f"run {run_id} was cancelled{reason}{_at(run)}.")
    if result.outcome == "interrupted":
        signal_name = received.name if received is not None else "a stop request"
        raise StoppedBySignal(
            f"interrupted by {signal_name} while waiting for run {run_id} (status {run.status}).",
            signal_number=received,
            hint=f"The run goes on; cancel it with `odooops destroy {run_id}`.",
        )
    last_error = f" The last poll failed: {result.last_error}" if result.last_error is not None else ""
    raise OdooOpsError(
        f"timed out after {timeout:.15g}s waiting for run {run_id} (last status: {run.status}).{last_error}",
        hint=f"Increase max_wait_seconds, or cancel the run with `odooops destroy {run_id}`.",
    )


def _never_answered(
    run_id: str, timeout: float, result: WaitResult, received: signal.Signals | None
) -> OdooOpsError:
    """The wait ended before any poll got an answer: the run's state is unknown, not "not found"."""
    if result.outcome == "interrupted":
        signal_name = received.name if received is not None else "a stop request"
        return StoppedBySignal(
            f"interrupted by {signal_name} before any poll of run {run_id} was answered.",
            signal_number=received,
            hint=f"The run's state is unknown; see it with `odooops wait {run_id}`.",
        )
    last = f" The last poll failed: {result.last_error.message}" if result.last_error is not None else ""
    return TransientError(
        f"could not reach the server: no poll of run {run_id} was answered in {timeout:.15g}s, so its "
        f"state is unknown.{last}",
        hint=f"Check the connection settings and the server, then wait again: `odooops wait {run_id}`.",
    )


def _cancel_after_timeout(store: RunStore, run_id: str, timeout: float) -> None:
    try:
        cancelled = store.cancel_run(run_id, reason=f"odooops wait timed out after {timeout:.15g}s")
    except OdooOpsError as error:
        _note(f"Could not cancel run {run_id} after the timeout: {error}")
        return
    _note(f"Cancelled run {run_id} after the timeout ({cancelled.outcome}).")


def _failure_detail(run: Run) -> str:
    """``(exit code 3: <reason>)``, without saying the exit code twice when the reason does."""
    reason = run.status_reason or ""
    exit_code = f"exit code {run.exit_code}" if run.exit_code is not None else ""
    if exit_code and f"code {run.exit_code}" in reason:
        exit_code = ""
    detail = ": ".join(part for part in (exit_code, reason) if part)
    return f" ({detail})" if detail else ""


def _at(run: Run) -> str:
    from odooops_action.domain import utc_text

    return f" at {utc_text(run.finished_at)}" if run.finished_at is not None else ""


# -- plumbing -----------------------------------------------------------------------------------


@contextmanager
def _connected(options: argparse.Namespace) -> Iterator[RunStore]:
    """The store chosen by the connection options and the environment; closed on exit."""
    from odooops_action.config import ConnectionSettings
    from odooops_action.store.factory import open_store

    environ = dict(os.environ)
    prefer: StorePreference = "auto"
    if options.database_url:
        environ["DATABASE_URL"] = validate_database_url(options.database_url, "--database-url")
        prefer = "postgres"
    elif options.postgres:
        prefer = "postgres"
    elif options.rest:
        prefer = "rest"
    store = open_store(ConnectionSettings.from_env(environ, Path(".env")), prefer)
    try:
        yield store
    finally:
        store.close()


def _current_user() -> str:
    return os.environ.get("USER") or "cli"


def _output(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _note(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _print_error(error: OdooOpsError) -> None:
    _note("error: " + " ".join(str(error).split()))


if __name__ == "__main__":
    sys.exit(main())
