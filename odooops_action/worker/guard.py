"""The guard of a run's command: the command dies with its worker, even when the worker is SIGKILLed.

    python -I -S guard.py STATUS_FD GRACE -- PROGRAM [ARGS...]

The worker starts this small process (standard library only, so it starts in a few milliseconds)
in a new session; it leads the process group, starts the command in it and stays there until the
group is killed. It watches two things:

- its stdin, the *lifeline*: a pipe whose only writer is the worker. The worker never writes to
  it; when the worker process ends, however it ends, the kernel closes the pipe and the guard reads
  end of file. The guard then sends SIGTERM to its whole process group, and SIGKILL once the
  command has exited or after GRACE seconds, whichever comes first (the guard goes with it).
- the command: when it exits, the guard writes ``exit <returncode>`` to STATUS_FD and goes on
  guarding whatever the command left running in the group until the worker kills the group.

On STATUS_FD the guard writes ``started <pid>`` once the command runs, or ``error <errno>
<message>`` when it cannot be started (then the guard exits 127). The guard lets its own stdout
and stderr go, so that only the command holds the worker's output pipes. SIGTERM, SIGINT and
SIGHUP sent to the group reach the command; the guard itself ignores them (through a handler, which
``exec`` resets, so the command still gets the default behaviour). Only light standard modules are
imported (no ``subprocess``, no ``contextlib``): every run pays for the guard's start-up.
"""

import os
import select
import signal
import sys
import time
from types import FrameType

LIFELINE_FD = 0
POLL_FALLBACK = 0.2  # seconds between checks where pidfd_open is not available


class Child:
    """The command, spawned without the ``subprocess`` module (a third of the guard's start-up)."""

    def __init__(self, command: list[str], status_fd: int) -> None:
        self.pid = os.posix_spawnp(
            command[0],
            command,
            os.environ,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),  # stdin: not the lifeline
                (os.POSIX_SPAWN_CLOSE, status_fd),
            ],
            # Python ignores these two at start; the command gets them at their defaults, as
            # subprocess's restore_signals would give them (so `yes | head` ends quietly).
            setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
        )
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid == self.pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode


def main(argv: list[str]) -> int:
    status_fd, grace, command = int(argv[0]), float(argv[1]), argv[3:]
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _ignore)
    try:
        child = Child(command, status_fd)
    except OSError as exc:
        _report(status_fd, f"error {exc.errno or 0} {exc.strerror or exc}")
        return 127
    _release_output()
    _report(status_fd, f"started {child.pid}")
    pidfd = _pidfd(child.pid)
    if _wait_for_exit_or_orphaning(child, pidfd):
        _report(status_fd, f"exit {child.returncode}")
        _wait_for_orphaning()
    _stop_group(child, pidfd, grace)
    return 0  # not reached: SIGKILL to the group ends the guard too


def _ignore(_signum: int, _frame: FrameType | None) -> None:
    return None


def _report(status_fd: int, line: str) -> None:
    try:  # noqa: SIM105 (contextlib would cost the guard's start-up more than it saves)
        os.write(status_fd, (line + "\n").encode("utf-8", "replace"))
    except OSError:  # the worker is gone: the lifeline tells the rest
        pass


def _release_output() -> None:
    """Point the guard's own stdout and stderr at /dev/null: the worker sees the end of the command's
    output when the command's processes close it, not when the guard does."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(devnull)


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):  # not Linux >= 5.3: poll the child instead
        return None


def _wait_for_exit_or_orphaning(child: Child, pidfd: int | None) -> bool:
    """True when the command exited, False when the lifeline closed first."""
    watched = [LIFELINE_FD] if pidfd is None else [LIFELINE_FD, pidfd]
    while True:
        ready, _, _ = select.select(watched, [], [], POLL_FALLBACK if pidfd is None else None)
        if child.poll() is not None:
            return True
        if LIFELINE_FD in ready and _lifeline_closed():
            return False


def _wait_for_orphaning() -> None:
    while not _lifeline_closed():
        select.select([LIFELINE_FD], [], [])


def _lifeline_closed() -> bool:
    try:
        return os.read(LIFELINE_FD, 512) == b""
    except OSError:
        return True


def _stop_group(child: Child, pidfd: int | None, grace: float) -> None:
    try:  # noqa: SIM105
        os.killpg(0, signal.SIGTERM)
    except OSError:
        pass
    deadline = time.monotonic() + grace
    while child.poll() is None and (left := deadline - time.monotonic()) > 0:
        if pidfd is None:
            time.sleep(min(left, POLL_FALLBACK))
        else:
            select.select([pidfd], [], [], left)
    os.killpg(0, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
