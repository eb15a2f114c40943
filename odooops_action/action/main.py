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
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Literal

from odooops_action.action.settings import ActionSettings, InvalidInputsError, read_inputs, secret_values
from odooops_action.errors import OdooOpsError
from odooops_action.github.commands import WorkflowCommands
from odooops_action.github.files import FileCommands, SecretInOutputError

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

    exit_code, received = run_with_stop_signals(work)
    if received:
        commands.debug(f"Received {', '.join(sig.name for sig in received)}.")
    return exit_code


def run_with_stop_signals(work: Callable[[threading.Event], int]) -> tuple[int, list[signal.Signals]]:
    """``work(stop)`` in a helper thread; SIGINT/SIGTERM set ``stop`` instead of ending the process.

    The main thread only joins, so the handler never runs while this thread holds the event's
    lock. Once a stop signal came, further ones are ignored (``SIG_IGN``, which unlike a Python
    handler survives interpreter shutdown): the runner's next signal (SIGTERM 7.5 s after SIGINT)
    must not kill the step while it reports and exits. Outside the main thread (where handlers
    cannot be installed) ``work`` simply runs.
    """
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        return work(stop), []
    received: list[signal.Signals] = []
    results: list[int] = []
    failures: list[BaseException] = []

    def handle(signum: int, _frame: object) -> None:
        received.append(signal.Signals(signum))
        stop.set()

    def target() -> None:
        try:
            results.append(work(stop))
        except BaseException as exc:  # re-raised in the main thread
            failures.append(exc)

    previous = {sig: signal.signal(sig, handle) for sig in STOP_SIGNALS}
    try:
        thread = threading.Thread(target=target, name="odooops-action", daemon=True)
        thread.start()
        while thread.is_alive():
            thread.join(0.5)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_IGN if received else handler)
    if failures:
        raise failures[0]
    return results[0], received


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
