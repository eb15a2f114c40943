"""The Action's inputs, read from the environment the runner builds and validated before any side effect.

The runner passes every input declared in ``action.yml`` as ``INPUT_<NAME>`` (upper-cased, spaces
→ ``_``, hyphens kept), with the declared defaults already applied. It does NOT enforce
``required``: :meth:`ActionSettings.from_environ` does, per mode, and reports every problem at once,
each naming the input (``commit_sha (INPUT_COMMIT_SHA)``) and what it expects.

Booleans follow the YAML 1.2 core schema, as GitHub's own ``core.getBooleanInput`` does:
``true``/``True``/``TRUE`` and ``false``/``False``/``FALSE``; anything else is an error rather than a
silent ``false``.

The connection may also come from the step's environment (``SUPABASE_URL`` and
``SUPABASE_SERVICE_ROLE_KEY``/``SUPABASE_SECRET_KEY``/``SUPABASE_KEY``) when the inputs are empty, so
workflows written for the original shell scripts keep working.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from odooops_action.config import (
    KEY_VARIABLES,
    PUBLIC_KEY_VARIABLES,
    TOKEN_VARIABLE,
    check_key_text,
    check_service_key,
    check_token,
    normalize_supabase_url,
)
from odooops_action.domain import EVENT_LEVELS, WorkflowType
from odooops_action.errors import ConfigError, InputError
from odooops_action.validation import (
    parse_poll_interval,
    parse_positive_seconds,
    validate_env_id,
    validate_git_ref,
    validate_idempotency_key,
    validate_project_id,
    validate_run_id,
    validate_sha,
    validate_workflow_type,
)

Mode = Literal["create", "wait", "destroy"]
MODES: tuple[Mode, ...] = ("create", "wait", "destroy")

# Every input action.yml declares, in its order (a test keeps the two in step).
INPUT_NAMES: tuple[str, ...] = (
    "mode",
    "supabase_url",
    "supabase_key",
    "token",
    "project_id",
    "workflow_type",
    "git_ref",
    "commit_sha",
    "env_id",
    "run_id",
    "wait",
    "timeout_seconds",
    "poll_interval_seconds",
    "cancel_on_timeout",
    "cancel_on_abort",
    "github_token",
    "check_run",
    "check_name",
    "annotate_levels",
    "idempotency_key",
    "metadata",
)
SECRET_INPUTS: tuple[str, ...] = ("supabase_key", "token", "github_token")
TRUE_WORDS = frozenset({"true", "True", "TRUE"})
FALSE_WORDS = frozenset({"false", "False", "FALSE"})
LEVEL_ALIASES: dict[str, str] = {"warning": "warn"}
NO_LEVELS = frozenset({"", "none"})
MAX_METADATA_BYTES = 64 * 1024
MAX_CHECK_NAME_CHARS = 100
_T = TypeVar("_T")


def input_variable(name: str) -> str:
    """The variable the runner sets for an input: upper-cased, spaces → ``_``, hyphens kept."""
    return "INPUT_" + name.replace(" ", "_").upper()


def label(name: str) -> str:
    """How messages name an input: the id a workflow writes and the variable the runner sets."""
    return f"{name} ({input_variable(name)})"


def read_inputs(environ: Mapping[str, str]) -> dict[str, str]:
    """Every declared input's raw value, ``""`` when the runner set none."""
    return {name: environ.get(input_variable(name), "") for name in INPUT_NAMES}


def secret_values(inputs: Mapping[str, str], environ: Mapping[str, str]) -> list[str]:
    """The values to mask before anything else is printed: the keys and the token, wherever they come from."""
    candidates = [inputs.get(name, "") for name in SECRET_INPUTS]
    candidates += [environ.get(variable, "") for variable in (*KEY_VARIABLES, TOKEN_VARIABLE)]
    return [value.strip() for value in candidates if value.strip()]


class InvalidInputsError(InputError):
    """One or more inputs are invalid; ``problems`` holds one sentence per input."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        count = "1 input is" if len(problems) == 1 else f"{len(problems)} inputs are"
        super().__init__(f"{count} invalid: " + " ".join(problems))


@dataclass(frozen=True, repr=False)
class Secret:
    """A secret input: never shown by ``repr``/``str``; read it with :meth:`get_secret_value`."""

    _value: str

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__


@dataclass(frozen=True)
class ActionSettings:
    """Everything a mode needs, validated by :class:`_Reader` (a plain dataclass: the Action reaches
    its first request without importing pydantic). Secrets are :class:`Secret`: never in a ``repr``.
    """

    mode: Mode
    supabase_url: str
    supabase_key: Secret
    token: Secret | None = None
    project_id: str | None = None
    workflow_type: WorkflowType | None = None
    git_ref: str | None = None
    commit_sha: str | None = None
    env_id: str = "dev"
    run_id: str | None = None
    wait: bool = False
    timeout_seconds: float = 1200.0
    poll_interval_seconds: float = 5.0
    cancel_on_timeout: bool = False
    cancel_on_abort: bool = True
    github_token: Secret | None = None
    check_run: bool = False
    check_name: str | None = None
    annotate_levels: frozenset[str] = frozenset({"warn", "error"})
    idempotency_key: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    key_source: str = "supabase_key"  # where the key came from, named in an authentication error

    @property
    def waits(self) -> bool:
        """Whether this step follows a run to its end (``wait`` mode, or ``create`` with ``wait: true``)."""
        return self.mode == "wait" or (self.mode == "create" and self.wait)

    def check_name_for(self, workflow_type: str) -> str:
        return self.check_name or f"OdooOps {workflow_type}"

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> ActionSettings:
        """Validate the inputs in ``environ``; raises :class:`InvalidInputsError` listing every problem."""
        return _Reader(read_inputs(environ), environ).settings()


def connection_from_environ(environ: Mapping[str, str]) -> tuple[str, str, str | None]:
    """Only the validated URL, key and token (the post step needs nothing else)."""
    reader = _Reader(read_inputs(environ), environ)
    url, key = reader.connection()
    if reader.problems or url is None or key is None:
        raise InvalidInputsError(reader.problems)
    return url, key, reader.token


class _Reader:
    """Parses one input at a time, collecting every problem instead of stopping at the first."""

    def __init__(self, inputs: Mapping[str, str], environ: Mapping[str, str]) -> None:
        self._inputs = inputs
        self._environ = environ
        self.problems: list[str] = []
        self.key_source = label("supabase_key")
        self.token: str | None = None
        self.token_given = False  # even an invalid one: the key is then the public one

    def raw(self, name: str) -> str:
        return self._inputs.get(name, "").strip()

    def parse(self, name: str, parser: Callable[[str, str], _T]) -> _T | None:
        """``parser(value, label)``, or None (with the problem recorded) when it raises."""
        try:
            return parser(self.raw(name), label(name))
        except (InputError, ConfigError) as exc:
            self.problems.append(str(exc))
            return None

    def optional(self, name: str, parser: Callable[[str, str], _T]) -> _T | None:
        return self.parse(name, parser) if self.raw(name) else None

    def required(self, name: str, mode: str, how: str, parser: Callable[[str, str], _T]) -> _T | None:
        if not self.raw(name):
            self.problems.append(f"{label(name)} is required in mode {mode}: {how}.")
            return None
        return self.parse(name, parser)

    def settings(self) -> ActionSettings:
        mode = self.parse("mode", _parse_mode)
        url, key = self.connection()
        values: dict[str, Any] = {
            "mode": mode,
            "supabase_url": url,
            "supabase_key": key,
            "env_id": self.parse("env_id", _or_default("dev", validate_env_id)),
            "wait": self.parse("wait", _boolean(False)),
            "timeout_seconds": self.parse("timeout_seconds", _seconds(1200.0)),
            "poll_interval_seconds": self.parse("poll_interval_seconds", _seconds(5.0, parse_poll_interval)),
            "cancel_on_timeout": self.parse("cancel_on_timeout", _boolean(False)),
            "cancel_on_abort": self.parse("cancel_on_abort", _boolean(True)),
            "check_run": self.parse("check_run", _boolean(False)),
            "check_name": self.optional("check_name", _parse_check_name),
            "annotate_levels": self.parse("annotate_levels", _parse_levels),
            "idempotency_key": self.optional("idempotency_key", validate_idempotency_key),
            "metadata": self.parse("metadata", _parse_metadata),
            "github_token": Secret(token) if (token := self.raw("github_token")) else None,
        }
        if mode == "create":
            values.update(self._create_inputs())
        elif mode in ("wait", "destroy"):
            how = "pass the run id that a create step returned, e.g. ${{ steps.queue.outputs.run_id }}"
            values["run_id"] = self.required("run_id", mode, how, validate_run_id)
        if values["check_run"] and not values["github_token"]:
            self.problems.append(
                f"{label('github_token')} is empty but {label('check_run')} is true: leave github_token "
                "at its default (${{ github.token }}) or pass a token with checks: write."
            )
        if self.problems:
            raise InvalidInputsError(self.problems)
        values["supabase_key"] = Secret(values["supabase_key"])
        values["token"] = Secret(self.token) if self.token else None
        values["key_source"] = self.key_source
        return ActionSettings(**values)

    def _create_inputs(self) -> dict[str, Any]:
        # A token is bound to one project: without project_id, the run is queued in the token's.
        project_id = (
            self.optional("project_id", validate_project_id)
            if self.token_given
            else self.required(
                "project_id", "create", "pass the project registered in ops.projects", validate_project_id
            )
        )
        return {
            "project_id": project_id,
            "workflow_type": self.required(
                "workflow_type", "create", "pass build, deploy or test", validate_workflow_type
            ),
            "git_ref": self.required(
                "git_ref", "create", "pass the branch or tag, e.g. ${{ github.ref_name }}", validate_git_ref
            ),
            "commit_sha": self.required(
                "commit_sha", "create", "pass the full commit SHA, e.g. ${{ github.sha }}", validate_sha
            ),
        }

    def connection(self) -> tuple[str | None, str | None]:
        self.token = self._token()
        return self._url(), self._key()

    def _token(self) -> str | None:
        token_name, token = label("token"), self.raw("token")
        if not token:
            token_name, token = TOKEN_VARIABLE, self._environ.get(TOKEN_VARIABLE, "").strip()
        if not token:
            return None
        self.token_given = True
        try:
            check_token(token, token_name)
        except ConfigError as exc:
            self.problems.append(str(exc))
            return None
        return token

    def _url(self) -> str | None:
        url = self.raw("supabase_url") or self._environ.get("SUPABASE_URL", "").strip()
        if not url:
            self.problems.append(
                f"{label('supabase_url')} is required: pass supabase_url: ${{{{ secrets.SUPABASE_URL }}}} "
                "(the project's base URL, https://<project>.supabase.co), or set SUPABASE_URL in the "
                "step's env."
            )
            return None
        try:
            return normalize_supabase_url(url)
        except ConfigError as exc:
            self.problems.append(f"{label('supabase_url')}: {exc}")
            return None

    def _key(self) -> str | None:
        key_name, key = label("supabase_key"), self.raw("supabase_key")
        if not key:
            key_name, key = _first_env_key(self._environ, with_token=self.token_given)
        if not key:
            self.problems.append(
                f"{label('supabase_key')} is required: pass supabase_key: "
                "${{ vars.SUPABASE_PUBLISHABLE_KEY }} (the project's publishable or anon key) with "
                "token: ${{ secrets.ODOOOPS_TOKEN }}, or "
                "supabase_key: ${{ secrets.SUPABASE_SERVICE_ROLE_KEY }} alone."
                if self.token_given
                else f"{label('supabase_key')} is required: pass supabase_key: "
                "${{ secrets.SUPABASE_SERVICE_ROLE_KEY }} (the service_role or sb_secret_ key), or a "
                "scoped token (token input) with the project's publishable key."
            )
            return None
        try:
            if self.token_given:
                check_key_text(key, key_name)
            else:
                check_service_key(key, key_name)
        except ConfigError as exc:
            self.problems.append(str(exc))
            return None
        self.key_source = key_name
        return key


def _first_env_key(environ: Mapping[str, str], *, with_token: bool = False) -> tuple[str, str]:
    for variable in (*PUBLIC_KEY_VARIABLES, *KEY_VARIABLES) if with_token else KEY_VARIABLES:
        value = environ.get(variable, "").strip()
        if value:
            return variable, value
    return label("supabase_key"), ""


def _parse_mode(value: str, name: str) -> Mode:
    if not value:
        raise InputError(f"{name} is required: set mode to one of {', '.join(MODES)}.")
    if value not in MODES:
        raise InputError(f"{name} must be one of {', '.join(MODES)}, got {value[:40]!r}.")
    return value


def parse_boolean(value: str, name: str, default: bool) -> bool:
    if not value:
        return default
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS:
        return False
    raise InputError(
        f"{name} must be true or false (YAML 1.2 core booleans: true, True, TRUE, false, False, FALSE), "
        f"got {value[:40]!r}."
    )


def _boolean(default: bool) -> Callable[[str, str], bool]:
    return lambda value, name: parse_boolean(value, name, default)


def _seconds(
    default: float, parse: Callable[[str, str], float] = parse_positive_seconds
) -> Callable[[str, str], float]:
    return lambda value, name: parse(value, name) if value else default


def _or_default(default: str, parser: Callable[[str, str], str]) -> Callable[[str, str], str]:
    return lambda value, name: parser(value, name) if value else default


def _parse_check_name(value: str, name: str) -> str:
    if len(value) > MAX_CHECK_NAME_CHARS or "\n" in value:
        raise InputError(f"{name} must be a single line of at most {MAX_CHECK_NAME_CHARS} characters.")
    return value


def parse_levels(value: str, name: str) -> frozenset[str]:
    """``warn,error`` (commas, spaces or new lines between); ``none`` or empty for no annotations."""
    words = [word for word in value.replace(",", " ").split() if word]
    if not words or (len(words) == 1 and words[0].lower() in NO_LEVELS):
        return frozenset()
    levels: set[str] = set()
    for word in words:
        level = LEVEL_ALIASES.get(word.lower(), word.lower())
        if level not in EVENT_LEVELS:
            raise InputError(
                f"{name} must list event levels among {', '.join(EVENT_LEVELS)} separated by commas "
                f"(or be none), got {word[:40]!r}."
            )
        levels.add(level)
    return frozenset(levels)


def _parse_levels(value: str, name: str) -> frozenset[str]:
    return parse_levels(value, name)


def _parse_metadata(value: str, name: str) -> dict[str, Any]:
    if not value:
        return {}
    if len(value.encode("utf-8")) > MAX_METADATA_BYTES:
        raise InputError(f"{name} must be at most {MAX_METADATA_BYTES // 1024} KiB of JSON.")
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise InputError(f'{name} must be a JSON object such as {{"pr": 42}}: {exc}.') from None
    if not isinstance(parsed, dict):
        raise InputError(
            f'{name} must be a JSON object such as {{"pr": 42}}, got a JSON {type(parsed).__name__}.'
        )
    return parsed


def derived_idempotency_key(settings: ActionSettings, environ: Mapping[str, str]) -> str | None:
    """The key that makes a repeated create in the same step attempt return the run already queued.

    Derived from the step's identity (repository, workflow run id AND attempt, job, step id from
    ``GITHUB_ACTION``) and the request itself (project, workflow type, environment, ref, commit,
    metadata), hashed. So a retry of the request or of the step within one attempt finds the
    same run, while "Re-run jobs" (a new attempt) queues a new one, and two steps or differing
    matrix legs never share a key. Outside GitHub Actions (no ``GITHUB_RUN_ID``) there is none.
    """
    if settings.idempotency_key:
        return settings.idempotency_key
    run_id = environ.get("GITHUB_RUN_ID", "")
    if not run_id:
        return None
    parts = [
        environ.get("GITHUB_REPOSITORY", ""),
        run_id,
        environ.get("GITHUB_RUN_ATTEMPT", "1") or "1",
        environ.get("GITHUB_JOB", ""),
        environ.get("GITHUB_ACTION", ""),
        settings.project_id or "",
        settings.workflow_type or "",
        settings.env_id,
        settings.git_ref or "",
        settings.commit_sha or "",
        json.dumps(settings.metadata, sort_keys=True, separators=(",", ":")),
    ]
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()
    return f"gha-{digest}"
