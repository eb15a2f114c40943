"""The entry point of the container Action: ``main`` (the step) and ``main(stage="post")`` (the post step).

Order matters: secrets are masked before anything else is printed, inputs are validated before
any side effect, and the mode runs in a helper thread while the main thread only waits for it
and receives SIGINT/SIGTERM (as the container's PID 1 it must handle them itself), which set the
``stop`` event the mode watches. Modules are imported when a mode needs them, to start fast.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

from odooops_action.action.isolation import drop_missing_ca_paths
from odooops_action.action.settings import ActionSettings, InvalidInputsError, read_inputs, secret_values
from odooops_action.errors import OdooOpsError
from odooops_action.github.commands import WorkflowCommands
from odooops_action.github.files import FileCommands, SecretInOutputError
from odooops_action.waiting import run_interruptibly

if TYPE_CHECKING:
    from odooops_action.action.runtime import ActionContext

Stage = Literal["main", "post"]
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def main(environ: Mapping[str, str] = os.environ, stage: Stage = "main") -> int:
    """Run the step described by ``environ`` (the runner's ``INPUT_*``, ``GITHUB_*``, ``STATE_*``)."""
    commands = WorkflowCommands()
    secrets = secret_values(read_inputs(environ), environ)
    for secret in secrets:
        commands.mask(secret)
    if environ is os.environ:  # HTTP clients read these from the process environment themselves
        for warning in drop_missing_ca_paths(os.environ):
            commands.warning(warning, title="OdooOps ignored a certificate path")
    if stage == "post":
        from odooops_action.action.post import run_post

        return run_post(environ, commands)
    try:
        settings = ActionSettings.from_environ(environ)
    except InvalidInputsError as exc:
        for problem in exc.problems:
            commands.error(problem, title="Invalid input")
        return exc.exit_code
    files = FileCommands(environ, secrets=secrets)
    return _run_interruptibly(settings, environ, commands, files, tuple(secrets))


def _run_interruptibly(
    settings: ActionSettings,
    environ: Mapping[str, str],
    commands: WorkflowCommands,
    files: FileCommands,
    secrets: tuple[str, ...],
) -> int:
    from odooops_action.action.runtime import ActionContext
    from odooops_action.github.context import GitHubContext

    github = GitHubContext.from_env(environ)

    def work(stop: threading.Event) -> int:
        ctx = ActionContext(settings, environ, commands, files, github, stop, secrets)
        return _guarded(ctx)

    exit_code, received = run_interruptibly(work, STOP_SIGNALS, then="ignore")
    if received:
        commands.debug(f"Received {received.name}.")
    return exit_code


def _guarded(ctx: ActionContext) -> int:
    from odooops_action.action.modes import run_mode

    commands = ctx.commands
    try:
        return run_mode(ctx)
    except OdooOpsError as exc:
        commands.error(str(exc), title=f"OdooOps {ctx.settings.mode} failed")
        return max(exc.exit_code, 1)
    except SecretInOutputError as exc:
        commands.error(str(exc), title="OdooOps refused to leak a secret")
        return 1
    except Exception as exc:
        import traceback

        commands.error(
            f"Unexpected error: {type(exc).__name__}: {exc}", title=f"OdooOps {ctx.settings.mode} failed"
        )
        for line in traceback.format_exc().splitlines():
            commands.debug(line)
        return 1
