"""Run the Action the way actions/runner runs a container action, and read back what it left.

The environment is built from ``action.yml`` itself (parsed with a YAML parser): every declared
input becomes ``INPUT_<NAME>`` (upper-cased, spaces → ``_``, hyphens kept), declared defaults are
applied with their ``${{ github.* }}`` expressions evaluated from a fake GitHub context, and
``required`` is NOT enforced (the runner does not). File-command files live in a temp directory,
the workspace is the working directory, and ``STATE_<name>`` comes from the main step's
``GITHUB_STATE`` for the post step. The entry points run as real subprocesses
(``python entrypoint.py``), or in-process through ``main(environ)`` for fast cases.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import yaml

from tests.github.gh_runner_model import Command, RunnerModel, parse_file_commands

REPO = Path(__file__).resolve().parents[2]
ACTION_YML = REPO / "action.yml"
ENTRYPOINT = REPO / "entrypoint.py"
POST_ENTRYPOINT = REPO / "post_entrypoint.py"
_EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
FILE_COMMANDS = ("GITHUB_OUTPUT", "GITHUB_STATE", "GITHUB_STEP_SUMMARY", "GITHUB_ENV", "GITHUB_PATH")


def load_manifest() -> dict[str, Any]:
    manifest = yaml.safe_load(ACTION_YML.read_text(encoding="utf-8"))
    assert isinstance(manifest, dict)
    return manifest


def input_env_name(name: str) -> str:
    """The runner's rule: ``INPUT_`` + name with spaces → ``_``, upper-cased (hyphens kept)."""
    return "INPUT_" + name.replace(" ", "_").upper()


@dataclass
class FakeGitHub:
    """The ``github`` context of one job step, and the environment variables derived from it."""

    repository: str = "acme/shop"
    run_id: str = "9900001"
    run_attempt: str = "1"
    job: str = "deploy"
    action: str = "queue"
    sha: str = "3f7a1c2b9d8e4f5a6b7c8d9e0f1a2b3c4d5e6f70"
    ref: str = "refs/heads/main"
    ref_name: str = "main"
    actor: str = "octocat"
    token: str = field(default_factory=lambda: "ghs_" + secrets.token_hex(18))
    server_url: str = "https://github.com"
    api_url: str = "https://api.github.com"
    event_name: str = "push"

    @property
    def workflow_ref(self) -> str:
        return f"{self.repository}/.github/workflows/ci.yml@{self.ref}"

    def context(self) -> dict[str, str]:
        return {
            "repository": self.repository,
            "run_id": self.run_id,
            "run_attempt": self.run_attempt,
            "job": self.job,
            "action": self.action,
            "sha": self.sha,
            "ref": self.ref,
            "ref_name": self.ref_name,
            "actor": self.actor,
            "token": self.token,
            "server_url": self.server_url,
            "api_url": self.api_url,
            "event_name": self.event_name,
            "workflow_ref": self.workflow_ref,
        }

    def env(self) -> dict[str, str]:
        """The GITHUB_* variables the runner exposes (the token is NOT among them)."""
        names = (
            "repository",
            "run_id",
            "run_attempt",
            "job",
            "action",
            "sha",
            "ref",
            "ref_name",
            "actor",
            "server_url",
            "api_url",
            "event_name",
            "workflow_ref",
        )
        context = self.context()
        return {f"GITHUB_{name.upper()}": context[name] for name in names}


def evaluate(expression_text: str, github: FakeGitHub) -> str:
    """Replace each ``${{ github.x }}``; anything else is a test bug, not a silent empty string."""
    context = github.context()

    def value(match: re.Match[str]) -> str:
        expression = match.group(1)
        if not expression.startswith("github."):
            raise AssertionError(f"unsupported expression in action.yml: {expression}")
        return context[expression.removeprefix("github.")]

    return _EXPRESSION.sub(value, expression_text)


def input_environment(with_inputs: Mapping[str, str], github: FakeGitHub) -> dict[str, str]:
    """``INPUT_*`` as the runner sets them: given values, else the declared default (evaluated)."""
    declared: dict[str, Any] = load_manifest()["inputs"]
    unknown = set(with_inputs) - set(declared)
    assert not unknown, f"inputs not declared in action.yml: {unknown}"
    env: dict[str, str] = {}
    for name, spec in declared.items():
        if name in with_inputs:
            value = with_inputs[name]
        else:
            default = spec.get("default", "")
            assert isinstance(default, str), f"default of {name} must be a string, got {default!r}"
            value = evaluate(default, github)
        env[input_env_name(name)] = value
    return env


@dataclass
class StepResult:
    exit_code: int
    stdout: str
    stderr: str
    outputs: dict[str, str]
    state: dict[str, str]
    summary: str
    elapsed: float

    @property
    def runner(self) -> RunnerModel:
        """The runner reads workflow commands from stdout AND stderr (tests/container keeps their order)."""
        return RunnerModel().feed(self.stdout).feed(self.stderr)

    def commands(self, name: str) -> list[Command]:
        return [command for command in self.runner.processed if command.name.lower() == name]

    def annotations(self, level: str) -> list[Command]:
        return self.commands(level)

    @property
    def visible_log(self) -> str:
        """Everything the runner would show: the stdout minus the commands it consumed."""
        runner = self.runner
        return "\n".join(runner.plain)


class Workspace:
    """One job's directories: workspace, home, file-command files; runs steps in them."""

    def __init__(self, root: Path, github: FakeGitHub | None = None) -> None:
        self.root = root
        self.github = github or FakeGitHub()
        self.workspace = root / "workspace"
        self.home = root / "home"
        self.file_commands = root / "file_commands"
        for directory in (self.workspace, self.home, self.file_commands):
            directory.mkdir(parents=True, exist_ok=True)
        self._step = 0
        self.last_state_file: Path | None = None

    def environment(
        self, with_inputs: Mapping[str, str], extra: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        self._step += 1
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "CI": "true",
            "GITHUB_ACTIONS": "true",
            "GITHUB_WORKSPACE": str(self.workspace),
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            **self.github.env(),
        }
        for variable in FILE_COMMANDS:
            path = self.file_commands / f"{variable.lower()}_{self._step}"
            path.touch()
            env[variable] = str(path)
        self.last_state_file = Path(env["GITHUB_STATE"])
        env.update(input_environment(with_inputs, self.github))
        env.update(extra or {})
        return env

    @staticmethod
    def collect(
        env: Mapping[str, str], exit_code: int, stdout: str, stderr: str, elapsed: float
    ) -> StepResult:
        def read(variable: str) -> str:
            return Path(env[variable]).read_text(encoding="utf-8")

        return StepResult(
            exit_code=exit_code,
            stdout=stdout,
            stderr=stderr,
            outputs=parse_file_commands(read("GITHUB_OUTPUT")),
            state=parse_file_commands(read("GITHUB_STATE")),
            summary=read("GITHUB_STEP_SUMMARY"),
            elapsed=elapsed,
        )

    def start(
        self,
        with_inputs: Mapping[str, str],
        *,
        extra: Mapping[str, str] | None = None,
        entrypoint: Path = ENTRYPOINT,
    ) -> RunningStep:
        env = self.environment(with_inputs, extra)
        process = subprocess.Popen(
            [sys.executable, str(entrypoint)],
            env=env,
            cwd=self.workspace,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        return RunningStep(process, env, time.monotonic())

    def run(
        self, with_inputs: Mapping[str, str], *, extra: Mapping[str, str] | None = None, timeout: float = 60
    ) -> StepResult:
        return self.start(with_inputs, extra=extra).finish(timeout)

    def run_post(
        self, main: StepResult, with_inputs: Mapping[str, str], *, timeout: float = 60
    ) -> StepResult:
        """The post step: a new process with the same inputs and ``STATE_*`` from the main step."""
        state = {f"STATE_{name}": value for name, value in main.state.items()}
        return self.start(with_inputs, extra=state, entrypoint=POST_ENTRYPOINT).finish(timeout)


@dataclass
class RunningStep:
    process: subprocess.Popen[str]
    env: dict[str, str]
    started: float
    _stdout: list[str] = field(default_factory=list)
    _reader: threading.Thread | None = None

    def __post_init__(self) -> None:
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._stdout.append(line)

    def stdout_so_far(self) -> str:
        return "".join(self._stdout)

    def wait_for_output(self, needle: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.stdout_so_far():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} never printed; output so far:\n{self.stdout_so_far()}")
            time.sleep(0.02)

    def signal(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    def finish(self, timeout: float = 60) -> StepResult:
        try:
            exit_code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        assert self._reader is not None
        self._reader.join(5)
        assert self.process.stderr is not None
        stderr = self.process.stderr.read()
        return Workspace.collect(
            self.env, exit_code, self.stdout_so_far(), stderr, time.monotonic() - self.started
        )


# --- the queue side: projects, runs and a worker acting from the test -----------------------------


def new_project(db: psycopg.Connection[Any], env_ids: Sequence[str] = ("dev",)) -> str:
    project_id = f"shop-{uuid.uuid4().hex[:10]}"
    db.execute("insert into ops.projects (project_id, name) values (%s, %s)", (project_id, "Shop"))
    for env_id in env_ids:
        db.execute("insert into ops.environments (project_id, env_id) values (%s, %s)", (project_id, env_id))
    return project_id


def queue_run(db: psycopg.Connection[Any], project_id: str, sha: str = "ab" * 20, env_id: str = "dev") -> str:
    row = db.execute(
        "select ops.create_run(%s, 'build', 'main', %s, %s) ->> 'run'", (project_id, sha, env_id)
    ).fetchone()
    assert row is not None
    return str(json.loads(row[0])["run_id"])


def run_row(db: psycopg.Connection[Any], run_id: str) -> dict[str, Any]:
    cursor = db.execute("select to_jsonb(r) from ops.runs r where r.run_id = %s", (run_id,))
    row = cursor.fetchone()
    assert row is not None, f"run {run_id} not in ops.runs"
    return dict(row[0])


def wait_until(condition: Callable[[], bool], timeout: float = 30, interval: float = 0.05) -> float:
    """Seconds it took for ``condition`` to hold; fails after ``timeout``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)
    return time.monotonic() - started


Event = tuple[str, str, dict[str, Any]]


@dataclass
class FakeWorker:
    """Plays the worker from the test with the queue's SQL functions, in a thread."""

    dsn: str
    project_id: str
    events: Sequence[Event] = ()
    batch_size: int = 50
    pause: float = 0.0
    final_status: str | None = "success"
    exit_code: int | None = 0
    reason: str | None = None
    artifacts: Sequence[tuple[str, str]] = ()
    claim_after: float = 0.0
    worker_id: str = "worker-7"
    run_id: str | None = None
    error: BaseException | None = None
    started: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> FakeWorker:
        self._thread = threading.Thread(target=self._guarded, daemon=True)
        self._thread.start()
        return self

    def join(self, timeout: float = 60) -> None:
        assert self._thread is not None
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "fake worker did not finish"
        if self.error is not None:
            raise self.error

    def _guarded(self) -> None:
        try:
            self._work()
        except BaseException as exc:
            self.error = exc

    def _work(self) -> None:
        time.sleep(self.claim_after)
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            deadline = time.monotonic() + 30
            while True:
                row = conn.execute(
                    "select run_id from ops.claim_next_run(%s, %s)", (self.worker_id, self.project_id)
                ).fetchone()
                if row is not None:
                    break
                if time.monotonic() > deadline:
                    raise AssertionError("no run to claim")
                time.sleep(0.05)
            run_id = self.run_id = str(row[0])
            conn.execute("select ops.start_run(%s, %s)", (run_id, self.worker_id))
            self.started.set()
            for batch in _chunks(self.events, self.batch_size):
                payload = [
                    {"level": level, "message": message, "payload": extra} for level, message, extra in batch
                ]
                conn.execute("select ops.append_events(%s, %s::jsonb)", (run_id, json.dumps(payload)))
                if self.pause:
                    time.sleep(self.pause)
            for artifact_type, path in self.artifacts:
                conn.execute(
                    "select ops.add_artifact(%s, %s, %s, %s, %s)",
                    (run_id, artifact_type, path, "sha256:" + "cd" * 32, 1234),
                )
            if self.final_status is not None:
                conn.execute(
                    "select ops.finish_run(%s, %s, %s, %s, %s)",
                    (run_id, self.worker_id, self.final_status, self.exit_code, self.reason),
                )


def _chunks(items: Sequence[Event], size: int) -> Iterable[Sequence[Event]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
