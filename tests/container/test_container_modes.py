"""Every mode in the real image, run as actions/runner runs a container action, in a hostile env context.

The job's ``env`` context reaches the container whole (``-e NAME`` for each variable), so what a
workflow sets for its own tools is what our Python sees too: a ``PYTHONPATH`` into the workspace
holding a fake ``httpx`` and a ``sitecustomize``, ``PYTHONHOME``/``PYTHONSTARTUP``/CA bundles at
paths of the runner host, ``PYTHONWARNINGS=error``, ``PYTHONINSPECT``, and proxy settings that do
not apply to the stack's ``http://`` URL. None of it may break a step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.action.action_harness import FakeWorker, queue_run, run_row
from tests.container.runner import RunnerJob, StepOutcome

pytestmark = pytest.mark.slow

EXPECTED_COMMANDS = {"add-mask", "debug", "group", "endgroup", "stop-commands", "notice", "warning"}


def hostile_env_context(job: RunnerJob) -> dict[str, str]:
    """What a workflow's ``env:`` may hold for its own tools; host paths as the runner translates them."""
    src = job.workspace / "src"
    (src / "httpx").mkdir(parents=True)
    (src / "httpx" / "__init__.py").write_text('raise ImportError("the workspace\'s own httpx")\n')
    (src / "sitecustomize.py").write_text('print("::error::sitecustomize from the workspace ran")\n')
    (job.workspace / "startup.py").write_text('print("::error::PYTHONSTARTUP ran")\n')
    return {
        "PYTHONPATH": str(src),
        "PYTHONSTARTUP": str(job.workspace / "startup.py"),
        "PYTHONHOME": "/opt/hostedtoolcache/Python/3.12.7/x64",
        "PYTHONWARNINGS": "error",
        "PYTHONINSPECT": "1",
        "PYTHONNOUSERSITE": "",
        "SSL_CERT_FILE": "/etc/ssl/certs/self-hosted-runner-ca.pem",
        "SSL_CERT_DIR": "/usr/local/share/ca-certificates/runner",
        "REQUESTS_CA_BUNDLE": "/etc/pki/tls/certs/ca-bundle.crt",
        "HTTPS_PROXY": "::this is not a proxy::",
        "https_proxy": "http://proxy.invalid:3128",
        "NO_PROXY": "",
        "LC_ALL": "de_DE.ISO-8859-1",
        "CI": "true",
    }


def assert_clean(step: StepOutcome, *, allowed: set[str] = EXPECTED_COMMANDS) -> None:
    """No traceback, no stray command, on either stream; warnings: the CA-path notices and run events."""
    assert "Traceback" not in step.text, step.text
    for command in step.runner.processed:
        assert command.name.lower() in allowed or command.name in _tokens(step), command.line
    for warning in step.annotations("warning"):
        event = warning.properties.get("title", "").startswith("OdooOps run-")
        assert event or "does not exist in the Action's container" in warning.data, warning.line


def _tokens(step: StepOutcome) -> set[str]:
    return {c.data for c in step.runner.processed if c.name == "stop-commands"}


def test_every_mode_and_its_post_step_in_a_hostile_env_context(
    job: RunnerJob, connection: dict[str, str], project: str, pg_dsn: str, db: psycopg.Connection[Any]
) -> None:
    job.env_context.update(hostile_env_context(job))

    # create + wait (a worker finishes the run), then wait on it again, then destroy a second run.
    inputs = {**connection, "mode": "create", "project_id": project, "workflow_type": "build", "wait": "true"}
    running = job.start(inputs)
    running.wait_for_output("Waiting up to")
    events = [("info", "compiling é ✓", {}), ("warn", "slow disk", {})]
    worker = FakeWorker(pg_dsn, project, events=events).start()
    create = running.finish()
    worker.join()
    assert create.exit_code == 0, create.text
    run_id = create.outputs["run_id"]
    assert create.outputs["outcome"] == "success"
    assert "compiling é ✓" in create.text
    assert "✅" in create.summary or "success" in create.summary
    assert_clean(create, allowed=EXPECTED_COMMANDS | {"warning"})
    # The three CA variables were named, each once, as not existing in the container.
    warned = " ".join(w.data for w in create.annotations("warning"))
    for variable in ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE"):
        assert f"{variable}=" in warned

    wait = job.run({**connection, "mode": "wait", "run_id": run_id})
    assert wait.exit_code == 0, wait.text
    assert wait.outputs["status"] == "success"
    assert_clean(wait)

    second = queue_run(db, project)
    destroy = job.run({**connection, "mode": "destroy", "run_id": second})
    assert destroy.exit_code == 0, destroy.text
    assert destroy.outputs["outcome"] == "cancelled"
    assert run_row(db, second)["status"] == "cancelled"
    assert_clean(destroy)

    # Post steps (new containers, --entrypoint post_entrypoint.py, STATE_* of their main step).
    for main in (destroy, wait, create):
        post = job.run_post(main, {**connection, "mode": "wait", "run_id": run_id})
        assert post.exit_code == 0, post.text
        assert not post.annotations("error")
        assert_clean(post)


def test_invalid_inputs_fail_the_step_in_the_container(job: RunnerJob) -> None:
    step = job.run({"mode": "create", "supabase_url": "ftp://example.com", "supabase_key": ""})

    assert step.exit_code == 2
    errors = [e.data for e in step.annotations("error")]
    assert any("supabase_url" in e for e in errors), errors
    assert step.outputs == {}


def test_the_workspace_is_the_working_directory_and_files_land_on_the_host(
    job: RunnerJob, connection: dict[str, str], project: str
) -> None:
    step = job.run({**connection, "mode": "create", "project_id": project, "workflow_type": "test"})

    assert step.exit_code == 0, step.text
    assert step.outputs["outcome"] == "queued"
    assert step.state["run_id"] == step.outputs["run_id"]
    assert "queued" in step.summary
    # Written through the file_commands mount, by the container's root, readable by the runner.
    written = sorted(p.name.split("_")[0] for p in Path(job.file_commands).iterdir() if p.stat().st_size)
    assert written == ["save", "set", "step"]
