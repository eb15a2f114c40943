"""A rehearsal of ci.yml's `action` job on this machine, from the workflow file itself.

This test plays the runner: it reads the job's steps from ci.yml, evaluates their `${{ }}`
expressions, runs the `run:` steps that drive the stack with bash, and the `uses: ./` steps as
actions/runner runs a container action — in a real Docker engine (tests/container), on a job
network created like the runner's (`github_network_<id>`), with the image built from the
Dockerfile, then the post entry points at the end of the job. The scripts' `docker` is the real
client talking to that engine. One thing is replaced: the job's `postgres` service (a database of
the service's name created on the test session's PostgreSQL, whose port stands for the service's),
and with it the probe's image (the service's image cannot be pulled here: the Action's image, which
has bash too, stands in). Everything else is real: the stack on that database, the TCP forwarder on
the network's gateway, the worker, the Action in its container, and the job's own verify step.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from tests.action.action_harness import FakeGitHub
from tests.container.engine import DOCKER, Engine
from tests.container.runner import RunnerJob, StepOutcome
from tests.container.session import INSTANCE_LABEL

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
SETUP_STEPS = {"Check out", "Set up Python", "Install the project (.venv)"}


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
        self,
        workflow: dict[str, Any],
        job: dict[str, Any],
        root: Path,
        service_ports: dict[str, str],
        *,
        engine: Engine,
        image: str,
    ) -> None:
        self.root = root
        self.engine = engine
        self.image = image
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
        self.posts: list[tuple[RunnerJob, dict[str, str], StepOutcome]] = []
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
            "DOCKER_HOST": self.engine.host,
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
        if "E2E_PROBE_IMAGE" in env:  # the service's image cannot be pulled here
            env["E2E_PROBE_IMAGE"] = self.image
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
        """Every declared input, given or defaulted, evaluated in this job's contexts."""
        declared: dict[str, Any] = yaml.safe_load(ACTION_YML.read_text())["inputs"]
        assert set(given) <= set(declared), f"inputs not in action.yml: {set(given) - set(declared)}"
        return {
            name: self.render(given.get(name, spec.get("default", ""))) for name, spec in declared.items()
        }

    def container(self, step_id: str) -> RunnerJob:
        """The runner's side of a `uses: ./` step: this job's contexts, its network, the image."""
        github = FakeGitHub(
            repository=self.github["repository"],
            run_id=self.github["run_id"],
            run_attempt=self.github["run_attempt"],
            job="action",
            action=step_id,
            sha=self.github["sha"],
            ref_name=self.github["ref_name"],
            token=self.github["token"],
        )
        root = self.root / "containers" / step_id
        return RunnerJob(
            self.engine, self.image, root, github=github, env_context=self.env, network=JOB_NETWORK
        )

    def uses_step(self, step: dict[str, Any]) -> None:
        inputs = self.action_inputs(step.get("with", {}))
        runner = self.container(step["id"])
        outcome = runner.run(inputs, timeout=360)
        self.transcript.append(f"--- {step['name']} (exit {outcome.exit_code})\n{outcome.text}")
        assert outcome.exit_code == 0, "\n".join(self.transcript)
        self.outputs[step["id"]] = outcome.outputs
        self.posts.append((runner, inputs, outcome))

    def post_steps(self) -> list[StepOutcome]:
        """The post steps, in reverse order: new containers, each with its main step's STATE_* values."""
        return [runner.run_post(main, inputs) for runner, inputs, main in reversed(self.posts)]


@pytest.fixture
def job_root(tmp_path: Path) -> Path:
    if not VENV_PYTHON.exists():
        pytest.skip("the job's scripts use .venv/bin/python (make setup)")
    for directory in ("bin", "home", "runner_temp"):
        (tmp_path / directory).mkdir()
    # The runner image's `docker`: the client of the engine (another client may be first on PATH).
    (tmp_path / "bin" / "docker").symlink_to(DOCKER)
    return tmp_path


@pytest.fixture
def job_network(engine: Engine) -> Iterator[str]:
    """The network actions/runner creates for a job with services; its gateway is this host."""
    engine.docker("network", "rm", JOB_NETWORK, timeout=60)  # left by an interrupted session
    engine.must("network", "create", "--label", INSTANCE_LABEL, JOB_NETWORK, timeout=60)
    try:
        yield engine.must(
            "network", "inspect", JOB_NETWORK, "--format", "{{range .IPAM.Config}}{{.Gateway}}{{end}}"
        ).strip()
    finally:
        engine.remove_containers(INSTANCE_LABEL)
        engine.docker("network", "rm", JOB_NETWORK, timeout=60)


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
def test_the_action_job_passes_on_a_local_stack(
    job_root: Path, postgres_service: tuple[str, str], job_network: str, engine: Engine, image: str
) -> None:
    service_dsn, service_port = postgres_service
    workflow, definition = action_job()
    job = Job(workflow, definition, job_root, {"postgres:5432": service_port}, engine=engine, image=image)
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

    # The Action, in its container on the job network, reached the stack through the forwarder on
    # the network's gateway (the stack itself listens on the host's loopback only).
    assert job.env["E2E_SUPABASE_URL"] == f"http://{job_network}:{forward_port}"
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
    assert f"tcp_forward: {job_network}:" in logs_step

    # The post steps run after the stack is gone: none of them has a run to cancel or a request to make.
    for post in job.post_steps():
        assert post.exit_code == 0, post.text
        assert not post.annotations("error"), post.text
