"""``make demo`` (``scripts/demo.py``): the whole loop on its own stack, and nothing left running."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.worker.helpers import REPO_ROOT, wait_until

pytestmark = pytest.mark.slow  # each test starts a whole stack of its own

DEMO = REPO_ROOT / "scripts" / "demo.py"
MARKER = "ODOOOPS_DEMO_TEST_MARKER"


class Demo:
    """``scripts/demo.py`` in its own session; its environment carries a marker that every process
    it starts inherits (the worker, the command, PostgreSQL), so leftovers can be found."""

    def __init__(self, tmp_path: Path) -> None:
        self.marker = uuid.uuid4().hex
        self.output_path = tmp_path / "demo.out"
        # Ctrl-C reaches a program with SIGINT at its default (a background shell job ignores it).
        restore_sigint = "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
        launch = restore_sigint + f"os.execv(sys.executable, [sys.executable, {str(DEMO)!r}])"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SUPABASE_", "DATABASE_URL"))}
        with self.output_path.open("wb") as output:
            self.popen = subprocess.Popen(
                [sys.executable, "-c", launch],
                cwd=REPO_ROOT,
                env={**env, MARKER: self.marker},
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.output_path.read_text(errors="replace")

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            raise AssertionError(f"the demo did not exit within {timeout}s:\n{self.output()}") from None

    def leftovers(self) -> list[str]:
        """Processes still alive that the demo started (marked, or in its session)."""
        return [f"{pid}: {cmdline}" for pid, cmdline in self._leftover_processes()]

    def _leftover_processes(self) -> list[tuple[int, str]]:
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == self.popen.pid:
                continue
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                environ = (entry / "environ").read_bytes()
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
            state, session = stat[0], int(stat[3])
            marked = f"{MARKER}={self.marker}".encode() in environ
            if state not in ("Z", "X") and (marked or session == self.popen.pid):
                found.append((int(entry.name), cmdline))
        return found

    def kill_everything(self) -> None:
        """After a failed test: end the demo and whatever it left (SIGTERM, then SIGKILL)."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in [self.popen.pid, *(pid for pid, _ in self._leftover_processes())]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            with contextlib.suppress(AssertionError):
                wait_until(lambda: not self._leftover_processes(), 5, "the leftovers to exit")
        self.popen.wait()

    def assert_nothing_left(self) -> None:
        # PostgreSQL's children may take a moment to follow the postmaster.
        try:
            wait_until(lambda: not self.leftovers(), 10, "the demo's processes to exit", interval=0.2)
        except AssertionError:
            raise AssertionError("left running:\n" + "\n".join(self.leftovers())) from None


@pytest.fixture
def start_demo(tmp_path: Path) -> Iterator[Callable[[], Demo]]:
    started: list[Demo] = []

    def start() -> Demo:
        started.append(Demo(tmp_path))
        return started[-1]

    yield start
    for demo in started:
        demo.kill_everything()


def test_demo_shows_the_whole_loop_and_leaves_nothing_running(start_demo: Callable[[], Demo]) -> None:
    demo = start_demo()
    assert demo.wait(120) == 0, demo.output()
    out = demo.output()
    # A real worker process ran the sample build.
    assert "worker=demo-worker action=claimed" in out
    assert "action=artifact_added type=image path=ghcr.io/example/odoo:5e1f0c9" in out
    # The step's log as the Actions page shows it: groups, annotations, no raw workflow commands.
    job_lines = [line for line in out.splitlines() if line.startswith("  job | ")]
    assert "  job | ▸ Running" in job_lines
    assert any(line.startswith("  job | Warning (OdooOps run-") for line in job_lines)
    assert "  job | [info] Build complete: ghcr.io/example/odoo:5e1f0c9" in job_lines
    assert not [line for line in job_lines if line.startswith("  job | ::")]
    # The outputs and the job summary of the create+wait step, then the cancelled deploy.
    assert "  status = success" in out
    assert "  artifact_url = ghcr.io/example/odoo:5e1f0c9" in out
    assert "## OdooOps run" in out
    assert "| Worker | ` demo-worker ` |" in out
    assert "  status = cancelled" in out
    assert "worker=demo-worker action=worker_stopped exit_code=0" in out
    # It ends operating the queue: list and workers shown, the selftest passing on the demo's stack.
    operating = out.split("Operating the queue")[1]
    assert "  $ odooops list" in operating
    assert "  RUN " in operating
    assert "  demo-worker " in operating
    assert "  PASSED: " in operating
    assert "  FAILED: 0" in operating
    assert "  All tests passed!" in operating
    demo.assert_nothing_left()


@pytest.mark.parametrize(
    ("sig", "whole_group"),
    [(signal.SIGINT, True), (signal.SIGTERM, False)],
    ids=["ctrl-c", "sigterm"],
)
def test_demo_interrupted_midway_leaves_nothing_running(
    start_demo: Callable[[], Demo], sig: signal.Signals, whole_group: bool
) -> None:
    demo = start_demo()
    wait_until(lambda: "Resolving addons" in demo.output(), 60, "the demo's build to run", interval=0.1)
    assert demo.leftovers(), "the demo's worker and stack should be running"
    if whole_group:  # what a terminal does on Ctrl-C
        os.killpg(demo.popen.pid, sig)
    else:
        demo.popen.send_signal(sig)
    assert demo.wait(60) == 130, demo.output()
    out = demo.output()
    assert "Demo interrupted" in out
    assert "worker=demo-worker action=worker_stopped" in out
    assert "Traceback" not in out
    demo.assert_nothing_left()
