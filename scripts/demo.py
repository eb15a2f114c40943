"""The README's demo: the whole loop on the local stack, as GitHub and a worker host would run it.

1. starts the local stack (a throwaway PostgreSQL with the `ops` migration and the
   PostgREST-compatible server on loopback) and registers a project with a `dev` environment;
   as the operator would once (docs/SECURITY.md): creates a scoped project token with
   `odooops token create` (the repository secret) and a worker login in role `odooops_worker`
   limited to the project;
2. starts a real worker process (`python -m odooops_action.worker`) connected as that worker
   login, running the sample `examples/execute_run.sh`, a pretend Odoo build;
3. runs the Action's entry point in `create` mode with `wait: true`, with the token and the
   project's publishable key (never the service_role key), exactly as the GitHub runner
   would (INPUT_* variables from action.yml with its defaults, GITHUB_OUTPUT / GITHUB_STEP_SUMMARY /
   GITHUB_STATE files, the workspace as working directory), showing its log as the Actions page
   would while it streams (workflow commands applied: groups, annotations, masks);
4. prints the step's outputs and job summary, then queues a second run and cancels it with the
   `destroy` mode;
5. operates the queue as an operator would: `odooops list`, `odooops workers`, and
   `odooops selftest` (the seed's end-to-end suite) against the demo's stack, which must pass;
   stops the worker and the stack.

Nothing is left running: Ctrl-C, SIGTERM, SIGHUP or an error midway stop the step (as the runner
cancels a job), the worker (and through it its command) and the stack before the demo exits.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.action.action_harness import FakeGitHub, RunningStep, StepResult, Workspace  # noqa: E402
from tests.devstack import DevStack  # noqa: E402
from tests.github.gh_runner_model import Command, RunnerModel  # noqa: E402

PROJECT = "demo-shop"
WORKER_LOGIN = "demo_worker"
COMMIT = "5e1f0c9a8b7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f"
STEP_TIMEOUT = 120.0
WORKER_STOP_TIMEOUT = 20.0
STEP_STOP_TIMEOUT = 15.0
EXIT_INTERRUPTED = 130
ECHO_THREADS: list[threading.Thread] = []


class Interrupted(Exception):
    """SIGTERM or SIGHUP (Ctrl-C arrives as KeyboardInterrupt)."""


def banner(title: str) -> None:
    print(f"\n\033[1m== {title} ==\033[0m", flush=True)


def register_project(stack: DevStack) -> None:
    with stack.cluster.connect("postgres") as conn:
        conn.execute(
            "insert into ops.projects (project_id, name, repository) values (%s, %s, %s)"
            " on conflict do nothing",
            (PROJECT, "Demo shop", "acme/shop"),
        )
        conn.execute(
            "insert into ops.environments (project_id, env_id, name) values (%s, 'dev', 'Development')"
            " on conflict do nothing",
            (PROJECT,),
        )


def create_worker_login(stack: DevStack) -> str:
    """The one-time setup of docs/SECURITY.md: a login in odooops_worker, limited to the project."""
    with stack.cluster.connect("postgres") as conn:
        conn.execute(f"create role {WORKER_LOGIN} login in role odooops_worker")
        conn.execute(
            "insert into ops.worker_scopes (role_name, project_id) values (%s, %s)", (WORKER_LOGIN, PROJECT)
        )
    print(f"  worker login {WORKER_LOGIN}: role odooops_worker, project {PROJECT} only", flush=True)
    return stack.cluster.dsn(WORKER_LOGIN)


def create_token(stack: DevStack) -> str:
    """``odooops token create`` as the operator runs it, with the service role; the token is the
    repository secret the workflow passes as the Action's ``token`` input."""
    inherited = ("SUPABASE_", "DATABASE_URL", "ODOOOPS_")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(inherited)},
        "SUPABASE_URL": stack.url,
        "SUPABASE_SERVICE_ROLE_KEY": stack.service_role_key,
    }
    scope = ("--scope", "create,read,cancel", "--expires", "1d", "--note", "acme/shop CI (demo)")
    created = subprocess.run(
        [sys.executable, "-m", "odooops_action", "token", "create", "--project", PROJECT, *scope],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    print(f"  $ odooops token create --project {PROJECT} {' '.join(scope)}", flush=True)
    print("  " + created.stderr.strip().replace(" Store it now", "\n  Store it now"), flush=True)
    return created.stdout.strip()


def start_worker(stack: DevStack, worker_dsn: str) -> subprocess.Popen[str]:
    env = {**os.environ, "DATABASE_URL": worker_dsn, "ODOOOPS_DEMO_STEP_SECONDS": "1"}
    command = [
        sys.executable, "-m", "odooops_action.worker",
        "--command", str(REPO / "examples" / "execute_run.sh"),
        "--worker-name", "demo-worker",
        "--kill-grace", "3",
    ]  # fmt: skip
    # Its own process group: a Ctrl-C reaches the demo, which then stops the worker itself.
    worker = subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    echo = threading.Thread(target=_prefix_lines, args=(worker, "  worker | "), daemon=True)
    echo.start()
    ECHO_THREADS.append(echo)
    return worker


def stop_worker(worker: subprocess.Popen[str], *, hurry: bool) -> None:
    """SIGTERM (a second one skips the shutdown grace when hurrying); SIGKILL as a last resort."""
    if worker.poll() is not None:
        return
    worker.send_signal(signal.SIGTERM)
    if hurry:
        time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError):
            worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(WORKER_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        print(f"  (the worker did not stop within {WORKER_STOP_TIMEOUT:g}s: killing it)", flush=True)
        worker.kill()
        worker.wait()
    for echo in ECHO_THREADS:
        echo.join(2)  # its last lines


def _prefix_lines(process: subprocess.Popen[str], prefix: str) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        print(prefix + line.rstrip("\n"), flush=True)


class RunnerLog:
    """Turns a step's stdout into what the Actions page shows: commands applied, masks honoured."""

    def __init__(self) -> None:
        self._model = RunnerModel()
        self._masks: list[str] = []

    def render(self, line: str) -> str | None:
        plain, processed = len(self._model.plain), len(self._model.processed)
        self._model.feed(line + "\n")
        if len(self._model.plain) > plain:
            return self._mask(self._model.plain[-1])
        if len(self._model.processed) > processed:
            return self._command(self._model.processed[-1])
        return None

    def _mask(self, text: str) -> str:
        for secret in self._masks:
            text = text.replace(secret, "***")
        return text

    def _command(self, command: Command) -> str | None:
        name = command.name.lower()
        if name == "add-mask":
            if command.data:
                self._masks.append(command.data)
            return None
        if name == "group":
            return f"▸ {self._mask(command.data)}"
        if name in ("warning", "error", "notice"):
            title = command.properties.get("title")
            heading = f"{name.capitalize()}{f' ({title})' if title else ''}"
            return f"{heading}: {self._mask(command.data)}"
        return None  # endgroup, stop-commands and their resume tokens, debug: not shown


class DemoStep:
    """One running step of the job, its log echoed as the Actions page shows it."""

    def __init__(self, step: RunningStep) -> None:
        self.step = step
        self._log = RunnerLog()
        self._shown = 0

    def echo(self, text: str | None = None) -> None:
        """Print the complete lines not shown yet."""
        text = self.step.stdout_so_far() if text is None else text
        end = text.rfind("\n", self._shown) + 1
        for line in text[self._shown : end].splitlines():
            rendered = self._log.render(line)
            if rendered is not None:
                print("  job | " + rendered, flush=True)
        self._shown = max(end, self._shown)

    def finish(self) -> StepResult:
        deadline = time.monotonic() + STEP_TIMEOUT
        while self.step.process.poll() is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the step did not finish within {STEP_TIMEOUT:g}s")
            self.echo()
            time.sleep(0.1)
        result = self.step.finish(30)
        self.echo(result.stdout)
        if result.stderr.strip():
            print(result.stderr.rstrip(), flush=True)
        print(f"  (step exited with {result.exit_code} after {result.elapsed:.1f}s)", flush=True)
        return result

    def cancel(self) -> None:
        """What the runner does when a job is cancelled: SIGINT, then SIGKILL after a grace.

        A Ctrl-C in the terminal has already reached the step (same process group): give it a
        moment to finish on its own before signalling it again."""
        process = self.step.process
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(1.0)
        if process.poll() is None:
            print("  (cancelling the running step, as the runner does)", flush=True)
            process.send_signal(signal.SIGINT)
            try:
                process.wait(STEP_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        with contextlib.suppress(Exception):
            self.echo(self.step.finish(5).stdout)


def run_step(job: Workspace, inputs: dict[str, str], running: list[DemoStep]) -> StepResult:
    """Run one step and echo its log while it runs."""
    step = DemoStep(job.start(inputs))
    running.append(step)
    result = step.finish()
    running.remove(step)
    return result


def show_outputs(result: StepResult) -> None:
    banner("Step outputs ($GITHUB_OUTPUT)")
    for name, value in result.outputs.items():
        print(f"  {name} = {value}")


@contextlib.contextmanager
def stop_signals_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP interrupt the demo like Ctrl-C does, so that cleanup runs."""

    def interrupt(signum: int, _frame: FrameType | None) -> None:
        raise Interrupted(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def uninterruptible() -> Iterator[None]:
    """Cleanup runs to its end: further Ctrl-C / SIGTERM / SIGHUP are ignored meanwhile."""
    stop_signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in stop_signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def demo(stack: DevStack, root: Path, running: list[DemoStep], token: str) -> int:
    job = Workspace(root, FakeGitHub(repository="acme/shop", sha=COMMIT, job="build"))
    # The workflow's secrets.ODOOOPS_TOKEN and vars.SUPABASE_PUBLISHABLE_KEY: no service_role key.
    connection = {"supabase_url": stack.url, "supabase_key": stack.publishable_key, "token": token}
    banner("Action step: mode create, wait true, with a scoped token (as the GitHub runner runs it)")
    build = {"mode": "create", "workflow_type": "build", "wait": "true"}
    result = run_step(job, {**connection, **build}, running)
    show_outputs(result)
    banner("Job summary ($GITHUB_STEP_SUMMARY)")
    print(result.summary)

    banner("Queue a deploy, then cancel it with mode destroy")
    job.github.action = "queue-deploy"
    deploy = {"mode": "create", "workflow_type": "deploy"}
    queued = run_step(job, {**connection, **deploy}, running)
    job.github.action = "cancel-deploy"
    cancel = {"mode": "destroy", "run_id": queued.outputs["run_id"]}
    cancelled = run_step(job, {**connection, **cancel}, running)
    show_outputs(cancelled)

    banner("Operating the queue: odooops list, odooops workers, odooops selftest")
    for command in (["list"], ["workers"], ["selftest"]):
        code = operator_command(stack, root, command)
        if code != 0:
            print(f"  (odooops {command[0]} exited with {code})", flush=True)
            return code
    return result.exit_code


def operator_command(stack: DevStack, root: Path, arguments: list[str]) -> int:
    """``odooops <arguments>`` over REST against the demo's stack, its output indented."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SUPABASE_", "DATABASE_URL"))}
    env |= {"SUPABASE_URL": stack.url, "SUPABASE_SERVICE_ROLE_KEY": stack.service_role_key}
    env["SUPABASE_ANON_KEY"] = stack.anon_key
    print(f"  $ odooops {' '.join(arguments)}", flush=True)
    done = subprocess.run(
        [sys.executable, "-m", "odooops_action", *arguments],
        cwd=root,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT,
        check=False,
    )
    for line in (done.stdout + done.stderr).splitlines():
        print("  " + line, flush=True)
    return done.returncode


def main() -> int:
    with stop_signals_interrupt():
        stack = DevStack()
        root = Path(tempfile.mkdtemp(prefix="odooops-demo-"))
        running: list[DemoStep] = []
        worker: subprocess.Popen[str] | None = None
        interrupted = True
        try:
            stack.start()
            banner("Local stack")
            print(f"  SUPABASE_URL={stack.url}\n  DATABASE_URL={stack.database_url}", flush=True)
            register_project(stack)
            banner("One-time set-up by the operator: a CI token and a worker login")
            token = create_token(stack)
            worker = start_worker(stack, create_worker_login(stack))
            code = demo(stack, root, running, token)
            interrupted = False
            return code
        except (KeyboardInterrupt, Interrupted) as exc:
            print(f"\nDemo interrupted ({str(exc) or 'Ctrl-C'}).", file=sys.stderr, flush=True)
            return EXIT_INTERRUPTED
        finally:
            with uninterruptible():
                if interrupted:
                    print("Stopping the step, the worker and the local stack...", file=sys.stderr, flush=True)
                for step in running:
                    step.cancel()
                if worker is not None:
                    stop_worker(worker, hurry=interrupted)
                stack.stop()
                shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
