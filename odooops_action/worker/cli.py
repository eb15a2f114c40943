"""``odooops worker``: the command line of the worker (``main(argv)`` returns the exit code)."""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from odooops_action.errors import ConfigError, InputError, OdooOpsError
from odooops_action.models import WORKFLOW_TYPES, ClaimFilter, Run
from odooops_action.worker.context import WorkerContext
from odooops_action.worker.log import WorkerLog
from odooops_action.worker.options import DEFAULT_COMMAND, WorkerOptions
from odooops_action.worker.slot import ClaimedRunsLookup
from odooops_action.worker.supervisor import StoreOpener, run_worker

if TYPE_CHECKING:
    from odooops_action.config import ConnectionSettings
    from odooops_action.store.base import RunStore
    from odooops_action.store.pg import PgStore

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="odooops worker",
        description=(
            "Claim queued OdooOps runs and execute them with a command, streaming its output into "
            "ops.run_events. Connects with DATABASE_URL (LISTEN/NOTIFY wake-ups), or with SUPABASE_URL "
            "and SUPABASE_SERVICE_ROLE_KEY (REST, polling)."
        ),
    )
    add = parser.add_argument
    add(
        "--command",
        default=DEFAULT_COMMAND,
        help="program (and arguments, shell-quoted) run with the run id "
        f"appended (default: {DEFAULT_COMMAND})",
    )
    add("--project", help="only claim runs of this project")
    add("--env", help="only claim runs of this environment")
    add("--workflow-type", choices=WORKFLOW_TYPES, help="only claim runs of this workflow type")
    add("--concurrency", type=int, default=1, help="runs executed at the same time (default: 1)")
    add("--once", action="store_true", help="process at most one run (per slot), then exit 0")
    add("--poll-interval", type=float, default=5.0, help="seconds between claims when idle (default: 5)")
    add("--heartbeat-interval", type=float, default=10.0, help="seconds between heartbeats (default: 10)")
    add(
        "--cancel-check-interval",
        type=float,
        default=2.0,
        help="seconds between cancellation checks while running (default: 2)",
    )
    add(
        "--lease",
        type=int,
        default=60,
        help="seconds without heartbeat after which a run counts as stalled (default: 60)",
    )
    add(
        "--max-attempts",
        type=int,
        default=3,
        help="claims of a run before a stalled run fails instead of being requeued (default: 3)",
    )
    add("--kill-grace", type=float, default=10.0, help="seconds between SIGTERM and SIGKILL (default: 10)")
    add(
        "--shutdown-grace",
        type=float,
        default=30.0,
        help="seconds a running run may take to finish after SIGTERM/SIGINT (default: 30)",
    )
    add("--worker-name", help="replaces worker-<host>-<pid> in the worker id (must be unique)")
    add(
        "--keep-credentials",
        action="store_true",
        help="pass DATABASE_URL and the Supabase keys on to the command (removed by default)",
    )
    add(
        "--store",
        choices=("auto", "postgres", "rest"),
        default="auto",
        help="auto: PostgreSQL when DATABASE_URL is set, else the REST API",
    )
    return parser


def options_from(args: argparse.Namespace) -> WorkerOptions:
    try:
        command = tuple(shlex.split(args.command))
    except ValueError as exc:
        raise InputError(f"--command cannot be parsed: {exc}.") from None
    return WorkerOptions(
        command=command,
        filters=ClaimFilter(project_id=args.project, env_id=args.env, workflow_type=args.workflow_type),
        concurrency=args.concurrency,
        once=args.once,
        poll_interval=args.poll_interval,
        heartbeat_interval=args.heartbeat_interval,
        cancel_check_interval=args.cancel_check_interval,
        lease_seconds=args.lease,
        max_attempts=args.max_attempts,
        kill_grace=args.kill_grace,
        shutdown_grace=args.shutdown_grace,
        worker_name=args.worker_name,
        keep_credentials=args.keep_credentials,
    )


def main(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> int:
    try:
        args = build_parser().parse_args(list(argv))
    except SystemExit as exc:  # --help, or a usage error already printed by argparse
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    log = WorkerLog()
    try:
        options = options_from(args)
        check_command(options.command[0])
        opener, listen_dsn = store_opener(args.store, os.environ if environ is None else environ)
    except (ConfigError, InputError) as exc:
        print(f"odooops worker: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return run_worker(WorkerContext(options, log), opener, listen_dsn)
    except OdooOpsError as exc:
        log("fatal", level="error", error=exc)
        return exc.exit_code


def check_command(program: str) -> None:
    """Refuse to start with a command that cannot run: every claimed run would fail at once."""
    if os.sep in program:
        if not (os.path.isfile(program) and os.access(program, os.X_OK)):
            default = (
                " It is the default (the seed's layout): pass --command with your build script; the "
                "repository's sample is examples/execute_run.sh."
                if program == DEFAULT_COMMAND
                else ""
            )
            raise InputError(
                f"--command {program} is not an executable file (relative paths start from {os.getcwd()})."
                + default
            )
    elif shutil.which(program) is None:
        raise InputError(f"--command {program} was not found on PATH.")


def store_opener(prefer: str, environ: Mapping[str, str]) -> tuple[StoreOpener, str | None]:
    """How each slot gets its store, and the DSN to LISTEN on (None when going through REST)."""
    from odooops_action.config import ConnectionSettings

    settings = ConnectionSettings.from_env(environ, Path(".env"))
    use_postgres = prefer == "postgres" or (prefer == "auto" and settings.database_url is not None)
    if use_postgres:
        dsn = settings.require_database_url()
        return (lambda: _pg_store(dsn)), dsn
    settings.require_rest()
    return (lambda: (_rest_store(settings), None)), None


def _pg_store(dsn: str) -> tuple[RunStore, ClaimedRunsLookup]:
    from odooops_action.store.pg import PgStore
    from odooops_action.store.retry import RetryPolicy

    # Few, short retries: the worker's loop retries itself and must stay responsive meanwhile.
    store = PgStore(dsn, connect_timeout=5, retry=RetryPolicy(max_attempts=2, base_delay=0.2, max_delay=0.5))
    return store, lambda worker_id: _claimed_by(store, worker_id)


def _rest_store(settings: ConnectionSettings) -> RunStore:
    from odooops_action.store.factory import open_store

    return open_store(settings, prefer="rest")


def _claimed_by(store: PgStore, worker_id: str) -> list[Run]:
    """Runs in status claimed held by ``worker_id`` (a claim whose answer was lost)."""
    import psycopg

    from odooops_action.errors import TransientError

    try:
        with store.connection().cursor() as cur:
            cur.execute(
                "SELECT * FROM ops.runs WHERE claimed_by = %s AND status = 'claimed' ORDER BY claimed_at",
                (worker_id,),
            )
            return [Run.model_validate(row) for row in cur.fetchall()]
    except psycopg.errors.InsufficientPrivilege:
        # A login in odooops_worker reads no table (docs/SECURITY.md): it relies on its next claim.
        store.close()
        return []
    except psycopg.Error as exc:
        store.close()
        raise TransientError(f"could not look up the runs claimed by {worker_id}: {exc}") from exc
