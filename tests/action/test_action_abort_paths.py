"""Abort paths a real server cannot be made to take on demand: the abort cancel failing or hanging.

``follow_run`` runs in-process with a store double whose run never ends; ``stop`` is set the way
the signal handler sets it. Everything else (file commands, workflow commands) is real.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from action_harness import Workspace

from odooops_action.action import follow
from odooops_action.action.runtime import ActionContext, StoppableStore, StopRequested
from odooops_action.action.settings import ActionSettings
from odooops_action.errors import TransientError
from odooops_action.github.commands import WorkflowCommands
from odooops_action.github.context import GitHubContext
from odooops_action.github.files import FileCommands
from odooops_action.models import CancelResult, RunDelta, RunPoll
from tests.github.gh_factories import make_run
from tests.github.gh_runner_model import parse_file_commands

RUN_ID = "run-20260101-120000-abcdef0"


class EndlessRunStore:
    """A run that stays running; ``cancel_behaviour`` decides what a cancel does."""

    def __init__(self, cancel_behaviour: str) -> None:
        self.cancel_behaviour = cancel_behaviour
        self.cancels = 0
        self.release = threading.Event()

    def poll_run(self, run_id: str, after_seq: int = 0, max_events: int = 1000) -> RunPoll:
        return RunPoll(run=make_run(run_id=run_id, status="running", finished_at=None, exit_code=None))

    def poll_run_delta(
        self, run_id: str, after_seq: int = 0, known_revision: int | None = None, **_: Any
    ) -> RunDelta:
        run = make_run(run_id=run_id, status="running", finished_at=None, exit_code=None)
        return RunDelta(revision=run.revision, run=None if known_revision == run.revision else run)

    def cancel_run(
        self, run_id: str, reason: str | None = None, cancelled_by: str | None = None
    ) -> CancelResult:
        self.cancels += 1
        if self.cancel_behaviour == "fail":
            raise TransientError("the server stayed unavailable (503) after 2 attempts")
        self.release.wait(10)  # "hang"
        raise TransientError("timed out")

    def close(self) -> None:
        return None


@pytest.fixture
def step(workspace: Workspace) -> tuple[dict[str, str], WorkflowCommands]:
    env = workspace.environment(
        {
            "mode": "wait",
            "run_id": RUN_ID,
            "supabase_url": "http://127.0.0.1:9",
            "supabase_key": "sb_secret_" + "k" * 30,
            "poll_interval_seconds": "0.2",
        }
    )
    return env, WorkflowCommands()


def follow_and_abort(env: dict[str, str], commands: WorkflowCommands, store: EndlessRunStore) -> int:
    stop = threading.Event()
    ctx = ActionContext(
        ActionSettings.from_environ(env),
        env,
        commands,
        FileCommands(env),
        GitHubContext.from_env(env),
        stop,
        store_opener=lambda *_, **__: store,  # type: ignore[arg-type,return-value]
    )
    threading.Timer(0.3, stop.set).start()
    return follow.follow_run(ctx, store, RUN_ID)  # type: ignore[arg-type]


def state_of(env: dict[str, str]) -> dict[str, str]:
    return parse_file_commands(Path(env["GITHUB_STATE"]).read_text())


def test_failed_abort_cancel_leaves_the_post_step_to_retry(
    step: tuple[dict[str, str], WorkflowCommands], capsys: pytest.CaptureFixture[str]
) -> None:
    env, commands = step
    store = EndlessRunStore("fail")

    exit_code = follow_and_abort(env, commands, store)

    assert exit_code == 1
    assert store.cancels == 1  # one request: there is no time for more
    assert state_of(env)["should_cancel"] == "true"
    out = capsys.readouterr().out
    error = next(line for line in out.splitlines() if line.startswith("::error"))
    assert "could not be cancelled" in error
    assert "the post step will try again" in error


def test_hanging_abort_cancel_does_not_hold_the_step(
    step: tuple[dict[str, str], WorkflowCommands], capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    env, commands = step
    store = EndlessRunStore("hang")
    monkeypatch.setattr(follow, "ABORT_CANCEL_JOIN_SECONDS", 0.5)

    exit_code = follow_and_abort(env, commands, store)
    assert not store.release.is_set()  # it returned while the cancel request still hung
    store.release.set()

    assert exit_code == 1
    assert state_of(env)["should_cancel"] == "true"
    assert "did not finish in time" in capsys.readouterr().out


class StuckPollStore(EndlessRunStore):
    """The first poll answers; the next one hangs (a slow server) until released."""

    def __init__(self) -> None:
        super().__init__("cancel")
        self.polls = 0
        self.stuck = threading.Event()

    def _hang_after_the_first(self) -> None:
        self.polls += 1
        if self.polls > 1:
            self.stuck.set()
            self.release.wait(30)

    def poll_run(self, run_id: str, after_seq: int = 0, max_events: int = 1000) -> RunPoll:
        self._hang_after_the_first()
        return super().poll_run(run_id, after_seq, max_events)

    def poll_run_delta(
        self, run_id: str, after_seq: int = 0, known_revision: int | None = None, **extra: Any
    ) -> RunDelta:
        self._hang_after_the_first()
        return super().poll_run_delta(run_id, after_seq, known_revision, **extra)

    def cancel_run(
        self, run_id: str, reason: str | None = None, cancelled_by: str | None = None
    ) -> CancelResult:
        self.cancels += 1
        run = make_run(run_id=run_id, status="cancelled", exit_code=None)
        return CancelResult(outcome="cancelled", run=run)


def test_stop_abandons_a_poll_in_flight(step: tuple[dict[str, str], WorkflowCommands]) -> None:
    env, commands = step
    store = StuckPollStore()
    stop = threading.Event()
    ctx = ActionContext(
        ActionSettings.from_environ(env),
        env,
        commands,
        FileCommands(env),
        GitHubContext.from_env(env),
        stop,
        store_opener=lambda *_, **__: store,  # type: ignore[arg-type,return-value]
    )
    stopper = threading.Thread(target=lambda: (store.stuck.wait(10), stop.set()))
    stopper.start()

    exit_code = follow.follow_run(ctx, ctx.open_store(), RUN_ID)
    still_stuck = store.stuck.is_set() and not store.release.is_set()
    store.release.set()
    stopper.join()

    assert still_stuck  # the step ended while the second poll was still in flight
    assert exit_code == 1
    assert store.cancels == 1
    outputs = parse_file_commands(Path(env["GITHUB_OUTPUT"]).read_text())
    assert outputs["outcome"] == "interrupted"
    assert outputs["status"] == "cancelled"
    assert state_of(env)["should_cancel"] == "false"


def test_stoppable_store_passes_calls_through_until_stopped() -> None:
    store = StuckPollStore()
    stop = threading.Event()
    stoppable = StoppableStore(store, stop)  # type: ignore[arg-type]

    assert stoppable.poll_run(RUN_ID, after_seq=3).run.run_id == RUN_ID  # answers come back
    result = stoppable.cancel_run(RUN_ID, "why", cancelled_by="who")
    assert result.outcome == "cancelled"
    failing = StoppableStore(EndlessRunStore("fail"), stop)  # type: ignore[arg-type]
    with pytest.raises(TransientError, match="503"):  # errors come back as they were raised
        failing.cancel_run(RUN_ID)
    stop.set()
    with pytest.raises(StopRequested, match=r"before ops\.poll_run was sent"):
        stoppable.poll_run(RUN_ID)
    assert store.polls == 1
