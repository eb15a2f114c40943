"""The wait loop against a scripted in-memory store and a fake clock: exact polls and sleeps."""

from __future__ import annotations

import io
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from odooops_action.action.report import LogReporter
from odooops_action.errors import AuthError, OdooOpsError, RunNotFoundError, TransientError
from odooops_action.github.commands import WorkflowCommands
from odooops_action.models import Artifact, Run, RunEvent, RunPoll
from odooops_action.waiting import PollSchedule, PrintObserver, WaitResult, run_interruptibly, wait_for_run

RUN_ID = "run-20260214-120000-abc123d"
NOW = datetime(2026, 2, 14, 12, 0, tzinfo=UTC)


def make_run(status: str, **extra: Any) -> Run:
    fields: dict[str, Any] = {
        "run_id": RUN_ID,
        "project_id": "p",
        "env_id": "dev",
        "workflow_type": "build",
        "git_sha": "abc123d" + "0" * 33,
        "git_ref": "main",
        "status": status,
        "queued_at": NOW,
    }
    if status != "queued":
        fields.update(claimed_by="w", claimed_at=NOW)
    if status in ("running", "success"):
        fields["started_at"] = NOW
    if status in ("success", "failed", "cancelled"):
        fields["finished_at"] = NOW
    fields.update(extra)
    return Run.model_validate(fields)


class ScriptedStore:
    """A store whose run evolves by ``script[i]`` just before poll ``i``, then by ``after``."""

    def __init__(
        self,
        script: Sequence[Callable[[ScriptedStore], None]],
        page_size: int = 1000,
        after: Callable[[ScriptedStore], None] | None = None,
    ) -> None:
        self.script = list(script)
        self.after = after or nothing
        self.page_size = page_size
        self.status = "queued"
        self.events: list[RunEvent] = []
        self.artifacts: list[Artifact] = []
        self.cursors: list[int] = []

    def add_events(self, count: int, level: str = "info") -> None:
        for _ in range(count):
            seq = len(self.events) + 1
            self.events.append(
                RunEvent(
                    event_id=f"evt-{seq}",
                    run_id=RUN_ID,
                    seq=seq,
                    level=level,
                    message=f"line {seq}",
                    created_at=NOW,
                )
            )

    def poll_run(self, run_id: str, after_seq: int = 0, max_events: int = 1000) -> RunPoll:
        assert run_id == RUN_ID
        step = self.script[len(self.cursors)] if len(self.cursors) < len(self.script) else self.after
        self.cursors.append(after_seq)
        step(self)
        newer = [event for event in self.events if event.seq > after_seq]
        page = newer[: min(max_events, self.page_size)]
        return RunPoll(
            run=make_run(self.status, event_seq=len(self.events)),
            events=page,
            artifacts=self.artifacts,
            has_more=len(newer) > len(page),
        )

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the wait loop must only poll, it called {name}")


def nothing(_: ScriptedStore) -> None:
    pass


def become(status: str, events: int = 0) -> Callable[[ScriptedStore], None]:
    def step(store: ScriptedStore) -> None:
        store.status = status
        store.add_events(events)

    return step


def fail_with(error: OdooOpsError) -> Callable[[ScriptedStore], None]:
    def step(_: ScriptedStore) -> None:
        raise error

    return step


class FakeTime(threading.Event):
    """A clock and a stop event whose ``wait`` advances the clock instead of sleeping."""

    def __init__(self, interrupt_on_sleep: int | None = None) -> None:
        super().__init__()
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.interrupt_on_sleep = interrupt_on_sleep

    def clock(self) -> float:
        return self.now

    def wait(self, timeout: float | None = None) -> bool:
        assert timeout is not None
        assert timeout >= 0
        self.sleeps.append(timeout)
        self.now += timeout
        if self.interrupt_on_sleep is not None and len(self.sleeps) >= self.interrupt_on_sleep:
            self.set()
        return self.is_set()


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.poll_errors: list[OdooOpsError] = []

    def on_status(self, run: Run, previous: str | None) -> None:
        self.calls.append(("status", (previous, run.status)))

    def on_events(self, run: Run, events: Sequence[RunEvent]) -> None:
        self.calls.append(("events", [event.seq for event in events]))

    def on_poll_error(self, error: OdooOpsError) -> None:
        self.poll_errors.append(error)

    @property
    def seqs(self) -> list[int]:
        return [seq for kind, value in self.calls if kind == "events" for seq in value]

    @property
    def statuses(self) -> list[tuple[str | None, str]]:
        return [value for kind, value in self.calls if kind == "status"]


def run_wait(
    store: ScriptedStore,
    fake: FakeTime,
    observer: Any = None,
    *,
    timeout: float = 60.0,
    schedule: PollSchedule | None = None,
    after_seq: int = 0,
) -> WaitResult:
    return wait_for_run(
        store,  # type: ignore[arg-type]
        RUN_ID,
        timeout=timeout,
        schedule=schedule or PollSchedule(min_interval=0.2, max_interval=5.0, backoff=1.5),
        observer=observer or Recorder(),
        stop=fake,
        clock=fake.clock,
        after_seq=after_seq,
    )


def test_backlog_is_drained_without_sleeping_and_every_event_arrives_once_in_order() -> None:
    store = ScriptedStore([become("running", 2500), nothing, nothing, become("success", 1)])
    fake, observer = FakeTime(), Recorder()
    result = run_wait(store, fake, observer)
    assert result.outcome == "success"
    assert observer.seqs == list(range(1, 2502))
    assert store.cursors == [0, 1000, 2000, 2500]
    assert fake.sleeps == [0.2]  # only after the last page of the running run
    assert result.events_seen == 2501
    assert result.polls == 4


def test_idle_polls_back_off_up_to_the_poll_interval_and_news_resets_it() -> None:
    script = [become("queued", 1), *[nothing] * 9, become("running", 1), nothing, nothing, become("success")]
    store, fake = ScriptedStore(script), FakeTime()
    result = run_wait(store, fake, schedule=PollSchedule(min_interval=0.2, max_interval=1.0, backoff=2.0))
    assert result.outcome == "success"
    assert fake.sleeps == pytest.approx([0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.2, 0.4, 0.8])
    assert result.polls == len(fake.sleeps) + 1


def test_a_trickle_of_single_events_slows_the_pace_while_a_flow_resets_it() -> None:
    one = become("running", 1)  # status unchanged after the first: one new event
    script = [become("running"), nothing, nothing, one, one, nothing, become("running", 3), become("success")]
    store, fake = ScriptedStore(script), FakeTime()
    result = run_wait(store, fake, schedule=PollSchedule(min_interval=0.2, max_interval=5.0, backoff=2.0))
    assert result.outcome == "success"
    # 0.2 after the status change; idle 0.4, 0.8; single events halve: 0.4, 0.2; idle 0.4;
    # three events at once are a flow: back to 0.2.
    assert fake.sleeps == pytest.approx([0.2, 0.4, 0.8, 0.4, 0.2, 0.4, 0.2])


def test_timeout_never_sleeps_past_the_deadline_and_polls_once_at_it() -> None:
    store, fake = ScriptedStore([become("running", 1)]), FakeTime()
    result = run_wait(store, fake, timeout=7.0, schedule=PollSchedule(min_interval=1.0, max_interval=3.0))
    assert result.outcome == "timeout"
    assert fake.sleeps == pytest.approx([1.0, 1.5, 2.25, 2.25])  # the last sleep is cut to the deadline
    assert sum(fake.sleeps) == pytest.approx(7.0)
    assert result.waited_seconds == pytest.approx(7.0)
    assert result.polls == 5
    assert result.run is not None
    assert result.run.status == "running"


def test_terminal_status_is_reported_after_all_of_its_events() -> None:
    store = ScriptedStore([become("queued", 1), become("success", 1500)], page_size=1000)
    fake, observer = FakeTime(), Recorder()
    result = run_wait(store, fake, observer)
    assert result.outcome == "success"
    assert observer.calls[-1] == ("status", ("queued", "success"))
    assert observer.seqs == list(range(1, 1502))
    assert observer.statuses == [(None, "queued"), ("queued", "success")]


@pytest.mark.parametrize("final", ["failed", "cancelled"])
def test_failed_and_cancelled_runs_end_the_wait_with_that_outcome(final: str) -> None:
    store = ScriptedStore([become("running"), become(final, 1)])
    result = run_wait(store, FakeTime())
    assert result.outcome == final
    assert result.run is not None
    assert result.run.status == final


def test_a_missing_run_ends_the_wait_as_not_found() -> None:
    store = ScriptedStore([fail_with(RunNotFoundError(f"run {RUN_ID} not found"))])
    fake = FakeTime()
    result = run_wait(store, fake)
    assert (result.outcome, result.run, fake.sleeps) == ("not_found", None, [])


def test_transient_errors_keep_polling_and_are_reported() -> None:
    outage = TransientError("Supabase stayed unavailable")
    store = ScriptedStore([become("running", 1), fail_with(outage), fail_with(outage), become("success", 1)])
    fake, observer = FakeTime(), Recorder()
    result = run_wait(store, fake, observer)
    assert result.outcome == "success"
    assert observer.poll_errors == [outage, outage]
    assert result.last_error is outage
    assert store.cursors == [0, 1, 1, 1]  # the cursor does not move on a failed poll
    assert observer.seqs == [1, 2]


def test_a_timeout_after_transient_errors_carries_the_last_error() -> None:
    outage = TransientError("connection refused")
    store = ScriptedStore([become("running")], after=fail_with(outage))
    result = run_wait(store, FakeTime(), timeout=3.0)
    assert result.outcome == "timeout"
    assert result.last_error is outage


def test_permanent_errors_are_raised() -> None:
    store = ScriptedStore([become("running"), fail_with(AuthError("Supabase refused the API key"))])
    with pytest.raises(AuthError):
        run_wait(store, FakeTime())


def test_stop_interrupts_the_sleep() -> None:
    store = ScriptedStore([become("running", 1)])
    fake = FakeTime(interrupt_on_sleep=3)
    result = run_wait(store, fake)
    assert result.outcome == "interrupted"
    assert len(fake.sleeps) == 3
    assert result.polls == 3


def test_a_real_stop_event_wakes_a_long_sleep_at_once() -> None:
    store = ScriptedStore([become("running", 1)])
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    result = wait_for_run(
        store,  # type: ignore[arg-type]
        RUN_ID,
        timeout=60,
        schedule=PollSchedule(min_interval=30, max_interval=30),
        observer=Recorder(),
        stop=stop,
    )
    assert result.outcome == "interrupted"
    assert time.monotonic() - started < 30 / 2  # woken by the stop, not at the end of the 30 s sleep


def test_resuming_after_a_cursor_skips_events_already_seen() -> None:
    store = ScriptedStore([become("running", 10), become("success", 2)])
    observer = Recorder()
    result = run_wait(store, FakeTime(), observer, after_seq=7)
    assert observer.seqs == [8, 9, 10, 11, 12]
    assert result.events_seen == 5


def test_print_observer_writes_status_lines_and_each_event() -> None:
    stream = io.StringIO()
    store = ScriptedStore([become("queued", 2), become("running", 1), become("success", 1)])
    run_wait(store, FakeTime(), PrintObserver(stream))
    assert stream.getvalue().splitlines() == [
        "Status: queued - waiting...",
        "[info] line 1",
        "[info] line 2",
        "Status: running - waiting...",
        "[info] line 3",
        "[info] line 4",
        "Status: success",
    ]


def test_a_poll_warning_does_not_say_retry_later_while_retrying() -> None:
    """The store's error carries a hint for one-shot commands ("Retry later"); the loop, which does
    retry, says so once and leaves the hint out, in the CLI and in the Action's log."""
    error = TransientError(
        "Supabase at db.example stayed unavailable: ops.poll_run failed 4 time(s) (last: HTTP 503).",
        hint="Retry later, or check the project's status in the Supabase dashboard.",
    )
    stream = io.StringIO()
    PrintObserver(stream).on_poll_error(error)
    commands_out = io.StringIO()
    reporter = LogReporter(
        WorkflowCommands(commands_out), annotate_levels=frozenset(), check_annotation_path="action.yml"
    )
    reporter.on_poll_error(error)
    for line in (stream.getvalue(), commands_out.getvalue()):
        assert line.count("\n") == 1
        assert "stayed unavailable: ops.poll_run failed 4 time(s)" in line
        assert "until the timeout" in line
        assert "retry later" not in line.lower()


def test_run_interruptibly_turns_a_signal_into_a_stop() -> None:
    previous = signal.getsignal(signal.SIGTERM)

    def work(stop: threading.Event) -> str:
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()
        return "stopped" if stop.wait(20) else "not stopped"

    result, received = run_interruptibly(work)
    assert (result, received) == ("stopped", signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is previous


def test_a_second_signal_is_not_swallowed() -> None:
    release = threading.Event()

    def stubborn(stop: threading.Event) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.wait(5)
        os.kill(os.getpid(), signal.SIGINT)
        release.wait(5)  # ignores the stop, as a hanging request would

    try:
        with pytest.raises(KeyboardInterrupt):
            run_interruptibly(stubborn)
    finally:
        release.set()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_run_interruptibly_reraises_the_work_error() -> None:
    def work(_: threading.Event) -> None:
        raise AuthError("refused")

    with pytest.raises(AuthError, match="refused"):
        run_interruptibly(work)


@pytest.mark.parametrize(
    ("interval", "expected"),
    [(5.0, PollSchedule(0.2, 5.0)), (0.1, PollSchedule(0.1, 0.1)), (1.0, PollSchedule(0.2, 1.0))],
)
def test_schedule_for_a_poll_interval(interval: float, expected: PollSchedule) -> None:
    assert PollSchedule.for_interval(interval) == expected


@pytest.mark.parametrize(("low", "high", "backoff"), [(0, 1, 1.5), (2, 1, 1.5), (0.2, 1, 0.5)])
def test_schedule_rejects_nonsense(low: float, high: float, backoff: float) -> None:
    with pytest.raises(ValueError, match=r"must|need"):
        PollSchedule(low, high, backoff)
