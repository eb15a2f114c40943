"""A container action step run the way actions/runner runs it, against a real Docker engine.

What the runner does for ``runs.using: docker`` (``ContainerActionHandler``, ``DockerCommandManager``
and ``ProcessInvoker`` in actions/runner), and what this module reproduces:

* the step's environment is the job's whole ``env`` context (workflow, job and step ``env:``, and
  ``GITHUB_ENV`` additions), ``INPUT_<NAME>`` for every declared input (defaults included), the
  ``GITHUB_*``/``RUNNER_*`` variables, ``HOME``, and for a post step the ``STATE_*`` the main step
  saved; values that are host paths under a mounted directory are translated to container paths;
* ``docker run --name <image>_<6 hex> --label <instance> --workdir /github/workspace --rm``,
  ``-e NAME`` for each variable (the VALUE travels in the docker client's own environment, never on
  its command line), ``-e GITHUB_ACTIONS=true``, ``-e CI=true`` unless set, ``--entrypoint`` for a
  ``post-entrypoint``, and the mounts of ``/var/run/docker.sock``, ``/github/runner_temp``,
  ``/github/home``, ``/github/workflow``, ``/github/file_commands`` and ``/github/workspace``;
* the client's stdout AND stderr go, line by line, through one workflow-command processor;
* cancellation (``killProcessOnCancel: false``): SIGINT to the docker CLIENT, up to 7.5 s for it to
  exit, then SIGTERM, up to 2.5 s more, then SIGKILL to the client only. The container is never
  killed by the runner. The file commands are read as soon as the client has exited.

Two deviations, both because of this machine: ``--network host`` unless a job network is given
(the local stack listens on loopback; the runner passes ``--network`` only when the job has a
network, i.e. services), and the engine's own socket mounted at ``/var/run/docker.sock`` (there is
no system engine here).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.action.action_harness import FakeGitHub, input_environment, load_manifest
from tests.container.engine import Engine
from tests.container.session import INSTANCE_LABEL
from tests.github.gh_runner_model import Command, RunnerModel, parse_file_commands

RUNNER_SIGINT_TIMEOUT = 7.5  # ProcessInvoker._sigintTimeout
RUNNER_SIGTERM_TIMEOUT = 2.5  # ProcessInvoker._sigtermTimeout
CONTAINER_WORKSPACE = "/github/workspace"
FILE_COMMANDS = {
    "GITHUB_OUTPUT": "set_output",
    "GITHUB_STATE": "save_state",
    "GITHUB_STEP_SUMMARY": "step_summary",
    "GITHUB_ENV": "set_env",
    "GITHUB_PATH": "add_path",
}


@dataclass
class StepOutcome:
    """What the runner has once the docker client is gone."""

    exit_code: int | None  # None: the client was killed
    lines: list[tuple[str, str]]  # (stream, line) in arrival order
    outputs: dict[str, str]
    state: dict[str, str]
    summary: str
    elapsed: float
    container: str
    signals: list[tuple[float, str]] = field(default_factory=list)  # (seconds after the first, name)
    client_exit_after_first_signal: float | None = None

    @property
    def runner(self) -> RunnerModel:
        return RunnerModel().feed("\n".join(line for _, line in self.lines) + "\n")

    def annotations(self, level: str) -> list[Command]:
        return [command for command in self.runner.processed if command.name.lower() == level]

    @property
    def text(self) -> str:
        return "\n".join(f"[{stream}] {line}" for stream, line in self.lines)


class RunnerJob:
    """One job on a runner: its temp directory, workspace, ``github`` context and ``env`` context."""

    def __init__(
        self,
        engine: Engine,
        image: str,
        root: Path,
        *,
        github: FakeGitHub | None = None,
        env_context: Mapping[str, str] | None = None,
        network: str = "host",
    ) -> None:
        self.engine = engine
        self.network = network
        self.image = image
        self.github = github or FakeGitHub()
        self.env_context = dict(env_context or {})
        self.workspace = root / "work" / "repo" / "repo"
        self.temp = root / "work" / "_temp"
        self.home = self.temp / "_github_home"
        self.workflow = self.temp / "_github_workflow"
        self.file_commands = self.temp / "_runner_file_commands"
        for directory in (self.workspace, self.home, self.workflow, self.file_commands):
            directory.mkdir(parents=True, exist_ok=True)
        (self.workflow / "event.json").write_text("{}", encoding="utf-8")
        self.mounts = [
            (str(engine.socket), "/var/run/docker.sock"),
            (str(self.temp), "/github/runner_temp"),
            (str(self.home), "/github/home"),
            (str(self.workflow), "/github/workflow"),
            (str(self.file_commands), "/github/file_commands"),
            (str(self.workspace), CONTAINER_WORKSPACE),
        ]

    def translate(self, value: str) -> str:
        """``ContainerInfo.TranslateToContainerPath``: a host path under a mount, as the container sees it."""
        for host, container in self.mounts[1:]:
            if value == host or value.startswith(host + "/"):
                return container + value[len(host) :]
        return value

    def step_environment(
        self, with_inputs: Mapping[str, str], files: Mapping[str, Path], extra: Mapping[str, str]
    ) -> dict[str, str]:
        env: dict[str, str] = dict(self.env_context)
        env.update(input_environment(with_inputs, self.github))
        env.update(self.github.env())
        env.update(
            {
                "GITHUB_WORKSPACE": str(self.workspace),
                "GITHUB_EVENT_PATH": str(self.workflow / "event.json"),
                "RUNNER_OS": "Linux",
                "RUNNER_ARCH": "X64",
                "RUNNER_TEMP": str(self.temp),
                "RUNNER_NAME": "rehearsal",
                "HOME": str(self.home),
                "ACTIONS_RUNTIME_URL": "https://pipelines.actions.githubusercontent.com/x/",
                "ACTIONS_RUNTIME_TOKEN": "rehearsal-runtime-token",
            }
        )
        env.update({variable: str(path) for variable, path in files.items()})
        env.update(extra)
        return {name: self.translate(value) for name, value in env.items()}

    def docker_run_args(self, env_names: list[str], entrypoint: str | None, name: str) -> list[str]:
        args = ["run", "--name", name, "--label", INSTANCE_LABEL, "--workdir", CONTAINER_WORKSPACE, "--rm"]
        for variable in env_names:
            args += ["-e", variable]
        args += ["-e", "GITHUB_ACTIONS=true"]
        if "CI" not in env_names:
            args += ["-e", "CI=true"]
        if entrypoint:
            args += ["--entrypoint", entrypoint]
        args += ["--network", self.network]
        for host, container in self.mounts:
            args += ["-v", f"{host}:{container}"]
        args.append(self.image)
        return args

    def start(
        self,
        with_inputs: Mapping[str, str],
        *,
        post: bool = False,
        state: Mapping[str, str] | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> RunningContainerStep:
        guid = uuid.uuid4().hex
        files = {}
        for variable, prefix in FILE_COMMANDS.items():
            path = self.file_commands / f"{prefix}_{guid}"
            path.touch()
            files[variable] = path
        extra = dict(extra_env or {})
        if post:
            extra.update({f"STATE_{name}": value for name, value in (state or {}).items()})
        env = self.step_environment(with_inputs, files, extra)
        entrypoint = load_manifest()["runs"]["post-entrypoint"] if post else None
        name = f"{self.image.replace(':', '').replace('/', '')}_{secrets.token_hex(3)}"
        command = self.engine.command(*self.docker_run_args(sorted(env), entrypoint, name))
        # ProcessInvoker: the runner's own environment plus the step's variables (the values of -e NAME).
        client_env = {**os.environ, **env, "DOCKER_HOST": self.engine.host}
        process = subprocess.Popen(
            command,
            env=client_env,
            cwd=self.workspace,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        return RunningContainerStep(self, process, files, name, time.monotonic())

    def run(self, with_inputs: Mapping[str, str], *, timeout: float = 180, **options: object) -> StepOutcome:
        return self.start(with_inputs, **options).finish(timeout)  # type: ignore[arg-type]

    def run_post(
        self, main: StepOutcome, with_inputs: Mapping[str, str], *, timeout: float = 120
    ) -> StepOutcome:
        return self.start(with_inputs, post=True, state=main.state).finish(timeout)


class RunningContainerStep:
    def __init__(
        self,
        job: RunnerJob,
        process: subprocess.Popen[str],
        files: dict[str, Path],
        container: str,
        started: float,
    ) -> None:
        self.job = job
        self.process = process
        self.files = files
        self.container = container
        self.started = started
        self.lines: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._readers = [
            threading.Thread(target=self._read, args=(stream, name), daemon=True)
            for stream, name in ((process.stdout, "stdout"), (process.stderr, "stderr"))
        ]
        for reader in self._readers:
            reader.start()
        self.signals: list[tuple[float, str]] = []

    def _read(self, stream: object, name: str) -> None:
        for line in stream:  # type: ignore[attr-defined]
            with self._lock:
                self.lines.append((name, line.rstrip("\n")))

    def text_so_far(self) -> str:
        with self._lock:
            return "\n".join(line for _, line in self.lines)

    def wait_for_output(self, needle: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text_so_far():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} never printed; output so far:\n{self.text_so_far()}")
            time.sleep(0.02)

    def cancel_like_the_runner(self) -> StepOutcome:
        """SIGINT; after 7.5 s SIGTERM; after 2.5 s more SIGKILL — to the docker client only."""
        first = time.monotonic()
        for signum, timeout in (
            (signal.SIGINT, RUNNER_SIGINT_TIMEOUT),
            (signal.SIGTERM, RUNNER_SIGTERM_TIMEOUT),
        ):
            self.signals.append((time.monotonic() - first, signum.name))
            self.process.send_signal(signum)
            try:
                self.process.wait(timeout)
                break
            except subprocess.TimeoutExpired:
                continue
        else:
            self.signals.append((time.monotonic() - first, "SIGKILL"))
            self.process.kill()
            self.process.wait(10)
        outcome = self._collect(killed=self.signals[-1][1] == "SIGKILL")
        outcome.client_exit_after_first_signal = time.monotonic() - first
        return outcome

    def kill_client(self) -> StepOutcome:
        """SIGKILL to the docker client (e.g. the runner process itself died); the container runs on."""
        self.process.kill()
        self.process.wait(10)
        return self._collect(killed=True)

    def finish(self, timeout: float = 180) -> StepOutcome:
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.job.engine.docker("rm", "--force", self.container, timeout=60)
            raise
        return self._collect(killed=False)

    def _collect(self, *, killed: bool) -> StepOutcome:
        # The file commands as the runner reads them: right now, whatever the container does next.
        def read(variable: str) -> str:
            return self.files[variable].read_text(encoding="utf-8")

        outputs, state, summary = read("GITHUB_OUTPUT"), read("GITHUB_STATE"), read("GITHUB_STEP_SUMMARY")
        elapsed = time.monotonic() - self.started
        for reader in self._readers:
            reader.join(2 if killed else 10)
        with self._lock:
            lines = list(self.lines)
        return StepOutcome(
            exit_code=None if killed else self.process.returncode,
            lines=lines,
            outputs=parse_file_commands(outputs),
            state=parse_file_commands(state),
            summary=summary,
            elapsed=elapsed,
            container=self.container,
            signals=list(self.signals),
        )

    def container_gone(self) -> bool:
        out = self.job.engine.must(
            "ps", "--all", "--quiet", "--filter", f"name=^{self.container}$", timeout=60
        )
        return not out.strip()
