"""``odooops doctor``: what is wrong with a deployment, each finding with its cause and its fix.

Checks, in order (a check that cannot run because an earlier one failed is not reported):
the configuration and which kind of key it holds; whether the URL answers; whether schema ``ops``
is exposed (PGRST106); whether the migrations are applied and at which version; then, from one
``ops.doctor_report`` call: overloaded ``ops`` functions (PGRST203), missing operations, grants
that differ from the documented ones, workers seen recently, queued runs that no live worker may
claim (per project, environment and workflow type, with the age of the oldest), and runs stalled
past their lease. Exit 0 when nothing is a problem (warnings allowed), 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from odooops_action.errors import (
    AuthError,
    ConfigError,
    MigrationMissingError,
    OdooOpsError,
    SchemaNotExposedError,
    TransientError,
)
from odooops_action.operator import output
from odooops_action.operator.calls import SCHEMA_VERSION, call
from odooops_action.validation import parse_count

if TYPE_CHECKING:
    from odooops_action.operator.views import DoctorReport
    from odooops_action.store.base import RunStore

Severity = Literal["ok", "warning", "problem"]
Connect = Callable[[argparse.Namespace], Any]

DEFAULT_LEASE = "60"
DEFAULT_LIVE_WITHIN = "120"


@dataclass(frozen=True)
class Finding:
    check: str
    severity: Severity
    summary: str
    cause: str | None = None
    fix: str | None = None


def register(commands: Any, parents: list[argparse.ArgumentParser], connect: Connect) -> None:
    doctor = commands.add_parser("doctor", parents=parents, help="diagnose the deployment: causes and fixes")
    doctor.add_argument(
        "--lease", default=DEFAULT_LEASE, help="seconds without heartbeat that make a run stalled (60)"
    )
    doctor.add_argument(
        "--live-within",
        default=DEFAULT_LIVE_WITHIN,
        help="a worker seen within this many seconds is live (120)",
    )
    doctor.set_defaults(handler=lambda options: doctor_command(options, connect))


def doctor_command(options: argparse.Namespace, connect: Connect) -> int:
    lease = parse_count(options.lease, "--lease", minimum=1, maximum=86400)
    live_within = parse_count(options.live_within, "--live-within", minimum=1, maximum=86400)
    findings = diagnose(options, connect, lease=lease, live_within=live_within)
    problems = sum(1 for f in findings if f.severity == "problem")
    warnings = sum(1 for f in findings if f.severity == "warning")
    if options.json:
        output.print_json(
            {"findings": [asdict(f) for f in findings], "problems": problems, "warnings": warnings}
        )
    else:
        _print(findings, problems, warnings)
    return 1 if problems else 0


def diagnose(options: argparse.Namespace, connect: Connect, *, lease: int, live_within: int) -> list[Finding]:
    findings = [key_finding(dict(os.environ) | _dotenv())]
    if findings[0].severity == "problem" and not _uses_postgres(options):
        return findings
    try:
        with connect(options) as store:
            findings += _server_findings(store, lease, live_within)
    except ConfigError as error:
        findings.append(
            Finding("configuration", "problem", "the connection is not configured", str(error), _CONFIG_FIX)
        )
    except TransientError as error:
        findings.append(
            Finding(
                "reachable",
                "problem",
                "the server does not answer",
                str(error),
                "Check SUPABASE_URL (https://<project>.supabase.co) or DATABASE_URL, the network, and the "
                "project's status (a paused Supabase project answers nothing).",
            )
        )
    return findings


_CONFIG_FIX = (
    "Set SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY (or DATABASE_URL), in the environment or ./.env."
)


def _uses_postgres(options: argparse.Namespace) -> bool:
    return bool(getattr(options, "postgres", False) or getattr(options, "database_url", None))


def _dotenv() -> dict[str, str]:
    from odooops_action.config import read_dotenv

    return read_dotenv(Path(".env"))


def key_finding(environ: dict[str, str]) -> Finding:
    """Which kind of key the REST connection would use, read locally (nothing is sent)."""
    from odooops_action.config import KEY_VARIABLES, jwt_claims, looks_like_jwt

    variable = next((name for name in KEY_VARIABLES if environ.get(name, "").strip()), None)
    if variable is None:
        if environ.get("DATABASE_URL"):
            return Finding("key", "ok", "no API key: direct PostgreSQL connection (DATABASE_URL)")
        return Finding(
            "key", "problem", "no API key and no DATABASE_URL", "Nothing to connect with.", _CONFIG_FIX
        )
    key = environ[variable].strip()
    fix = f"Put the project's service_role or secret key (Dashboard → Project Settings → API) in {variable}."
    if key.startswith("sb_secret_"):
        return Finding("key", "ok", f"{variable}: a secret key (sb_secret_…, acts as service_role)")
    if key.startswith("sb_publishable_"):
        return Finding(
            "key", "problem", f"{variable}: a publishable key", "A publishable key cannot manage runs.", fix
        )
    if key.startswith("odooops_pat_"):
        return Finding(
            "key", "ok", f"{variable}: an odooops scoped token (its scope is checked by the server)"
        )
    if looks_like_jwt(key):
        claims = jwt_claims(key) or {}
        role = str(claims.get("role", "unknown"))
        expiry = claims.get("exp")
        if role == "service_role":
            return Finding("key", "ok", f"{variable}: a service_role key{_expiry(expiry)}")
        return Finding(
            "key",
            "problem",
            f"{variable}: a key of role {role}",
            f"Role {role} has no privilege on schema ops (row level security, no grants).",
            fix,
        )
    return Finding(
        "key", "warning", f"{variable}: a key of an unknown kind", "It is neither a JWT nor sb_secret_….", fix
    )


def _expiry(exp: object) -> str:
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        return ""
    from datetime import datetime

    try:
        return f" (expires {output.timestamp(datetime.fromtimestamp(exp, UTC))})"
    except (OverflowError, OSError, ValueError):
        return ""


def _server_findings(store: RunStore, lease: int, live_within: int) -> list[Finding]:
    from odooops_action.operator.views import DoctorReport, SchemaVersion

    try:
        version = SchemaVersion.model_validate(call(store, "schema_version", {}))
    except SchemaNotExposedError as error:
        return [
            Finding("reachable", "ok", "the server answers"),
            Finding(
                "exposed",
                "problem",
                "schema ops is not exposed by the Data API (PGRST106)",
                str(error),
                'Dashboard → Project Settings → API → "Exposed schemas": add ops (PGRST_DB_SCHEMAS when '
                "self-hosting).",
            ),
        ]
    except AuthError as error:
        return [
            Finding("reachable", "ok", "the server answers"),
            Finding("key", "problem", "the server refused the key", str(error), "Use the service_role key."),
        ]
    except MigrationMissingError as error:
        return [
            Finding("reachable", "ok", "the server answers"),
            Finding(
                "migrations",
                "problem",
                f"migrations older than {SCHEMA_VERSION} (no ops.schema_version)",
                str(error),
                _MIGRATE_FIX,
            ),
        ]
    findings = [
        Finding("reachable", "ok", "the server answers"),
        Finding("exposed", "ok", "schema ops is exposed"),
    ]
    findings.append(_version_finding(version.version))
    try:
        report = DoctorReport.model_validate(
            call(store, "doctor_report", {"lease_seconds": lease, "live_within_seconds": live_within})
        )
    except OdooOpsError as error:
        findings.append(Finding("report", "problem", "ops.doctor_report failed", str(error), _MIGRATE_FIX))
        return findings
    return findings + report_findings(report, lease, live_within)


_MIGRATE_FIX = (
    "Apply the files of supabase/migrations in order (supabase db push; or psql -f each file not yet "
    "applied), then reload the API schema cache (NOTIFY pgrst, 'reload schema')."
)


def _version_finding(version: str) -> Finding:
    if version < SCHEMA_VERSION:
        return Finding(
            "migrations",
            "problem",
            f"schema version {version}, this client needs {SCHEMA_VERSION}",
            "Migrations newer than the database are missing.",
            _MIGRATE_FIX,
        )
    return Finding(
        "migrations", "ok", f"schema version {version} (this client needs {SCHEMA_VERSION} or later)"
    )


def report_findings(report: DoctorReport, lease: int, live_within: int) -> list[Finding]:
    findings: list[Finding] = []
    for overload in report.overloaded:
        findings.append(
            Finding(
                "overloaded",
                "problem",
                f"ops.{overload.function} exists {len(overload.signatures)} times: "
                f"{', '.join(overload.signatures)}",
                "PostgREST cannot choose between overloads of one name and answers HTTP 300 PGRST203.",
                "Drop the signature no migration defines any more (DROP FUNCTION "
                f"ops.{overload.function}(<old "
                "arguments>)), then NOTIFY pgrst, 'reload schema'.",
            )
        )
    if report.missing_operations:
        findings.append(
            Finding(
                "operations",
                "problem",
                f"missing functions: {', '.join('ops.' + name for name in report.missing_operations)}",
                "A migration was not applied, or a function was dropped by hand.",
                _MIGRATE_FIX,
            )
        )
    for problem in report.grant_problems:
        findings.append(
            Finding(
                "grants",
                "problem",
                problem,
                "Privileges differ from the migrations' (anon/authenticated: nothing; service_role: the "
                "ops functions).",
                "Re-apply the grants of supabase/migrations (the Security sections), or revoke what was "
                "added by hand.",
            )
        )
    if not (report.overloaded or report.missing_operations or report.grant_problems):
        findings.append(Finding("functions", "ok", "ops functions present once each, grants as documented"))
    findings += _worker_findings(report, live_within)
    findings += _queue_findings(report)
    for stalled in report.stalled:
        findings.append(
            Finding(
                "stalled",
                "problem",
                f"run {stalled.run_id} is {stalled.status} on {output.safe(stalled.claimed_by) or '-'} with "
                "no "
                f"heartbeat since {output.when(stalled.heartbeat_at, report.now)}",
                f"Its worker stopped heartbeating more than {lease} s ago (crashed, killed, or cut off).",
                "A running worker requeues it within half a lease (recover_stalled_runs); otherwise start "
                "a worker, "
                f"or cancel it: odooops destroy {stalled.run_id}.",
            )
        )
    if not report.stalled:
        findings.append(Finding("stalled", "ok", f"no run stalled past the {lease} s lease"))
    return findings


def _worker_findings(report: DoctorReport, live_within: int) -> list[Finding]:
    live = [w for w in report.workers if w.live]
    if live:
        names = ", ".join(output.safe(w.worker_id, 60) for w in live[:5]) + (" …" if len(live) > 5 else "")
        return [Finding("workers", "ok", f"{len(live)} live worker(s): {names}")]
    last = report.workers[0] if report.workers else None
    seen = ""
    if last is not None:
        what = "stopped" if last.state == "stopped" else "last seen"
        seen = f" ({output.safe(last.worker_id, 60)} {what} {output.ago(last.last_seen_at, report.now)})"
    return [
        Finding(
            "workers",
            "problem",
            f"no live worker: none seen in the last {live_within} s{seen}",
            "No worker is running, or workers cannot reach the database (workers check in every 15 s, idle "
            "or busy).",
            "Start a worker (odooops worker --command <your script>) and check its log; `odooops workers` "
            "lists "
            "those seen in the last day.",
        )
    ]


def _queue_findings(report: DoctorReport) -> list[Finding]:
    findings: list[Finding] = []
    for group in report.queue:
        where = f"{group.project_id}/{group.env_id}/{group.workflow_type}"
        age = output.ago(group.oldest_queued_at, report.now)
        if group.live_workers == 0:
            findings.append(
                Finding(
                    "queue",
                    "problem",
                    f"{group.queued} run(s) queued for {where}, oldest queued {age}, and no live worker may "
                    "claim them",
                    "Every live worker filters on another project, environment or workflow type (or none "
                    "is live).",
                    f"Start a worker without filters or with --project {group.project_id} --env "
                    f"{group.env_id} "
                    f"--workflow-type {group.workflow_type}.",
                )
            )
        else:
            findings.append(
                Finding(
                    "queue",
                    "ok",
                    f"{group.queued} run(s) queued for {where}, oldest {age}, {group.live_workers} live "
                    "worker(s) may claim them",
                )
            )
    if not report.queue:
        findings.append(Finding("queue", "ok", "no run is waiting in the queue"))
    return findings


def _print(findings: list[Finding], problems: int, warnings: int) -> None:
    printer = output.Printer()
    for finding in findings:
        label = printer.paint(finding.severity.ljust(7), finding.severity)
        printer.line(f"{label}  {finding.check}: {finding.summary}")
        if finding.severity != "ok":
            if finding.cause:
                printer.line(f"         cause: {finding.cause}")
            if finding.fix:
                printer.line(f"         fix:   {finding.fix}")
    verdict = "no problems" if not problems else f"{problems} problem(s)"
    printer.line(f"\n{verdict}, {warnings} warning(s).")
