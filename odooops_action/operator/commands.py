"""``odooops list | status | logs | retry | workers`` (and the registration of doctor and selftest).

Every argument is checked before any request (exit 2 with one line naming it); each command is one
``ops.*`` function call (``logs`` pages through ``ops.poll_run``), over REST or PostgreSQL alike.
Human output goes to stdout as aligned tables; ``--json`` prints the documented fields instead
(see README, "Operating the queue"), with timestamps in ISO 8601.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from odooops_action.domain import EVENT_LEVELS, RUN_STATUSES, WORKFLOW_TYPES, new_key
from odooops_action.operator import output
from odooops_action.operator.calls import call
from odooops_action.validation import (
    MAX_LIST_LIMIT,
    parse_count,
    parse_duration,
    validate_choice,
    validate_env_id,
    validate_project_id,
    validate_run_id,
    validate_workflow_type,
)

if TYPE_CHECKING:
    from odooops_action.models import Artifact, Run, RunEvent
    from odooops_action.operator.views import RunStatus as RunStatusView
    from odooops_action.operator.views import Worker
    from odooops_action.store.base import RunStore

Connect = Callable[[argparse.Namespace], AbstractContextManager["RunStore"]]

DEFAULT_LIST_LIMIT = "20"
DEFAULT_STATUS_EVENTS = "10"
FOLLOW_POLL_SECONDS = 2.0  # logs --follow over REST; over PostgreSQL notifications wake it

# The fields --json prints for a run, in this order; documented in the README.
RUN_FIELDS: tuple[str, ...] = (
    "run_id",
    "project_id",
    "env_id",
    "workflow_type",
    "git_ref",
    "git_sha",
    "status",
    "attempt",
    "claimed_by",
    "queued_at",
    "claimed_at",
    "started_at",
    "finished_at",
    "heartbeat_at",
    "exit_code",
    "status_reason",
    "created_by",
)
EVENT_FIELDS: tuple[str, ...] = ("seq", "created_at", "level", "message", "payload")
ARTIFACT_FIELDS: tuple[str, ...] = (
    "artifact_id",
    "artifact_type",
    "storage_path",
    "digest",
    "size_bytes",
    "created_at",
)
WORKER_FIELDS: tuple[str, ...] = (
    "worker_id",
    "host",
    "pid",
    "version",
    "state",
    "current_run_id",
    "filters",
    "started_at",
    "last_seen_at",
)


def register(commands: Any, connection: argparse.ArgumentParser, connect: Connect) -> None:
    """Add the operator subcommands to the CLI's subparsers; ``connect`` opens the store."""
    from odooops_action.operator import doctor, selftest

    def bind(handler: Callable[[argparse.Namespace, Connect], int]) -> Callable[[argparse.Namespace], int]:
        return lambda options: handler(options, connect)

    json_flag = argparse.ArgumentParser(add_help=False)
    json_flag.add_argument("--json", action="store_true", help="print JSON (documented field names)")
    parents = [connection, json_flag]

    listing = commands.add_parser("list", parents=parents, help="list runs, newest first")
    listing.add_argument("--project", help="only this project")
    listing.add_argument("--env", help="only this environment")
    listing.add_argument("--status", help=f"only this status ({', '.join(RUN_STATUSES)})")
    listing.add_argument("--workflow-type", help="only this workflow type (build, deploy, test)")
    listing.add_argument("--since", help="only runs queued within this duration, e.g. 30m, 2h, 7d")
    listing.add_argument("--limit", default=DEFAULT_LIST_LIMIT, help="runs per page (default 20, max 1000)")
    listing.add_argument("--before", metavar="RUN_ID", help="the page after this run (printed at the end)")
    listing.set_defaults(handler=bind(list_command))

    status = commands.add_parser(
        "status", parents=parents, help="a run: facts, timeline, artifacts, last events"
    )
    status.add_argument("run_id")
    status.add_argument("--events", default=DEFAULT_STATUS_EVENTS, help="last events shown (default 10)")
    status.set_defaults(handler=bind(status_command))

    logs = commands.add_parser("logs", parents=parents, help="a run's events, each once and in order")
    logs.add_argument("run_id")
    logs.add_argument(
        "--follow", "-f", action="store_true", help="stream until the run ends; exit with its verdict"
    )
    logs.add_argument("--level", help="minimum level: debug, info, warn or error")
    logs.add_argument("--since", metavar="SEQ", default="0", help="only events after this sequence number")
    logs.set_defaults(handler=bind(logs_command))

    retry = commands.add_parser(
        "retry", parents=parents, help="queue a finished run again; prints the new id"
    )
    retry.add_argument("run_id")
    retry.add_argument("--created-by", help="recorded on the new run (default: $USER, else cli)")
    retry.set_defaults(handler=bind(retry_command))

    workers = commands.add_parser("workers", parents=parents, help="workers seen recently and what they run")
    workers.add_argument(
        "--seen-within", default="24h", help="workers seen within this duration (default 24h)"
    )
    workers.set_defaults(handler=bind(workers_command))

    doctor.register(commands, parents, connect)
    selftest.register(commands, parents, connect)


# -- list -----------------------------------------------------------------------------------------


def list_command(options: argparse.Namespace, connect: Connect) -> int:
    arguments = _list_arguments(options)
    from odooops_action.operator.views import RunList

    with connect(options) as store:
        found = RunList.model_validate(call(store, "list_runs", arguments))
    next_before = found.runs[-1].run_id if found.has_more and found.runs else None
    if options.json:
        output.print_json(
            {
                "runs": [run_json(run) for run in found.runs],
                "has_more": found.has_more,
                "next_before": next_before,
            }
        )
        return 0
    printer = output.Printer()
    if not found.runs:
        printer.line("No runs match." if _filtered(options) else "No runs yet.")
        return 0
    printer.table(
        ["RUN", "PROJECT", "ENV", "TYPE", "REF", "STATUS", "QUEUED", "TOOK", "WORKER"],
        [
            [
                run.run_id,
                run.project_id,
                run.env_id,
                run.workflow_type,
                output.safe(run.git_ref, 30),
                run.status,
                output.ago(run.queued_at, found.now),
                output.between(run.started_at, run.finished_at),
                output.safe(run.claimed_by, 40) or "-",
            ]
            for run in found.runs
        ],
        styles=[None, None, None, None, None, "value", None, None, None],
    )
    if next_before is not None:
        again = " ".join([*_shell_words(options), "--before", next_before])
        printer.line(printer.paint(f"More runs: odooops list {again}".rstrip(), "dim"))
    return 0


def _list_arguments(options: argparse.Namespace) -> dict[str, Any]:
    since = None if options.since is None else parse_duration(options.since, "--since")
    status = None if options.status is None else validate_choice(options.status, RUN_STATUSES, "--status")
    return {
        "project_id": None if options.project is None else validate_project_id(options.project, "--project"),
        "env_id": None if options.env is None else validate_env_id(options.env, "--env"),
        "status": status,
        "workflow_type": (
            None
            if options.workflow_type is None
            else validate_workflow_type(options.workflow_type, "--workflow-type")
        ),
        # The database's clock decides what "within 2h" means.
        "since_seconds": since,
        "before_run_id": None if options.before is None else validate_run_id(options.before, "--before"),
        "max_runs": parse_count(options.limit, "--limit", minimum=1, maximum=MAX_LIST_LIMIT),
    }


def _filtered(options: argparse.Namespace) -> bool:
    return any(
        getattr(options, name) for name in ("project", "env", "status", "workflow_type", "since", "before")
    )


def _shell_words(options: argparse.Namespace) -> list[str]:
    words: list[str] = []
    for flag, name in (
        ("--project", "project"),
        ("--env", "env"),
        ("--status", "status"),
        ("--workflow-type", "workflow_type"),
        ("--since", "since"),
    ):
        if getattr(options, name):
            words += [flag, shlex.quote(getattr(options, name))]
    if options.limit != DEFAULT_LIST_LIMIT:
        words += ["--limit", shlex.quote(options.limit)]
    return words


# -- status ---------------------------------------------------------------------------------------


def status_command(options: argparse.Namespace, connect: Connect) -> int:
    run_id = validate_run_id(options.run_id)
    last = parse_count(options.events, "--events", maximum=1000)
    from odooops_action.operator.views import RunStatus

    with connect(options) as store:
        found = RunStatus.model_validate(call(store, "run_status", {"run_id": run_id, "last_events": last}))
    if options.json:
        output.print_json(
            {
                "run": run_json(found.run) | {"metadata": found.run.metadata},
                "artifacts": [artifact_json(a) for a in found.artifacts],
                "timeline": [event_json(e) for e in found.timeline],
                "events": [event_json(e) for e in found.events],
            }
        )
        return 0
    _print_status(output.Printer(), found)
    return 0


def _print_status(printer: output.Printer, found: RunStatusView) -> None:
    run, now, events = found.run, found.now, found.events
    printer.line(f"{printer.paint(run.run_id, 'bold')}  {printer.paint(run.status, run.status)}")
    facts = [
        ("project", run.project_id),
        ("environment", run.env_id),
        ("workflow", run.workflow_type),
        ("ref", output.safe(run.git_ref)),
        ("commit", run.git_sha),
        ("queued", output.when(run.queued_at, now)),
        ("started", output.when(run.started_at, now)),
        ("finished", output.when(run.finished_at, now)),
        ("took", output.between(run.started_at, run.finished_at)),
        ("attempt", str(run.attempt)),
        ("worker", output.safe(run.claimed_by) or "-"),
    ]
    if run.exit_code is not None:
        facts.append(("exit code", str(run.exit_code)))
    if run.status_reason:
        facts.append(("reason", output.safe(run.status_reason)))
    if run.created_by:
        facts.append(("created by", output.safe(run.created_by)))
    if run.metadata.get("retry_of"):
        facts.append(("retry of", output.safe(str(run.metadata["retry_of"]))))
    printer.facts(facts)
    printer.line()
    printer.line(printer.paint("Timeline", "bold"))
    printer.table(
        ["TIME", "STATUS", "EVENT"],
        [
            [output.timestamp(e.created_at), str(e.payload.get("to", "")), output.safe(e.message, 120)]
            for e in found.timeline
        ],
        styles=[None, "value", None],
    )
    printer.line()
    printer.line(printer.paint("Artifacts", "bold"))
    if found.artifacts:
        printer.table(
            ["TYPE", "LOCATION", "DIGEST", "SIZE"],
            [
                [
                    a.artifact_type,
                    output.safe(a.storage_path, 80),
                    (a.digest or "-")[:19],
                    "-" if a.size_bytes is None else f"{a.size_bytes:,}",
                ]
                for a in found.artifacts
            ],
        )
    else:
        printer.line("none")
    printer.line()
    shown = f"last {len(events)} of {run.event_seq}" if len(events) < run.event_seq else f"{len(events)}"
    printer.line(printer.paint(f"Events ({shown}; all: odooops logs {run.run_id})", "bold"))
    for event in events:
        printer.line(event_line(printer, event))


# -- logs -----------------------------------------------------------------------------------------


def logs_command(options: argparse.Namespace, connect: Connect) -> int:
    run_id = validate_run_id(options.run_id)
    level = None if options.level is None else validate_choice(options.level, EVENT_LEVELS, "--level")
    after = parse_count(options.since, "--since")
    minimum = EVENT_LEVELS.index(level) if level is not None else 0
    printer = output.Printer()

    def show(events: Sequence[RunEvent]) -> None:
        for event in events:
            if EVENT_LEVELS.index(event.level) < minimum:
                continue
            if options.json:
                printer.line(_compact_json(event_json(event)))
            else:
                printer.line(event_line(printer, event))
        printer.stream.flush()

    with connect(options) as store:
        if options.follow:
            return _follow(store, run_id, after, show)
        for page in _pages(store, run_id, after):
            show(page)
    return 0


def _pages(store: RunStore, run_id: str, after: int) -> Iterator[Sequence[RunEvent]]:
    cursor = after
    while True:
        poll = store.poll_run(run_id, after_seq=cursor)
        yield poll.events
        cursor = poll.cursor_after(cursor)
        if not poll.has_more:
            return


def _follow(store: RunStore, run_id: str, after: int, show: Callable[[Sequence[RunEvent]], None]) -> int:
    from odooops_action.errors import RunNotFoundError, StoppedBySignal
    from odooops_action.push import change_feed_for
    from odooops_action.waiting import PollSchedule, run_interruptibly, wait_for_run

    class Shower:
        def on_status(self, run: Run, previous: str | None) -> None:
            pass

        def on_events(self, run: Run, events: Sequence[RunEvent]) -> None:
            show(events)

    result, received = run_interruptibly(
        lambda stop: wait_for_run(
            store,
            run_id,
            timeout=math.inf,
            schedule=PollSchedule.for_interval(FOLLOW_POLL_SECONDS),
            observer=Shower(),
            stop=stop,
            after_seq=after,
            # Over a direct connection: LISTEN on the run's channel, no polling while it is quiet.
            changes=change_feed_for(store, run_id),
        )
    )
    if result.outcome == "not_found":
        raise RunNotFoundError(f"run {run_id} not found.", hint="List the runs with `odooops list`.")
    if result.outcome == "interrupted":
        raise StoppedBySignal(f"stopped following run {run_id}; the run goes on.", signal_number=received)
    return 0 if result.outcome == "success" else 1


def _compact_json(payload: Any) -> str:
    import json

    return json.dumps(payload, sort_keys=True, default=str)


# -- retry ----------------------------------------------------------------------------------------


def retry_command(options: argparse.Namespace, connect: Connect) -> int:
    import os

    run_id = validate_run_id(options.run_id)
    created_by = options.created_by or os.environ.get("USER") or "cli"
    # One key per invocation: a repeated request returns the run this invocation created.
    key = new_key("retry")
    from odooops_action.operator.views import RetriedRun

    with connect(options) as store:
        retried = RetriedRun.model_validate(
            call(
                store,
                "retry_run",
                {"run_id": run_id, "created_by": created_by, "idempotency_key": key, "request_key": key},
            )
        )
    if options.json:
        output.print_json({"run": run_json(retried.run), "retry_of": retried.retry_of})
        return 0
    sys.stderr.write(f"Run {retried.run.run_id} queued as a retry of {retried.retry_of}.\n")
    output.Printer().line(retried.run.run_id)
    return 0


# -- workers --------------------------------------------------------------------------------------


def workers_command(options: argparse.Namespace, connect: Connect) -> int:
    seen = parse_duration(options.seen_within, "--seen-within")
    from odooops_action.operator.views import WorkerList

    with connect(options) as store:
        found = WorkerList.model_validate(
            call(store, "list_workers", {"seen_within_seconds": max(1, min(int(seen), 2**31 - 1))})
        )
    if options.json:
        output.print_json({"workers": [worker_json(w) for w in found.workers]})
        return 0
    printer = output.Printer()
    if not found.workers:
        printer.line(f"No worker seen in the last {output.duration(seen)}.")
        return 0
    printer.table(
        ["WORKER", "HOST", "STATE", "LAST SEEN", "RUNNING", "FILTERS", "UP SINCE"],
        [
            [
                output.safe(w.worker_id, 60),
                output.safe(w.host, 40) or "-",
                w.state,
                output.ago(w.last_seen_at, found.now),
                w.current_run_id or "-",
                filters_text(w),
                output.timestamp(w.started_at),
            ]
            for w in found.workers
        ],
        styles=[None, None, "value", None, None, None, None],
    )
    return 0


def filters_text(worker: Worker) -> str:
    parts = [
        f"{name}={worker.filters[name]}"
        for name in ("project_id", "env_id", "workflow_type")
        if worker.filters.get(name)
    ]
    return output.safe(" ".join(parts), 80) or "any"


# -- shared shapes --------------------------------------------------------------------------------


def event_line(printer: output.Printer, event: RunEvent) -> str:
    """``2026-12-01 21:01:18 UTC #12 [warn] message``; further lines of a multi-line message
    follow indented behind ``  | ``."""
    level = printer.paint(f"[{event.level}]", event.level)
    first, *more = output.lines_of(event.message)
    return "\n".join([f"{output.timestamp(event.created_at)} #{event.seq} {level} {first}", *more])


def run_json(run: Run) -> dict[str, Any]:
    data = run.model_dump(mode="json")
    return {name: data.get(name) for name in RUN_FIELDS}


def event_json(event: RunEvent) -> dict[str, Any]:
    data = event.model_dump(mode="json")
    return {name: data.get(name) for name in EVENT_FIELDS}


def artifact_json(artifact: Artifact) -> dict[str, Any]:
    data = artifact.model_dump(mode="json")
    return {name: data.get(name) for name in ARTIFACT_FIELDS}


def worker_json(worker: Worker) -> dict[str, Any]:
    data = worker.model_dump(mode="json")
    return {name: data.get(name) for name in WORKER_FIELDS}


__all__ = ["RUN_FIELDS", "WORKFLOW_TYPES", "register"]
