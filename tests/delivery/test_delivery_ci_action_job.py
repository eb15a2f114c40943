"""A rehearsal of ci.yml's `action` job on this machine, from the workflow file itself.

The job cannot run here (no Docker, no runner), so this test plays the runner: it reads the job's
steps from ci.yml, evaluates their `${{ }}` expressions, runs the `run:` steps that drive the
stack with bash and the `uses: ./` steps as actions/runner runs a container action (INPUT_* from
action.yml's inputs and the step's `with:`, file-command files, then the post entry points at the
end of the job). Three things are replaced: the image build, the Docker CLI (a fake `docker`
that reports a gateway of 127.0.0.1 and runs the probe on the host) and the job's `postgres`
service (a database of the service's name created on the test session's PostgreSQL, whose port
stands for the service's). Everything else is real: the stack on that database, the TCP
forwarder, the worker, the Action, and the job's own verify step.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

yaml = pytest.importorskip("yaml")

REPO_ROOT = Path(__file__).resolve().parents[2]
CI = REPO_ROOT / ".github" / "workflows" / "ci.yml"
ACTION_YML = REPO_ROOT / "action.yml"
E2E_STACK = REPO_ROOT / ".github" / "scripts" / "e2e_stack.sh"
VENV_PYTHON = REPO_ROOT / ".venv" / "bin" / "python"
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
SERVICE_PORT = re.compile(r"^job\.services\.(\w+)\.ports\[['\"]?(\d+)['\"]?\]$")
# actions/runner creates a network for a job with services and runs container actions on it.
JOB_NETWORK = "github_network_0d3c5a7e9b1f4d2a8c6e0b3f5a7d9c1e"
RUN_ID = re.compile(r"^run-\d{8}-\d{6}-[0-9a-f]{7}(-\d+)?$")
# What the runner image and earlier steps provide; the rehearsal starts after them.
SETUP_STEPS = {
    "Check out",
    "Set up Python",
    "Install the project (.venv)",
    "Build the image the Action runs",
}

FAKE_DOCKER = r"""#!/usr/bin/env bash
# Stands in for the Docker CLI: the job network's gateway is this host's loopback, and
# `docker run` of the CI image runs the command on the host.
set -euo pipefail
printf '%s\n' "$*" >>"$FAKE_DOCKER_LOG"
if [[ "${1:-} ${2:-}" == "network inspect" ]]; then
    [[ "${3:-}" == "$FAKE_DOCKER_NETWORK" ]] \
        || { echo "Error response from daemon: network ${3:-} not found" >&2; exit 1; }
    echo 127.0.0.1
    exit 0
fi
if [[ "${1:-}" == run ]]; then
    shift
    entrypoint="" envs=()
    while (($#)); do
        case "$1" in
            --rm) shift ;;
            --network) shift 2 ;;
            --entrypoint) entrypoint="$2"; shift 2 ;;
            -e) envs+=("$2"); shift 2 ;;
            -*) echo "fake docker: unknown option $1" >&2; exit 125 ;;
            *) break ;;
        esac
    done
    [[ "$1" == odooops-action:ci ]] || { echo "fake docker: no image $1" >&2; exit 125; }
    shift
    [[ "$entrypoint" == python ]] && entrypoint="$FAKE_DOCKER_PYTHON"
    exec env "${envs[@]}" "$entrypoint" "$@"
fi
echo "fake docker: unsupported command: $*" >&2
exit 125
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def read_file_command(path: Path) -> dict[str, str]:
    """NAME=value lines and NAME<<DELIM ... DELIM blocks, as the runner reads GITHUB_OUTPUT/ENV."""
    values: dict[str, str] = {}
    lines = iter(path.read_text(encoding="utf-8").splitlines())
    for line in lines:
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            block: list[str] = []
            for inner in lines:
                if inner == delimiter:
                    break
                block.append(inner)
            values[name] = "\n".join(block)
        elif "=" in line:
            name, value = line.split("=", 1)
            values[name] = value
    return values


class Job:
    """The contexts a step sees (github, env, steps) and the runner's handling of a step."""

    def __init__(
        self, workflow: dict[str, Any], job: dict[str, Any], root: Path, service_ports: dict[str, str]
    ) -> None:
        self.root = root
        self.service_ports = service_ports  # "<service>:<container port>" -> host port
        self.github = {
            "workspace": str(REPO_ROOT),
            "sha": "5d2a4f6c8e0b1d3f5a7c9e1b3d5f7a9c1e3b5d70",
            "ref_name": "main",
            "head_ref": "",
            "run_id": "4242",
            "run_attempt": "1",
            "repository": "acme/odooops-action",
            "token": "ghs_" + "x" * 36,
        }
        self.env: dict[str, str] = {}
        self.env.update(self.render_all(workflow.get("env", {})))
        self.env.update(self.render_all(job.get("env", {})))
        self.outputs: dict[str, dict[str, str]] = {}
        self.posts: list[tuple[dict[str, str], dict[str, str]]] = []
        self.transcript: list[str] = []
        self.counter = 0

    # -- expressions ------------------------------------------------------------------------
    def lookup(self, path: str) -> str:
        if path in ("always()", "!cancelled()"):
            return "true"
        if path == "job.container.network":
            return JOB_NETWORK
        service_port = SERVICE_PORT.match(path)
        if service_port:
            return self.service_ports[f"{service_port.group(1)}:{service_port.group(2)}"]
        head, _, rest = path.partition(".")
        if head == "github":
            return self.github[rest]
        if head == "env":
            return self.env.get(rest, "")
        if head == "steps":
            step_id, _, output = rest.partition(".outputs.")
            return self.outputs.get(step_id, {}).get(output, "")
        raise AssertionError(f"the rehearsal does not know the expression {path!r}")

    def evaluate(self, expression: str) -> str:
        for alternative in expression.split("||"):
            value = self.lookup(alternative.strip())
            if value:
                return value
        return ""

    def render(self, text: Any) -> str:
        return EXPRESSION.sub(lambda match: self.evaluate(match.group(1)), str(text))

    def render_all(self, mapping: Mapping[str, Any]) -> dict[str, str]:
        return {name: self.render(value) for name, value in mapping.items()}

    # -- steps -----------------------------------------------------------------------------
    def file_commands(self) -> dict[str, str]:
        self.counter += 1
        files = {}
        for name in ("GITHUB_OUTPUT", "GITHUB_ENV", "GITHUB_STATE", "GITHUB_STEP_SUMMARY", "GITHUB_PATH"):
            path = self.root / f"{name.lower()}_{self.counter}"
            path.touch()
            files[name] = str(path)
        return files

    def base_env(self, step_id: str) -> dict[str, str]:
        return {
            "PATH": f"{self.root / 'bin'}{os.pathsep}{os.environ['PATH']}",
            "HOME": str(self.root / "home"),
            "CI": "true",
            "GITHUB_ACTIONS": "true",
            "GITHUB_WORKSPACE": str(REPO_ROOT),
            "GITHUB_SHA": self.github["sha"],
            "GITHUB_REF_NAME": self.github["ref_name"],
            "GITHUB_RUN_ID": self.github["run_id"],
            "GITHUB_RUN_ATTEMPT": self.github["run_attempt"],
            "GITHUB_REPOSITORY": self.github["repository"],
            "GITHUB_JOB": "action",
            "GITHUB_ACTION": step_id,
            "RUNNER_TEMP": str(self.root / "runner_temp"),
            "FAKE_DOCKER_LOG": str(self.root / "docker.log"),
            "FAKE_DOCKER_PYTHON": sys.executable,
            "FAKE_DOCKER_NETWORK": JOB_NETWORK,
            **self.env,
            **self.file_commands(),
        }

    def finish(
        self, step: dict[str, Any], env: dict[str, str], done: subprocess.CompletedProcess[str]
    ) -> None:
        self.transcript.append(f"--- {step['name']} (exit {done.returncode})\n{done.stdout}{done.stderr}")
        assert done.returncode == 0, "\n".join(self.transcript)
        self.env.update(read_file_command(Path(env["GITHUB_ENV"])))
        if "id" in step:
            self.outputs[step["id"]] = read_file_command(Path(env["GITHUB_OUTPUT"]))

    def run_step(self, step: dict[str, Any]) -> None:
        env = {**self.base_env(step.get("id", "run")), **self.render_all(step.get("env", {}))}
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        self.finish(step, env, done)

    def action_inputs(self, given: Mapping[str, Any]) -> dict[str, str]:
        declared: dict[str, Any] = yaml.safe_load(ACTION_YML.read_text())["inputs"]
        assert set(given) <= set(declared), f"inputs not in action.yml: {set(given) - set(declared)}"
        values = {
            name: self.render(given.get(name, spec.get("default", ""))) for name, spec in declared.items()
        }
        return {f"INPUT_{name.upper()}": value for name, value in values.items()}

    def uses_step(self, step: dict[str, Any]) -> None:
        env = {**self.base_env(step["id"]), **self.action_inputs(step.get("with", {}))}
        done = subprocess.run(
            [sys.executable, str(REPO_ROOT / "entrypoint.py")],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=360,
            check=False,
        )
        self.finish(step, env, done)
        self.posts.append((env, read_file_command(Path(env["GITHUB_STATE"]))))

    def post_steps(self) -> list[subprocess.CompletedProcess[str]]:
        """The post entry points, in reverse order, each with its main step's STATE_* values."""
        results = []
        for env, state in reversed(self.posts):
            post_env = {**env, **{f"STATE_{name}": value for name, value in state.items()}}
            results.append(
                subprocess.run(
                    [sys.executable, str(REPO_ROOT / "post_entrypoint.py")],
                    cwd=REPO_ROOT,
                    env=post_env,
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=False,
                )
            )
        return results


@pytest.fixture
def job_root(tmp_path: Path) -> Path:
    if not VENV_PYTHON.exists():
        pytest.skip("the job's scripts use .venv/bin/python (make setup)")
    for directory in ("bin", "home", "runner_temp"):
        (tmp_path / directory).mkdir()
    docker = tmp_path / "bin" / "docker"
    docker.write_text(FAKE_DOCKER)
    docker.chmod(0o755)
    return tmp_path


def action_job() -> tuple[dict[str, Any], dict[str, Any]]:
    workflow: dict[str, Any] = yaml.safe_load(CI.read_text())
    return workflow, workflow["jobs"]["action"]


@pytest.fixture
def postgres_service(pg_dsn: str) -> Iterator[tuple[str, str]]:
    """The job's `postgres` service: its database on the session's server, and the server's port."""
    _, job = action_job()
    service = job["services"]["postgres"]
    assert service["image"].startswith("postgres:")
    assert service["ports"] == ["5432/tcp"]
    settings = service.get("env", {})
    assert settings.get("POSTGRES_USER", "postgres") == conninfo_to_dict(pg_dsn)["user"]
    database = sql.Identifier(settings.get("POSTGRES_DB", "postgres"))
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(database))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(database))
    service_dsn = pg_dsn.rsplit("/", 1)[0] + "/" + settings.get("POSTGRES_DB", "postgres")
    try:
        yield service_dsn, str(conninfo_to_dict(pg_dsn)["port"])
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(database))


def test_the_rehearsal_covers_every_step_of_the_job() -> None:
    _, job = action_job()
    covered = [
        step["name"]
        for step in job["steps"]
        if step.get("uses") == "./" or "e2e_stack.sh" in step.get("run", "")
    ]
    skipped = [step["name"] for step in job["steps"] if step["name"] not in covered]
    assert set(skipped) == SETUP_STEPS, "a new step in the action job: teach the rehearsal about it"
    assert len(covered) >= 9


@pytest.mark.slow
def test_the_action_job_passes_on_a_local_stack(job_root: Path, postgres_service: tuple[str, str]) -> None:
    service_dsn, service_port = postgres_service
    workflow, definition = action_job()
    job = Job(workflow, definition, job_root, {"postgres:5432": service_port})
    forward_port = free_port()
    job.env["E2E_FORWARD_PORT"] = str(forward_port)
    try:
        for step in definition["steps"]:
            if step["name"] in SETUP_STEPS:
                continue
            if step.get("uses") == "./":
                job.uses_step(step)
            else:
                job.run_step(step)
    finally:
        subprocess.run(
            ["bash", str(E2E_STACK), "stop"], env={**os.environ, **job.base_env("cleanup")}, check=False
        )
    transcript = "\n".join(job.transcript)

    # The Action reached the stack through the forwarder on the gateway, not directly.
    assert job.env["E2E_SUPABASE_URL"] == f"http://127.0.0.1:{forward_port}"
    probes = [line for line in (job_root / "docker.log").read_text().splitlines() if line.startswith("run ")]
    assert len(probes) == 1
    assert f"--network {JOB_NETWORK}" in probes[0]
    assert f"PROBE_URL=http://127.0.0.1:{forward_port}/rest/v1/" in probes[0]
    # create wrote the run id; verify (the job's own step) checked statuses, events and artifacts.
    assert RUN_ID.match(job.outputs["create"]["run_id"])
    assert job.outputs["wait"]["outcome"] == "success"
    assert job.outputs["destroy"]["outcome"] == "cancelled"
    assert "ok: artifacts of" in transcript
    # The stack kept its data in the service's database, which is still up after `stop`.
    with psycopg.connect(service_dsn, autocommit=True) as conn:
        statuses = conn.execute(
            "SELECT run_id, status FROM ops.runs WHERE run_id IN (%s, %s) ORDER BY status DESC",
            (job.outputs["create"]["run_id"], job.outputs["second"]["run_id"]),
        ).fetchall()
    assert statuses == [
        (job.outputs["create"]["run_id"], "success"),
        (job.outputs["second"]["run_id"], "cancelled"),
    ]
    # The service key is masked before it is exported, and kept out of the printed logs.
    key = job.env["E2E_SUPABASE_KEY"]
    assert f"::add-mask::{key}" in transcript
    logs_step = next(entry for entry in job.transcript if entry.startswith("--- Logs of the stack"))
    assert key not in logs_step
    assert "tcp_forward: 127.0.0.1:" in logs_step

    # The post steps run after the stack is gone: none of them has a run to cancel or a request to make.
    for post in job.post_steps():
        assert post.returncode == 0, post.stdout + post.stderr
        assert "::error" not in post.stdout
