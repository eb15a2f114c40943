"""Waking workers up: ``LISTEN`` on a dedicated connection when there is a direct one.

The trigger on ``ops.runs`` sends ``NOTIFY ops_run_queued, '<run_id>'`` when a run is queued or
requeued and ``NOTIFY ops_run_cancelled, '<run_id>'`` when one is cancelled. One listener thread
per worker process holds its own connection (never a store's: stores are not thread-safe and a
listening connection must stay idle), wakes the idle slots on ``ops_run_queued`` and flags the run
on ``ops_run_cancelled``. After it reconnects it wakes every slot, since notifications sent while
it was away are lost. Without a direct connection (REST) there is no listener: slots poll.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

from odooops_action.worker.log import WorkerLog

QUEUED_CHANNEL = "ops_run_queued"
CANCELLED_CHANNEL = "ops_run_cancelled"
LIVENESS_CHECK_SECONDS = 30.0
NOTIFY_WAIT = 0.25  # how long stop() may wait for the thread
RECONNECT_DELAYS = (0.2, 0.5, 1.0, 2.0, 5.0)


class Wakeup:
    """A generation counter: ``wait(seen, timeout)`` returns once it moved past ``seen``."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._generation = 0

    @property
    def generation(self) -> int:
        with self._condition:
            return self._generation

    def notify(self) -> None:
        with self._condition:
            self._generation += 1
            self._condition.notify_all()

    def wait(self, seen: int, timeout: float) -> bool:
        """True when woken, False on timeout."""
        with self._condition:
            return self._condition.wait_for(lambda: self._generation != seen, timeout=timeout)


class CancelWatch:
    """The runs being executed in this process, flagged when their cancellation is notified."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flags: dict[str, threading.Event] = {}

    def watch(self, run_id: str) -> threading.Event:
        with self._lock:
            return self._flags.setdefault(run_id, threading.Event())

    def unwatch(self, run_id: str) -> None:
        with self._lock:
            self._flags.pop(run_id, None)

    def cancelled(self, run_id: str) -> None:
        with self._lock:
            flag = self._flags.get(run_id)
        if flag is not None:
            flag.set()


class PgListener:
    """LISTENs on both channels on a daemon thread, reconnecting with backoff."""

    def __init__(self, dsn: str, wakeup: Wakeup, watch: CancelWatch, log: WorkerLog) -> None:
        self._dsn = dsn
        self._wakeup = wakeup
        self._watch = watch
        self._log = log
        self._stop = threading.Event()
        self.connected = threading.Event()
        self._thread = threading.Thread(target=self._run, name="odooops-listener", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=3)

    def _run(self) -> None:
        import psycopg

        failures = 0
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._dsn, autocommit=True, connect_timeout=5, **_KEEPALIVES) as conn:
                    conn.execute(f"LISTEN {QUEUED_CHANNEL}")
                    conn.execute(f"LISTEN {CANCELLED_CHANNEL}")
                    self._log(
                        "listening", level="info" if failures == 0 else "warn", reconnected=failures > 0
                    )
                    failures = 0
                    self.connected.set()
                    self._wakeup.notify()  # anything queued while we were not listening
                    self._listen(conn)
            except psycopg.Error as exc:
                self.connected.clear()
                if self._stop.is_set():
                    return
                delay = RECONNECT_DELAYS[min(failures, len(RECONNECT_DELAYS) - 1)]
                failures += 1
                self._log("listen_lost", level="warn", error=_first_line(exc), retry_in=delay)
                self._stop.wait(delay)

    def _listen(self, conn: Any) -> None:
        next_check = time.monotonic() + LIVENESS_CHECK_SECONDS
        while not self._stop.is_set():
            for note in conn.notifies(timeout=NOTIFY_WAIT):
                if note.channel == QUEUED_CHANNEL:
                    self._wakeup.notify()
                elif note.channel == CANCELLED_CHANNEL:
                    self._watch.cancelled(note.payload)
            if time.monotonic() >= next_check:  # a half-open TCP connection never errors by itself
                conn.execute("SELECT 1")
                next_check = time.monotonic() + LIVENESS_CHECK_SECONDS
        with contextlib.suppress(Exception):
            conn.close()


_KEEPALIVES: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "application_name": "odooops-worker-listen",
}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
