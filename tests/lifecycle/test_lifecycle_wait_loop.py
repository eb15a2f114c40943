"""The wait loop against a scripted in-memory store and a fake clock: exact polls and sleeps.

The pace rule under test: at most one poll per interval whatever the log rate, a backlog drained
at once, and with a change feed a poll only on a change (or a safety poll). No timing assertions:
the clock is fake and the sleeps are the loop's own arguments."""

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
from odooops_action.errors import (
    AuthError,
    MigrationMissingError,
    OdooOpsError,
    RunNotFoundError,
    TransientError,
)
from odooops_action.github.commands import WorkflowCommands
from odooops_action.models import Artifact, Run, RunDelta, RunEvent, RunPoll
from odooops_action.waiting import (
    ChangeFeed,
    PollSchedule,
    PrintObserver,
    WaitResult,
    run_interruptibly,
    wait_for_run,
)

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
    """A store whose run evolves by ``script[i]`` just before poll ``i``, then by ``after``.

    It answers ``poll_run_delta`` as the database does: the run (and artifacts) only when its
    revision differs from the caller's. With ``legacy`` it lacks that function (an old database)."""

    def __init__(
        self,
        script: Sequence[Callable[[ScriptedStore], None]],
        page_size: int = 1000,
        after: Callable[[ScriptedStore], None] | None = None,
        *,
        legacy: bool = False,
    ) -> None:
        self.script = list(script)
        self.after = after or nothing
        self.page_size = page_size
        self.legacy = legacy
        self.status = "queued"
        self.revision = 0
        self.events: list[RunEvent] = []
        self.artifacts: list[Artifact] = []
        self.cursors: list[int] = []
        self.known_revisions: list[int | None] = []
        self.runs_sent = 0

    def set_status(self, status: str) -> None:
        if status != self.status:
            self.status = status
            self.revision += 1

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

    def _step(self, after_seq: int) -> list[RunEvent]:
        step = self.script[len(self.cursors)] if len(self.cursors) < len(self.script) else self.after
        self.cursors.append(after_seq)
        step(self)
        return [event for event in self.events if event.seq > after_seq]

    def _run(self) -> Run:
        return make_run(self.status, event_seq=len(self.events), revision=self.revision)

    def poll_run_delta(
        self,
        run_id: str,
        after_seq: int = 0,
        known_revision: int | None = None,
        max_events: int = 1000,
        detail: bool = False,
    ) -> RunDelta:
        assert run_id == RUN_ID
        if self.legacy:
            raise MigrationMissingError("The database lacks function ops.poll_run_delta")
        self.known_revisions.append(known_revision)
        newer = self._step(after_seq)
        page = newer[: min(max_events, self.page_size)]
        changed = known_revision != self.revision
        self.runs_sent += changed
        return RunDelta(
            revision=self.revision,
            run=self._run() if changed else None,
            artifacts=self.artifacts if changed else None,
            events=page,
            has_more=len(newer) > len(page),
        )

    def poll_run(self, run_id: str, after_seq: int = 0, max_events: int = 1000) -> RunPoll:
        assert run_id == RUN_ID
        newer = self._step(after_seq)
        page = newer[: min(max_events, self.page_size)]
        return RunPoll(
            run=self._run(), events=page, artifacts=self.artifacts, has_more=len(newer) > len(page)
        )

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the wait loop must only poll, it called {name}")


def nothing(_: ScriptedStore) -> None:
    pass


def become(status: str, events: int = 0) -> Callable[[ScriptedStore], None]:
    def step(store: ScriptedStore) -> None:
        store.set_status(status)
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
    changes: ChangeFeed | None = None,
) -> WaitResult:
    return wait_for_run(
        store,  # type: ignore[arg-type]
        RUN_ID,
        timeout=timeout,
        schedule=schedule or PollSchedule(interval=5.0),
        observer=observer or Recorder(),
        stop=fake,
        clock=fake.clock,
        after_seq=after_seq,
        changes=changes,
    )


class FakeFeed:
    """A change feed whose ``wait`` follows a script: True (a change) or False (the timeout)."""

    def __init__(self, fake: FakeTime, answers: Sequence[bool]) -> None:
        self.fake = fake
        self.answers = list(answers)
        self.waits: list[float] = []
        self.started = self.closed = False
        self.live = True

    def start(self) -> None:
        self.started = True

    def wait(self, timeout: float, stop: threading.Event) -> bool:
        self.waits.append(timeout)
        changed = self.answers.pop(0) if self.answers else False
        self.fake.now += 0.01 if changed else timeout
        return changed

    def close(self) -> None:
        self.closed = True


def test_backlog_is_drained_without_sleeping_and_every_event_arrives_once_in_order() -> None:
    store = ScriptedStore([become("running", 2500), nothing, nothing, become("success", 1)])
    fake, observer = FakeTime(), Recorder()
    result = run_wait(store, fake, observer)
    assert result.outcome == "success"
    assert observer.seqs == list(range(1, 2502))
    assert store.cursors == [0, 1000, 2000, 2500]
    assert fake.sleeps == [5.0]  # only after the last page of the running run
    assert result.events_seen == 2501
    assert result.polls == 4


@pytest.mark.parametrize("lines_per_poll", [0, 1, 3, 50, 999])
def test_one_poll_per_interval_whatever_the_log_rate(lines_per_poll: int) -> None:
    flowing = become("running", lines_per_poll)
    store, fake = ScriptedStore([become("running"), *[flowing] * 8, become("success")]), FakeTime()
    result = run_wait(store, fake, schedule=PollSchedule(interval=5.0))
    assert result.outcome == "success"
    assert fake.sleeps == [5.0] * 9
    assert result.events_seen == 8 * lines_per_poll


def test_the_interval_runs_from_the_start_of_one_poll_to_the_start_of_the_next() -> None:
    def slow(store: ScriptedStore) -> None:
        fake.now += 1.5  # the request takes 1.5 s

    fake = FakeTime()
    store = ScriptedStore([become("running"), slow, slow, become("success")])
    run_wait(store, fake, schedule=PollSchedule(interval=5.0))
    assert fake.sleeps == pytest.approx([5.0, 3.5, 3.5])


def test_the_run_travels_only_when_its_revision_moved() -> None:
    script = [become("queued", 1), nothing, become("running", 2), nothing, nothing, become("success", 1)]
    store = ScriptedStore(script)
    result = run_wait(store, FakeTime())
    assert result.outcome == "success"
    assert store.known_revisions == [None, 0, 0, 1, 1, 1]
    assert store.runs_sent == 3  # the first answer, running, success
    assert result.run is not None
    assert result.run.status == "success"


def test_a_status_change_without_events_is_never_missed() -> None:
    def quietly(status: str) -> Callable[[ScriptedStore], None]:
        return lambda store: store.set_status(status)

    store = ScriptedStore([nothing, quietly("claimed"), nothing, quietly("running"), quietly("success")])
    observer = Recorder()
    result = run_wait(store, FakeTime(), observer)
    assert result.outcome == "success"
    assert observer.statuses == [
        (None, "queued"),
        ("queued", "claimed"),
        ("claimed", "running"),
        ("running", "success"),
    ]


def test_artifacts_are_kept_from_the_last_answer_that_carried_them() -> None:
    artifact = Artifact(
        artifact_id="art-1",
        run_id=RUN_ID,
        artifact_type="image",
        storage_path="ghcr.io/o/r:1",
        created_at=NOW,
    )

    def add_artifact_and_finish(store: ScriptedStore) -> None:
        store.artifacts.append(artifact)
        store.set_status("success")

    store = ScriptedStore([become("running"), nothing, add_artifact_and_finish])
    result = run_wait(store, FakeTime())
    assert result.artifacts == [artifact]


def test_a_database_without_poll_run_delta_is_read_with_poll_run() -> None:
    store = ScriptedStore([become("running", 1500), nothing, become("success", 1)], legacy=True)
    observer = Recorder()
    result = run_wait(store, FakeTime(), observer)
    assert result.outcome == "success"
    assert observer.seqs == list(range(1, 1502))
    assert store.cursors == [0, 1000, 1500]


def test_timeout_never_sleeps_past_the_deadline_and_polls_once_at_it() -> None:
    store, fake = ScriptedStore([become("running", 1)]), FakeTime()
    result = run_wait(store, fake, timeout=7.0, schedule=PollSchedule(interval=3.0))
    assert result.outcome == "timeout"
    assert fake.sleeps == pytest.approx([3.0, 3.0, 1.0])  # the last sleep is cut to the deadline
    assert result.waited_seconds == pytest.approx(7.0)
    assert result.polls == 4
    assert result.run is not None
    assert result.run.status == "running"


def test_with_a_change_feed_it_polls_on_changes_and_otherwise_once_per_safety_interval() -> None:
    fake = FakeTime()
    feed = FakeFeed(fake, [False, False, True, True, False, True])
    script = [become("running"), nothing, nothing, become("running", 3), become("running", 1), nothing]
    store = ScriptedStore([*script, become("success", 1)])
    observer = Recorder()
    result = run_wait(
        store,
        fake,
        observer,
        timeout=600,
        schedule=PollSchedule(interval=5, safety_interval=60),
        changes=feed,
    )
    assert result.outcome == "success"
    assert feed.started
    assert feed.closed
    assert fake.sleeps == []  # never a timed poll
    assert result.polls == 7  # the first, three safety polls (60 s apart), three on a change
    assert feed.waits[:2] == pytest.approx([60.0, 60.0])
    assert observer.seqs == [1, 2, 3, 4, 5]


def test_with_a_change_feed_an_idle_run_costs_one_poll_a_minute() -> None:
    fake = FakeTime()
    feed = FakeFeed(fake, [])
    store = ScriptedStore([become("running")])
    result = run_wait(store, fake, timeout=300, schedule=PollSchedule(interval=5), changes=feed)
    assert result.outcome == "timeout"
    assert result.polls == 6  # at 0, 60, 120, 180, 240 and at the deadline
    assert feed.closed


def test_with_a_change_feed_a_failed_poll_is_retried_after_one_interval() -> None:
    fake = FakeTime()
    feed = FakeFeed(fake, [])
    outage = TransientError("connection lost")
    store = ScriptedStore([become("running"), fail_with(outage), become("success")])
    schedule = PollSchedule(interval=5, safety_interval=60)
    result = run_wait(store, fake, timeout=600, schedule=schedule, changes=feed)
    assert result.outcome == "success"
    assert feed.waits == pytest.approx([60.0, 5.0])


def test_a_feed_that_is_not_live_is_treated_as_polling_every_interval() -> None:
    fake = FakeTime()
    feed = FakeFeed(fake, [])
    feed.live = False
    store = ScriptedStore([become("running"), nothing, become("success")])
    run_wait(store, fake, timeout=600, schedule=PollSchedule(interval=5, safety_interval=60), changes=feed)
    assert feed.waits == pytest.approx([5.0, 5.0])


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
    assert store.known_revisions == [None, 1, 1, 1]
    assert observer.seqs == [1, 2]


def test_a_timeout_after_transient_errors_carries_the_last_error() -> None:
    outage = TransientError("connection refused")
    store = ScriptedStore([become("running")], after=fail_with(outage))
    result = run_wait(store, FakeTime(), timeout=12.0)
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
        schedule=PollSchedule(interval=30),
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
    # Each status line follows the events that led to it (a worker's "claimed" before "running").
    assert stream.getvalue().splitlines() == [
        "[info] line 1",
        "[info] line 2",
        "Status: queued - waiting...",
        "[info] line 3",
        "Status: running - waiting...",
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


def test_schedule_for_a_poll_interval() -> None:
    assert PollSchedule.for_interval(5.0) == PollSchedule(interval=5.0, safety_interval=60.0)
    assert PollSchedule.for_interval(0.2).interval == 0.2


@pytest.mark.parametrize(("interval", "safety"), [(0, 60), (-1, 60), (5, 0)])
def test_schedule_rejects_nonsense(interval: float, safety: float) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        PollSchedule(interval, safety)
