"""The worker's settings (one field per command-line option) and its worker ids."""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass, field

from odooops_action.errors import InputError
from odooops_action.models import ClaimFilter
from odooops_action.validation import parse_non_negative_seconds, parse_positive_seconds

DEFAULT_COMMAND = "./scripts/odooops/execute_run.sh"
MAX_WORKER_ID_LENGTH = 200  # ops.runs.claimed_by


@dataclass(frozen=True)
class WorkerOptions:
    command: tuple[str, ...] = (DEFAULT_COMMAND,)
    filters: ClaimFilter = field(default_factory=ClaimFilter)
    concurrency: int = 1
    once: bool = False
    poll_interval: float = 5.0
    heartbeat_interval: float = 10.0
    cancel_check_interval: float = 2.0
    lease_seconds: int = 60
    max_attempts: int = 3
    kill_grace: float = 10.0
    shutdown_grace: float = 30.0
    worker_name: str | None = None
    keep_credentials: bool = False

    def __post_init__(self) -> None:
        if not self.command:
            raise InputError("--command must name a program to run.")
        if self.concurrency < 1:
            raise InputError(f"--concurrency must be at least 1 (got {self.concurrency}).")
        # The same checks as every duration of the Action and the CLI: finite, and positive (or,
        # for a grace period, zero or more); NaN and infinity are refused.
        for name in ("poll_interval", "heartbeat_interval", "cancel_check_interval"):
            parse_positive_seconds(getattr(self, name), _flag(name))
        for name in ("kill_grace", "shutdown_grace"):
            parse_non_negative_seconds(getattr(self, name), _flag(name))
        if self.lease_seconds < 1 or self.max_attempts < 1:
            raise InputError("--lease must be at least 1 second and --max-attempts at least 1.")
        if self.heartbeat_interval >= self.lease_seconds:
            raise InputError(
                f"--heartbeat-interval ({self.heartbeat_interval:g}s) must be shorter than --lease "
                f"({self.lease_seconds}s), or every run would be recovered while it is still running."
            )

    @property
    def recovery_interval(self) -> float:
        """How often a worker calls ``recover_stalled_runs``: twice per lease, at most every 30 s."""
        return max(1.0, min(self.lease_seconds / 2, 30.0))


def _flag(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def _sanitize(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "host"


def worker_ids(concurrency: int, name: str | None = None, *, pid: int | None = None) -> list[str]:
    """``worker-<host>-<pid>`` for one slot, ``worker-<host>-<pid>-<slot>`` for several.

    ``name`` replaces the ``worker-<host>-<pid>`` part (it must stay unique per process).
    """
    base = name or f"worker-{_sanitize(socket.gethostname())[:60]}-{pid or os.getpid()}"
    base = base[: MAX_WORKER_ID_LENGTH - 6]
    if concurrency == 1:
        return [base]
    return [f"{base}-{slot}" for slot in range(1, concurrency + 1)]
