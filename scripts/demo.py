"""The README's demo: the whole loop on the local stack, as GitHub and a worker host would run it.

1. starts the local stack (a throwaway PostgreSQL with the `ops` migration and the
   PostgREST-compatible server on loopback) and registers a project with a `dev` environment;
2. starts a real worker process (`python -m odooops_action.worker`) running the sample
   `examples/execute_run.sh`, a pretend Odoo build;
3. runs the Action's entry point in `create` mode with `wait: true` exactly as the GitHub runner
   would (INPUT_* variables from action.yml with its defaults, GITHUB_OUTPUT / GITHUB_STEP_SUMMARY /
   GITHUB_STATE files, the workspace as working directory), showing its log as it streams;
4. prints the step's outputs and job summary, then queues a second run and cancels it with the
   `destroy` mode; stops the worker and the stack.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.action.action_harness import FakeGitHub, StepResult, Workspace  # noqa: E402
from tests.devstack import DevStack  # noqa: E402

PROJECT = "demo-shop"
COMMIT = "5e1f0c9a8b7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f"


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


def start_worker(stack: DevStack) -> subprocess.Popen[str]:
    env = {**os.environ, "DATABASE_URL": stack.database_url, "ODOOOPS_DEMO_STEP_SECONDS": "0.6"}
    command = [
        sys.executable, "-m", "odooops_action.worker",
        "--command", str(REPO / "examples" / "execute_run.sh"),
        "--worker-name", "demo-worker",
    ]  # fmt: skip
    worker = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    threading.Thread(target=_prefix_lines, args=(worker, "  worker | "), daemon=True).start()
    return worker


def _prefix_lines(process: subprocess.Popen[str], prefix: str) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        print(prefix + line.rstrip("\n"), flush=True)


def run_step(job: Workspace, inputs: dict[str, str]) -> StepResult:
    """Run one step and echo its log (what the Actions UI shows) while it runs."""
    step = job.start(inputs)
    shown = 0
    while step.process.poll() is None:
        shown = _echo_new(step.stdout_so_far(), shown)
        time.sleep(0.1)
    result = step.finish(30)
    _echo_new(result.stdout, shown)
    if result.stderr.strip():
        print(result.stderr.rstrip(), flush=True)
    print(f"  (step exited with {result.exit_code} after {result.elapsed:.1f}s)", flush=True)
    return result


def _echo_new(text: str, shown: int) -> int:
    for line in text[shown:].splitlines():
        # The runner masks the value of ::add-mask::; so does the demo's echo.
        shown_line = "::add-mask::***" if line.startswith("::add-mask::") else line
        print("  job | " + shown_line, flush=True)
    return len(text)


def show_outputs(result: StepResult) -> None:
    banner("Step outputs ($GITHUB_OUTPUT)")
    for name, value in result.outputs.items():
        print(f"  {name} = {value}")


def main() -> int:
    with DevStack() as stack, tempfile.TemporaryDirectory(prefix="odooops-demo-") as root:
        banner("Local stack")
        print(f"  SUPABASE_URL={stack.url}\n  DATABASE_URL={stack.database_url}")
        register_project(stack)
        worker = start_worker(stack)
        job = Workspace(Path(root), FakeGitHub(repository="acme/shop", sha=COMMIT, job="build"))
        connection = {"supabase_url": stack.url, "supabase_key": stack.service_role_key}
        try:
            banner("Action step: mode create, wait true (as the GitHub runner runs it)")
            build = {"mode": "create", "project_id": PROJECT, "workflow_type": "build", "wait": "true"}
            result = run_step(job, {**connection, **build})
            show_outputs(result)
            banner("Job summary ($GITHUB_STEP_SUMMARY)")
            print(result.summary)

            banner("Queue a deploy, then cancel it with mode destroy")
            job.github.action = "queue-deploy"
            queued = run_step(
                job, {**connection, "mode": "create", "project_id": PROJECT, "workflow_type": "deploy"}
            )
            job.github.action = "cancel-deploy"
            cancelled = run_step(job, {**connection, "mode": "destroy", "run_id": queued.outputs["run_id"]})
            show_outputs(cancelled)
            return result.exit_code
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(30)


if __name__ == "__main__":
    sys.exit(main())
