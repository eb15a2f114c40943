"""Wait for a run to finish, streaming its events: the loop shared by the CLI and the Action.

Each poll is one ``ops.poll_run_delta`` call. It sends what the waiter already has — the event
cursor (the last ``seq`` seen) and the run's ``revision`` — and gets the events after the cursor
(at most 1,000) plus the run row and its artifacts only when the revision moved, so an idle poll
answers a few dozen bytes. Every event is delivered exactly once and in order however the events
and the polls interleave. A database without that function (migrations not yet applied) is read
with ``ops.poll_run`` instead.

Pace (:class:`PollSchedule`): at most one poll per ``interval`` (the user's poll interval, 5 s by
default) measured from the start of one poll to the start of the next, whatever the log rate; a
backlog (``has_more``) is drained at once, and the end of the run is noticed within one interval
plus one round trip. With a :class:`ChangeFeed` (a direct PostgreSQL connection that LISTENs for
the run's notifications, :mod:`odooops_action.push`) the loop polls when the database says the run
changed, and otherwise only once per ``safety_interval`` (a minute) and after a reconnect. No
sleep goes past the deadline, and the last poll happens at the deadline.

Errors: a missing run ends the wait with outcome ``not_found``. A :class:`TransientError` (the
store has already retried with backoff) does not end it: polling continues until the deadline and
the last such error is kept in :attr:`WaitResult.last_error`, so that a timeout can say why. Any
other error (bad key, schema not exposed, migration missing) is raised: waiting cannot fix it.

Interruption: ``stop.wait`` is the sleep, so setting ``stop`` ends the wait at once with outcome
``interrupted``. Setting a :class:`threading.Event` from a signal handler that runs in the thread
blocked in ``stop.wait`` can deadlock (the handler may run while that thread holds the event's
lock); :func:`run_interruptibly` runs the wait in a helper thread to avoid this.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol, TextIO, TypeVar, runtime_checkable

from odooops_action.errors import (
    ApiError,
    MigrationMissingError,
    OdooOpsError,
    RunNotFoundError,
    TransientError,
)

if TYPE_CHECKING:  # pydantic models: imported when a response is parsed, not at start-up
    from odooops_action.models import Artifact, Run, RunDelta, RunEvent
    from odooops_action.store.base import RunStore


WaitOutcome = Literal["success", "failed", "cancelled", "timeout", "not_found", "interrupted"]

_T = TypeVar("_T")

# With a change feed, the run is re-read at least this often even when no notification came.
SAFETY_POLL_SECONDS = 60.0


@dataclass
class WaitResult:
    outcome: WaitOutcome
    run: Run | None  # the run as last seen (None when it was never found)
    artifacts: list[Artifact]
    events_seen: int
    polls: int
    waited_seconds: float
    last_error: OdooOpsError | None = None  # the last transient polling error, if any


class WaitObserver(Protocol):
    def on_status(self, run: Run, previous: str | None) -> None:
        """The status changed (and once at the start, with ``previous`` None), reported after the
        events that came with it (a worker's "claimed" event before ``running``).

        A terminal status is reported after all of the run's events have been delivered.
        """

    def on_events(self, run: Run, events: Sequence[RunEvent]) -> None:
        """New events, in ``seq`` order; each event is delivered exactly once."""


@runtime_checkable
class PollErrorObserver(Protocol):
    """Optional extra of an observer: told about each transient polling error."""

    def on_poll_error(self, error: OdooOpsError) -> None: ...


class ChangeFeed(Protocol):
    """Tells the loop when the run may have changed (e.g. PostgreSQL ``LISTEN``)."""

    @property
    def live(self) -> bool:
        """False when notifications are known not to arrive: the loop then polls every interval."""

    def start(self) -> None:
        """Begin listening; called before the first poll, so that no change falls in between."""

    def wait(self, timeout: float, stop: threading.Event) -> bool:
        """Block until the run may have changed (True: a notification, or a reconnect after which
        notifications may have been missed), ``timeout`` seconds pass or ``stop`` is set (False)."""

    def close(self) -> None:
        """Stop listening and release the connection."""


@dataclass(frozen=True)
class PollSchedule:
    """``interval``: the shortest time from the start of one poll to the start of the next
    (a backlog is drained without waiting). ``safety_interval``: with a change feed, the longest
    time without a poll."""

    interval: float = 5.0
    safety_interval: float = SAFETY_POLL_SECONDS

    def __post_init__(self) -> None:
        if self.interval <= 0:
            raise ValueError(f"interval must be positive, got {self.interval}")
        if self.safety_interval <= 0:
            raise ValueError(f"safety_interval must be positive, got {self.safety_interval}")

    @classmethod
    def for_interval(cls, poll_interval: float) -> PollSchedule:
        """At most one poll per ``poll_interval`` (the user's setting)."""
        return cls(interval=poll_interval)


_TERMINAL_OUTCOMES: dict[str, WaitOutcome] = {
    "success": "success",
    "failed": "failed",
    "cancelled": "cancelled",
}


@dataclass
class _Progress:
    """What the loop has seen so far."""

    cursor: int
    run: Run | None = None
    revision: int | None = None  # of ``run``; None until the run was seen
    artifacts: list[Artifact] = field(default_factory=list)
    status: str | None = None
    events_seen: int = 0
    polls: int = 0
    last_error: OdooOpsError | None = None
    legacy: bool = False  # the database has no ops.poll_run_delta: use ops.poll_run


def wait_for_run(
    store: RunStore,
    run_id: str,
    *,
    timeout: float,
    schedule: PollSchedule,
    observer: WaitObserver,
    stop: threading.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
    after_seq: int = 0,
    detail: bool = True,
    changes: ChangeFeed | None = None,
) -> WaitResult:
    """Follow ``run_id`` until it is terminal, ``timeout`` seconds pass, or ``stop`` is set.

    ``detail``: events carry ``created_at`` and ``payload`` (the Action's summary reads them);
    without it only ``seq``, ``level`` and ``message`` travel. ``changes``: poll when it says so
    instead of once per interval; it is started here and closed on return.
    """
    stop_event = stop if stop is not None else threading.Event()
    started = clock()
    deadline = started + timeout
    seen = _Progress(cursor=after_seq)

    def result(outcome: WaitOutcome) -> WaitResult:
        return WaitResult(
            outcome=outcome,
            run=seen.run,
            artifacts=seen.artifacts,
            events_seen=seen.events_seen,
            polls=seen.polls,
            waited_seconds=clock() - started,
            last_error=seen.last_error,
        )

    if changes is not None:
        changes.start()
    try:
        while True:
            if stop_event.is_set():
                return result("interrupted")
            polled_at = clock()
            try:
                news = _poll_once(store, run_id, seen, observer, detail)
            except RunNotFoundError:
                return result("not_found")
            except TransientError as error:
                seen.last_error = error
                if isinstance(observer, PollErrorObserver):
                    observer.on_poll_error(error)
                news = _News()
            if news.answered and seen.run is not None and seen.run.is_terminal:
                if news.has_more:
                    continue  # drain the rest of the log before reporting the end
                return result(_finish(seen, observer))
            remaining = deadline - clock()
            if remaining <= 0:
                # A run seen finished whose log could not be drained still reports how it ended.
                ended = seen.run is not None and seen.run.is_terminal
                return result(_finish(seen, observer) if ended else "timeout")
            if news.has_more:
                continue
            # With a feed, a failed poll is retried after one interval, not a safety interval.
            pushed = changes is not None and changes.live and news.answered
            due = polled_at + (schedule.safety_interval if pushed else schedule.interval)
            if _pause(changes, stop_event, min(due, deadline) - clock()):
                return result("interrupted")
    finally:
        if changes is not None:
            changes.close()


def _pause(changes: ChangeFeed | None, stop: threading.Event, seconds: float) -> bool:
    """Wait until the next poll is due (or, with a feed, the run changed); True when stopped."""
    if changes is None:
        return stop.wait(max(seconds, 0.0))
    changes.wait(max(seconds, 0.0), stop)
    return stop.is_set()


def _finish(seen: _Progress, observer: WaitObserver) -> WaitOutcome:
    _report_status(seen, observer)
    assert seen.run is not None
    return _TERMINAL_OUTCOMES[seen.run.status]


@dataclass(frozen=True)
class _News:
    """What one poll brought (all false when it got no answer)."""

    answered: bool = False
    has_more: bool = False


def _fetch(store: RunStore, run_id: str, seen: _Progress, detail: bool) -> RunDelta:
    """One request: ``ops.poll_run_delta``, or ``ops.poll_run`` on a database without it."""
    if not seen.legacy:
        try:
            return store.poll_run_delta(
                run_id, after_seq=seen.cursor, known_revision=seen.revision, detail=detail
            )
        except MigrationMissingError:
            if seen.polls:
                raise  # it worked before: something else is missing
            seen.legacy = True
    from odooops_action.models import RunDelta

    poll = store.poll_run(run_id, after_seq=seen.cursor)
    return RunDelta(
        revision=poll.run.revision,
        run=poll.run,
        artifacts=poll.artifacts,
        events=poll.events,
        has_more=poll.has_more,
    )


def _poll_once(store: RunStore, run_id: str, seen: _Progress, observer: WaitObserver, detail: bool) -> _News:
    """One request; delivers what is new to the observer."""
    delta = _fetch(store, run_id, seen, detail)
    seen.polls += 1
    if delta.run is not None:
        seen.run = delta.run
        seen.revision = delta.revision
        seen.artifacts = list(delta.artifacts or [])
    if seen.run is None:
        raise ApiError(f"ops.poll_run_delta answered without run {run_id} although none was known yet.")
    run = seen.run
    changed = run.status != seen.status
    fresh = [event for event in delta.events if event.seq > seen.cursor]
    if fresh:
        observer.on_events(run, fresh)
        seen.cursor = fresh[-1].seq
        seen.events_seen += len(fresh)
    # After the events that led to it: "claimed" and "started" come before "Status: running".
    if changed and not run.is_terminal and not (seen.status is not None and delta.has_more):
        _report_status(seen, observer)
    return _News(answered=True, has_more=delta.has_more)


def _report_status(seen: _Progress, observer: WaitObserver) -> None:
    assert seen.run is not None
    if seen.run.status != seen.status:
        observer.on_status(seen.run, seen.status)
        seen.status = seen.run.status


class PrintObserver:
    """Progress for humans on stderr: a line per status change and ``[level] message`` per event."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stderr

    def on_status(self, run: Run, previous: str | None) -> None:
        suffix = "" if run.is_terminal else " - waiting..."
        self._write(f"Status: {run.status}{suffix}")

    def on_events(self, run: Run, events: Sequence[RunEvent]) -> None:
        self._write("\n".join(f"[{event.level}] {event.message}" for event in events))

    def on_poll_error(self, error: OdooOpsError) -> None:
        # The message without its hint: a hint such as "Retry later" is advice for a one-shot
        # command, and this loop does retry by itself.
        self._write(f"warning: a poll failed, polling again until the timeout: {error.message}")

    def _write(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()


def run_interruptibly(
    work: Callable[[threading.Event], _T],
    signals: Sequence[signal.Signals] = (signal.SIGINT, signal.SIGTERM),
    *,
    then: Literal["restore", "ignore"] = "restore",
) -> tuple[_T, signal.Signals | None]:
    """Run ``work(stop)`` in a helper thread; the first of the given signals sets ``stop``.

    Returns the work's result and the signal received (None if none). The main thread only
    joins, so the handler never runs while the helper holds the event's lock. After the first
    signal, ``then="restore"`` puts the previous handlers back (Ctrl-C twice quits at once, for the
    CLI); ``then="ignore"`` ignores further ones (``SIG_IGN``, which unlike a Python handler
    survives interpreter shutdown: the Action must not be killed by the runner's follow-up
    SIGTERM while it cancels, reports and exits). Outside the main thread (where handlers cannot
    be installed) ``work`` simply runs.
    """
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        return work(stop), None
    received: list[signal.Signals] = []
    outcome: list[_T] = []
    failure: list[BaseException] = []

    def handle(signum: int, _frame: object) -> None:
        received.append(signal.Signals(signum))
        if then == "restore":
            restore()
        else:
            for sig in previous:
                signal.signal(sig, signal.SIG_IGN)
        stop.set()

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)

    def target() -> None:
        try:
            outcome.append(work(stop))
        except BaseException as exc:  # re-raised in the calling thread
            failure.append(exc)

    previous = {sig: signal.signal(sig, handle) for sig in signals}
    try:
        worker = threading.Thread(target=target, name="odooops-wait", daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(0.5)
    finally:
        if not (received and then == "ignore"):
            restore()
    if failure:
        raise failure[0]
    return outcome[0], (received[0] if received else None)
