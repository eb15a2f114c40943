"""Wait for a run to finish, streaming its events: the loop shared by the CLI and the Action.

One ``poll_run`` request per poll returns the run, its events after the cursor (the last ``seq``
seen) and its artifacts, so every event is delivered exactly once and in order however the
events and the polls interleave. Polling is adaptive: after a poll that brought news (events or a
status change) the next one comes ``min_interval`` later, and each idle poll stretches the wait by
``backoff`` up to ``max_interval`` (the user's poll interval). A backlog (``has_more``) is drained
without sleeping. No sleep goes past the deadline, and the last poll happens at the deadline.

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

from odooops_action.errors import OdooOpsError, RunNotFoundError, TransientError

if TYPE_CHECKING:  # pydantic models: imported when a response is parsed, not at start-up
    from odooops_action.models import Artifact, Run, RunEvent
    from odooops_action.store.base import RunStore


WaitOutcome = Literal["success", "failed", "cancelled", "timeout", "not_found", "interrupted"]

_T = TypeVar("_T")


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
        """The status changed (and once at the start, with ``previous`` None).

        A terminal status is reported after all of the run's events have been delivered.
        """

    def on_events(self, run: Run, events: Sequence[RunEvent]) -> None:
        """New events, in ``seq`` order; each event is delivered exactly once."""


@runtime_checkable
class PollErrorObserver(Protocol):
    """Optional extra of an observer: told about each transient polling error."""

    def on_poll_error(self, error: OdooOpsError) -> None: ...


@dataclass
class PollSchedule:
    min_interval: float = 0.2
    max_interval: float = 5.0
    backoff: float = 1.5

    def __post_init__(self) -> None:
        if not 0 < self.min_interval <= self.max_interval:
            raise ValueError(
                f"need 0 < min_interval <= max_interval, got {self.min_interval} and {self.max_interval}"
            )
        if self.backoff < 1:
            raise ValueError(f"backoff must be at least 1, got {self.backoff}")

    @classmethod
    def for_interval(cls, poll_interval: float) -> PollSchedule:
        """Adaptive polling whose idle interval grows up to the user's ``poll_interval``."""
        return cls(min_interval=min(cls.min_interval, poll_interval), max_interval=poll_interval)

    def next_interval(self, current: float, *, new_events: int, status_changed: bool) -> float:
        """The pause before the next poll. A status change or a flow of events (two or more in one
        poll) brings the pace back to ``min_interval`` at once; a trickle (one event) shortens the
        pause by ``backoff``, so a run logging a line a second is not polled five times a second;
        a poll with nothing new lengthens it by ``backoff``, up to ``max_interval``."""
        if status_changed or new_events >= 2:
            return self.min_interval
        if new_events == 1:
            return max(current / self.backoff, self.min_interval)
        return min(current * self.backoff, self.max_interval)


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
    artifacts: list[Artifact] = field(default_factory=list)
    status: str | None = None
    events_seen: int = 0
    polls: int = 0
    last_error: OdooOpsError | None = None


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
) -> WaitResult:
    """Poll ``run_id`` until it is terminal, ``timeout`` seconds pass, or ``stop`` is set."""
    stop_event = stop if stop is not None else threading.Event()
    started = clock()
    deadline = started + timeout
    seen = _Progress(cursor=after_seq)
    interval = schedule.min_interval

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

    while True:
        if stop_event.is_set():
            return result("interrupted")
        try:
            news = _poll_once(store, run_id, seen, observer)
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
        interval = schedule.next_interval(
            interval, new_events=news.new_events, status_changed=news.status_changed
        )
        if stop_event.wait(min(interval, remaining)):
            return result("interrupted")


def _finish(seen: _Progress, observer: WaitObserver) -> WaitOutcome:
    _report_status(seen, observer)
    assert seen.run is not None
    return _TERMINAL_OUTCOMES[seen.run.status]


@dataclass(frozen=True)
class _News:
    """What one poll brought (all false/zero when it got no answer)."""

    answered: bool = False
    new_events: int = 0
    status_changed: bool = False
    has_more: bool = False


def _poll_once(store: RunStore, run_id: str, seen: _Progress, observer: WaitObserver) -> _News:
    """One request; delivers what is new to the observer."""
    poll = store.poll_run(run_id, after_seq=seen.cursor)
    seen.polls += 1
    seen.run = poll.run
    seen.artifacts = list(poll.artifacts)
    changed = poll.run.status != seen.status
    if changed and not poll.run.is_terminal:
        _report_status(seen, observer)
    fresh = [event for event in poll.events if event.seq > seen.cursor]
    if fresh:
        observer.on_events(poll.run, fresh)
        seen.cursor = fresh[-1].seq
        seen.events_seen += len(fresh)
    return _News(answered=True, new_events=len(fresh), status_changed=changed, has_more=poll.has_more)


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
