"""The run's command: started under a guard (``guard.py``) that leads a new session and process
group, so that the group holds everything the command starts, and the command dies with the worker
even when the worker is SIGKILLed. The command is stopped by signalling that whole group."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

GUARD = Path(__file__).with_name("guard.py")
GUARD_START_TIMEOUT = 30.0  # seconds for the guard to say whether the command started
# When the worker dies, the guard stops the command with SIGTERM, then SIGKILL after the worker's
# --kill-grace, but never later than this: the command must be gone long before the lease (60 s by
# default) lets another worker start the run again.
ORPHAN_KILL_GRACE_MAX = 5.0


class CommandProcess:
    """A started command whose stdout and stderr are pipes read by the worker.

    ``pid`` is the command's own process; ``pgid`` is its process group, led by the guard, which
    reports the command's exit on a status pipe and stops the group when the worker goes away.
    """

    def __init__(self, popen: subprocess.Popen[bytes], status_fd: int, pid: int) -> None:
        self._popen = popen
        self._status_fd: int | None = status_fd
        self._status_buffer = b""
        self._returncode: int | None = None
        self.pid = pid
        self.pgid = popen.pid  # start_new_session: the guard leads a new session and group

    @classmethod
    def start(
        cls,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: Path | None = None,
        *,
        kill_grace: float = ORPHAN_KILL_GRACE_MAX,
    ) -> CommandProcess:
        """Start ``argv`` under its guard; raises OSError when it cannot be executed."""
        grace = min(kill_grace, ORPHAN_KILL_GRACE_MAX)
        status_read, status_write = os.pipe()
        try:
            popen = subprocess.Popen(
                [sys.executable, "-I", "-S", str(GUARD), str(status_write), f"{grace:g}", "--", *argv],
                stdin=subprocess.PIPE,  # the lifeline: closed by the kernel when the worker dies
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=dict(env),
                cwd=cwd,
                start_new_session=True,
                close_fds=True,
                pass_fds=(status_write,),
            )
        except OSError:
            os.close(status_read)
            raise
        finally:
            os.close(status_write)
        process = cls(popen, status_read, pid=0)
        process.pid = process._started_pid(argv[0])
        return process

    def _started_pid(self, program: str) -> int:
        line = self._read_line(GUARD_START_TIMEOUT)
        word, _, rest = (line or "").partition(" ")
        if word == "started":
            return int(rest)
        if line == "":  # no word from the guard in time: stop whatever it may have started
            self.signal_group(signal.SIGKILL)
        code = self._popen.wait(GUARD_START_TIMEOUT)
        self.close_pipes()
        if word == "error":
            number, _, message = rest.partition(" ")
            raise OSError(int(number), message, program)
        raise OSError(f"the command's guard ({GUARD}) exited with code {code} before starting it")

    def _read_line(self, timeout: float) -> str | None:
        """The next line of the status pipe (None at its end), waiting at most ``timeout``."""
        while b"\n" not in self._status_buffer:
            if self._status_fd is None:
                return None
            ready, _, _ = select.select([self._status_fd], [], [], timeout)
            if not ready:
                return ""
            chunk = os.read(self._status_fd, 4096)
            if not chunk:
                os.close(self._status_fd)
                self._status_fd = None
                return None
            self._status_buffer += chunk
        line, _, self._status_buffer = self._status_buffer.partition(b"\n")
        return line.decode("utf-8", "replace")

    @property
    def stdout(self) -> IO[bytes]:
        assert self._popen.stdout is not None
        return self._popen.stdout

    @property
    def stderr(self) -> IO[bytes]:
        assert self._popen.stderr is not None
        return self._popen.stderr

    def poll(self) -> int | None:
        """The command's return code once it has exited (negative: killed by that signal)."""
        return self.wait(0.0)

    def wait(self, timeout: float) -> int | None:
        if self._returncode is not None:
            return self._returncode
        line = self._read_line(timeout)
        if line is None:  # the guard died before reporting: killed with its group, by the same signal
            self._returncode = self._popen.wait()
        elif line.startswith("exit "):
            self._returncode = int(line.removeprefix("exit "))
        return self._returncode

    def signal_group(self, sig: signal.Signals) -> bool:
        """Send ``sig`` to every process of the group; False when none is left."""
        try:
            os.killpg(self.pgid, sig)
        except ProcessLookupError:
            return False
        except PermissionError:  # only zombies or foreign processes left in the group
            return False
        return True

    def close_pipes(self) -> None:
        """Close the output pipes, the status pipe and the lifeline (the guard then stops whatever is
        left of the group), and reap the guard when it has gone."""
        for pipe in (self._popen.stdout, self._popen.stderr, self._popen.stdin):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        if self._status_fd is not None:
            os.close(self._status_fd)
            self._status_fd = None
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._popen.wait(timeout=1.0)


def describe_exit(returncode: int) -> tuple[int, str]:
    """The exit code to record (128 + N for a death by signal N, as shells do) and a description."""
    if returncode >= 0:
        return returncode, f"exited with code {returncode}"
    number = -returncode
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = f"signal {number}"
    return 128 + number, f"was killed by {name}"
