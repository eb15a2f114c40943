"""``odooops token``: create, list and revoke scoped project tokens (docs/SECURITY.md).

    odooops token create --project P --scope create,read,cancel [--env prod] [--workflow-type deploy]
                         [--expires 90d] [--note TEXT]
    odooops token list [--project P] [--json]
    odooops token revoke TOKEN_ID

Managing tokens is an operator's act: it needs the service role (``SUPABASE_SERVICE_ROLE_KEY``)
or a direct connection as the database owner (``DATABASE_URL``); a token cannot manage tokens.
``create`` prints the token on stdout, once: it is stored as a hash only. ``list`` never prints a
token, only ids, scopes and dates.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

from odooops_action.config import TOKEN_VARIABLE
from odooops_action.errors import ConfigError, InputError, OdooOpsError
from odooops_action.validation import validate_env_id, validate_project_id, validate_workflow_type

PROGRAM = "odooops token"
SCOPES: tuple[str, ...] = ("create", "read", "cancel", "work")
DEFAULT_EXPIRY = "90d"
_DURATION = re.compile(r"^([1-9][0-9]{0,4})([hdw])$")
_UNIT_HOURS = {"h": 1, "d": 24, "w": 24 * 7}
_TOKEN_ID = re.compile(r"^tok-[0-9a-f]{12}$")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        usage = " ".join(self.format_usage().split())
        raise InputError(f"{message}.", hint=f"({usage}; see `{self.prog} --help`)")


def main(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> int:
    """Entry point of ``odooops token``; returns the exit code."""
    try:
        options = _parser().parse_args(list(argv))
        return int(options.handler(options, dict(os.environ if environ is None else environ)))
    except OdooOpsError as error:
        sys.stderr.write("error: " + " ".join(str(error).split()) + "\n")
        return error.exit_code
    except SystemExit as exiting:  # --help
        return exiting.code if isinstance(exiting.code, int) else 0


def _parser() -> _Parser:
    parser = _Parser(prog=PROGRAM, description="Manage scoped project tokens (service role or owner only).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="command", parser_class=_Parser)

    create = commands.add_parser("create", help="create a token; prints it once")
    create.add_argument("--project", required=True, help="the project the token is bound to")
    create.add_argument(
        "--scope", required=True, help="comma-separated among create, read, cancel (CI) and work (a worker)"
    )
    create.add_argument("--env", action="append", help="only this environment (repeatable)")
    create.add_argument("--workflow-type", action="append", help="only this workflow type (repeatable)")
    create.add_argument(
        "--expires", default=DEFAULT_EXPIRY, help="90d (default), 12h, 8w, a date YYYY-MM-DD, or never"
    )
    create.add_argument("--note", help="what the token is for, e.g. the repository")
    create.set_defaults(handler=_create)

    listing = commands.add_parser("list", help="list tokens (never their values)")
    listing.add_argument("--project", help="only this project's tokens")
    listing.add_argument("--json", action="store_true", help="one JSON array")
    listing.set_defaults(handler=_list)

    revoke = commands.add_parser("revoke", help="revoke a token; prints revoked:<id>")
    revoke.add_argument("token_id", help="the id shown by create and list (tok-…)")
    revoke.set_defaults(handler=_revoke)
    return parser


# -- argument checks (before any request) --------------------------------------------------------


def parse_scopes(value: str) -> list[str]:
    scopes = [part.strip() for part in value.split(",") if part.strip()]
    unknown = [scope for scope in scopes if scope not in SCOPES]
    if not scopes or unknown:
        raise InputError(
            f"--scope must list operations among {', '.join(SCOPES)} (e.g. create,read,cancel), "
            f"got {value[:60]!r}."
        )
    return sorted(set(scopes), key=SCOPES.index)


def parse_expiry(value: str, now: datetime | None = None) -> datetime | None:
    """``90d``/``12h``/``8w`` from now, a date (midnight UTC), or None for ``never``."""
    text = value.strip().lower()
    if text == "never":
        return None
    start = now or datetime.now(UTC)
    duration = _DURATION.match(text)
    if duration:
        return start + timedelta(hours=int(duration.group(1)) * _UNIT_HOURS[duration.group(2)])
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        moment = None
    if moment is None:
        raise InputError(
            "--expires must be a duration like 90d, 12h or 8w, a date YYYY-MM-DD, or never; "
            f"got {value[:40]!r}."
        )
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if moment <= start:
        raise InputError(f"--expires must be in the future, got {value[:40]!r}.")
    return moment


# -- commands -------------------------------------------------------------------------------------


def _create(options: argparse.Namespace, environ: dict[str, str]) -> int:
    arguments: dict[str, Any] = {
        "project_id": validate_project_id(options.project, "--project"),
        "scopes": parse_scopes(options.scope),
        "env_ids": [validate_env_id(env, "--env") for env in options.env] if options.env else None,
        "workflow_types": (
            [validate_workflow_type(kind, "--workflow-type") for kind in options.workflow_type]
            if options.workflow_type
            else None
        ),
        "expires_at": parse_expiry(options.expires),
        "note": options.note,
        "created_by": environ.get("USER") or "cli",
    }
    if arguments["note"] is not None and len(arguments["note"]) > 500:
        raise InputError("--note must be at most 500 characters.")
    created = _call(environ, "create_api_token", arguments)
    sys.stdout.write(str(created["token"]) + "\n")
    sys.stdout.flush()
    sys.stderr.write(
        f"Created token {created['token_id']} for project {created['project_id']} "
        f"(scope {','.join(created['scopes'])}; {_restrictions(created)}"
        f"expires {_when(created['expires_at'])}). "
        "Store it now as a secret (e.g. gh secret set ODOOOPS_TOKEN): it is not shown again.\n"
    )
    return 0


def _list(options: argparse.Namespace, environ: dict[str, str]) -> int:
    project = validate_project_id(options.project, "--project") if options.project else None
    tokens = _call(environ, "list_api_tokens", {"project_id": project})
    if not isinstance(tokens, list):
        raise OdooOpsError(f"ops.list_api_tokens answered {type(tokens).__name__}, expected a list.")
    if options.json:
        sys.stdout.write(json.dumps([_public(token) for token in tokens], indent=2) + "\n")
        return 0
    if not tokens:
        sys.stderr.write("No tokens.\n")
        return 0
    header = ("ID", "PROJECT", "SCOPE", "LIMITS", "STATE", "EXPIRES", "LAST USED", "NOTE")
    rows = [header] + [
        (
            str(token["token_id"]),
            str(token["project_id"]),
            ",".join(token["scopes"]),
            _restrictions(token).rstrip("; ") or "-",
            str(token["state"]),
            _when(token["expires_at"]),
            _when(token["last_used_at"], missing="never"),
            " ".join(str(token.get("note") or "").split())[:40],
        )
        for token in tokens
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        sys.stdout.write("  ".join(cells).rstrip() + "\n")
    return 0


def _revoke(options: argparse.Namespace, environ: dict[str, str]) -> int:
    token_id = options.token_id.strip()
    if not _TOKEN_ID.match(token_id):
        raise InputError(
            f"TOKEN_ID must look like tok-<12 hex digits> (see odooops token list), got {token_id[:40]!r}."
        )
    revoker = environ.get("USER") or "cli"
    revoked = _call(environ, "revoke_api_token", {"token_id": token_id, "revoked_by": revoker})
    sys.stdout.write(f"revoked:{revoked['token_id']}\n")
    if revoked.get("outcome") == "already_revoked":
        sys.stderr.write(f"Token {token_id} was already revoked at {_when(revoked['revoked_at'])}.\n")
    return 0


# -- helpers ----------------------------------------------------------------------------------------

_PUBLIC_FIELDS = (
    "token_id", "project_id", "scopes", "env_ids", "workflow_types", "note", "state",
    "created_by", "created_at", "expires_at", "revoked_at", "revoked_by", "last_used_at",
)  # fmt: skip


def _public(token: Mapping[str, Any]) -> dict[str, Any]:
    """Only the listed fields: should the server ever add a secret one, it is not printed."""
    return {name: token.get(name) for name in _PUBLIC_FIELDS}


def _restrictions(token: Mapping[str, Any]) -> str:
    parts = []
    if token.get("env_ids"):
        parts.append("env " + ",".join(token["env_ids"]))
    if token.get("workflow_types"):
        parts.append("workflow " + ",".join(token["workflow_types"]))
    return "".join(f"{part}; " for part in parts)


def _when(value: Any, missing: str = "never") -> str:
    if not value:
        return missing
    moment = datetime.fromisoformat(str(value))
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _call(environ: Mapping[str, str], function: str, arguments: dict[str, Any]) -> Any:
    """One management function over REST (service role) or PostgreSQL (owner), as configured."""
    from odooops_action.config import ConnectionSettings
    from odooops_action.store.factory import open_store

    # A token never manages tokens: the connection is the service role's or the owner's.
    without_token = {name: value for name, value in environ.items() if name != TOKEN_VARIABLE}
    try:
        settings = ConnectionSettings.from_env(without_token, Path(".env"))
    except ConfigError as exc:
        problem = exc.message.split(":", 1)[0]
        raise ConfigError(
            f"odooops token needs the service role ({problem}): set SUPABASE_SERVICE_ROLE_KEY, or "
            "DATABASE_URL as the database owner. A scoped token cannot manage tokens."
        ) from None
    from odooops_action.store.operations import OperationStore

    store = open_store(settings)
    try:
        assert isinstance(store, OperationStore)
        return store.call_operation(function, _json_ready(arguments))
    finally:
        store.close()


def _json_ready(arguments: Mapping[str, Any]) -> dict[str, Any]:
    return {
        name: value.isoformat() if isinstance(value, datetime) else value for name, value in arguments.items()
    }
