"""The run's command: started in its own session (so its process group holds everything it starts),
stopped by signalling that whole group."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO


class CommandProcess:
    """A started command whose stdout and stderr are pipes read by the worker."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen
        self.pid = popen.pid
        self.pgid = popen.pid  # start_new_session: the command leads a new session and group

    @classmethod
    def start(cls, argv: Sequence[str], env: Mapping[str, str], cwd: Path | None = None) -> CommandProcess:
        """Start ``argv``; raises OSError when it cannot be executed."""
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
        )
        return cls(popen)

    @property
    def stdout(self) -> IO[bytes]:
        assert self._popen.stdout is not None
        return self._popen.stdout

    @property
    def stderr(self) -> IO[bytes]:
        assert self._popen.stderr is not None
        return self._popen.stderr

    def poll(self) -> int | None:
        return self._popen.poll()

    def wait(self, timeout: float) -> int | None:
        try:
            return self._popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

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
        for pipe in (self._popen.stdout, self._popen.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


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
