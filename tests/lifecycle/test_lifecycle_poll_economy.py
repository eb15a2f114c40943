"""Poll economy: ``ops.poll_run_delta``, the run's revision, per-run notifications, push over PostgreSQL.

Correctness only (no timing assertions): what an answer carries, when the run travels, that a
burst is drained completely, that no status change is missed, and that a waiter following a run
over LISTEN loses and repeats nothing across a PostgreSQL restart. Sizes are asserted in bytes.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
import pytest

from odooops_action.models import ClaimFilter, NewArtifact, NewEvent, Run, RunEvent
from odooops_action.push import PgRunChanges, run_channel
from odooops_action.store.base import RunStore
from odooops_action.store.pg import PgStore
from odooops_action.waiting import PollSchedule, WaitResult, wait_for_run
from tests.devstack import DevStack
from tests.devstack.counting_proxy import CountingProxy
from tests.lifecycle.helpers import Backend, log_lines, queue_run, rest_store, run_in_status, unique_id

WORKER = "worker-lc"
IMAGE = NewArtifact(artifact_type="image", storage_path="ghcr.io/org/repo:abc123d")


class Collector:
    """An observer that keeps every status change and event seq it is given."""

    def __init__(self) -> None:
        self.statuses: list[str] = []
        self.seqs: list[int] = []
        self.messages: list[str] = []
        self.lock = threading.Lock()

    def on_status(self, run: Run, previous: str | None) -> None:
        self.statuses.append(run.status)

    def on_events(self, run: Run, events: Sequence[RunEvent]) -> None:
        with self.lock:
            self.seqs += [event.seq for event in events]
            self.messages += [event.message for event in events]

    def count(self) -> int:
        with self.lock:
            return len(self.seqs)


def all_seqs(db: psycopg.Connection[Any], run_id: str) -> list[int]:
    rows = db.execute("SELECT seq FROM ops.run_events WHERE run_id = %s ORDER BY seq", (run_id,)).fetchall()
    return [seq for (seq,) in rows]


def raw_delta(db: psycopg.Connection[Any], run_id: str, **args: Any) -> dict[str, Any]:
    names = ", ".join(f"{name} => %({name})s" for name in args)
    query = f"SELECT ops.poll_run_delta(run_id => %(run_id)s{', ' + names if names else ''})"
    answer: dict[str, Any] = db.execute(query, {"run_id": run_id, **args}).fetchone()[0]  # type: ignore[index]
    return answer


# -- the answer ---------------------------------------------------------------------------------


def test_the_run_and_artifacts_travel_only_when_the_revision_moved(backend: Backend, project: str) -> None:
    store = backend.store
    run = run_in_status(store, project, "running", worker=WORKER)
    first = store.poll_run_delta(run.run_id)
    assert first.run is not None
    assert first.run.status == "running"
    assert first.artifacts == []
    cursor = first.events[-1].seq

    idle = store.poll_run_delta(run.run_id, after_seq=cursor, known_revision=first.revision)
    assert (idle.run, idle.artifacts, idle.events, idle.has_more) == (None, None, [], False)

    store.heartbeat_run(run.run_id, WORKER)
    store.append_events(run.run_id, log_lines(3, "quiet"))
    logged = store.poll_run_delta(run.run_id, after_seq=cursor, known_revision=first.revision)
    assert (logged.run, logged.artifacts, logged.revision) == (None, None, first.revision)
    assert [event.message for event in logged.events] == ["quiet 00000", "quiet 00001", "quiet 00002"]

    artifact = store.add_artifact(run.run_id, IMAGE)
    with_artifact = store.poll_run_delta(run.run_id, after_seq=cursor + 3, known_revision=first.revision)
    assert with_artifact.revision > first.revision
    assert with_artifact.artifacts == [artifact]
    assert with_artifact.run is not None

    store.finish_run(run.run_id, WORKER, "success", exit_code=0)
    ended = store.poll_run_delta(run.run_id, after_seq=cursor + 3, known_revision=with_artifact.revision)
    assert ended.run is not None
    assert ended.run.status == "success"
    assert [event.message for event in ended.events] == ["Run succeeded"]


def test_every_status_change_moves_the_revision(
    pg_store: PgStore, project: str, db: psycopg.Connection[Any]
) -> None:
    run = queue_run(pg_store, project)
    seen = pg_store.poll_run_delta(run.run_id)
    steps = [
        lambda: pg_store.claim_next_run(WORKER, ClaimFilter(project_id=project)),
        lambda: pg_store.start_run(run.run_id, WORKER),
        lambda: db.execute(
            "UPDATE ops.runs SET heartbeat_at = now() - interval '1 hour' WHERE run_id = %s", (run.run_id,)
        ),
        lambda: pg_store.recover_stalled_runs(lease_seconds=60, max_attempts=3),
        lambda: pg_store.cancel_run(run.run_id, reason="test"),
    ]
    statuses = []
    for step in steps:
        step()
        delta = pg_store.poll_run_delta(run.run_id, after_seq=10**9, known_revision=seen.revision)
        if delta.run is not None:
            statuses.append(delta.run.status)
            seen = delta
    # The back-dated heartbeat alone does not move it; every status change does.
    assert statuses == ["claimed", "running", "queued", "cancelled"]


def test_events_carry_only_the_printed_columns_unless_detail_is_asked(
    pg_store: PgStore, project: str, db: psycopg.Connection[Any]
) -> None:
    run = run_in_status(pg_store, project, "running", worker=WORKER)
    pg_store.append_events(
        run.run_id, [NewEvent(message="plain"), NewEvent(message="rich", payload={"step": "b"})]
    )
    last = pg_store.poll_run_delta(run.run_id).events[-1].seq
    brief = raw_delta(db, run.run_id, after_seq=last - 2)
    assert brief["events"] == [
        {"seq": last - 1, "level": "info", "message": "plain"},
        {"seq": last, "level": "info", "message": "rich"},
    ]
    detailed = raw_delta(db, run.run_id, after_seq=last - 2, detail=True)["events"]
    assert [sorted(event) for event in detailed] == [
        ["created_at", "level", "message", "seq"],
        ["created_at", "level", "message", "payload", "seq"],
    ]
    assert detailed[1]["payload"] == {"step": "b"}
    parsed = pg_store.poll_run_delta(run.run_id, after_seq=last - 1, detail=True).events
    assert (parsed[0].run_id, parsed[0].payload, parsed[0].created_at is not None) == (
        run.run_id,
        {"step": "b"},
        True,
    )


def test_old_clients_still_poll_with_poll_run(backend: Backend, project: str) -> None:
    run = run_in_status(backend.store, project, "running", worker=WORKER)
    backend.store.add_artifact(run.run_id, IMAGE)
    poll = backend.store.poll_run(run.run_id)
    assert poll.run.status == "running"
    assert len(poll.artifacts) == 1
    assert [event.message for event in poll.events][-1] == f"Run started on worker {WORKER}"


def test_the_revision_is_written_by_the_database_only(
    devstack: DevStack, project: str, pg_store: PgStore
) -> None:
    run = queue_run(pg_store, project)
    with psycopg.connect(devstack.database.dsn("authenticator"), autocommit=True) as conn:
        conn.execute("SET ROLE service_role")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE ops.runs SET revision = 99 WHERE run_id = %s", (run.run_id,))
        conn.execute("UPDATE ops.runs SET metadata = '{\"k\": 1}' WHERE run_id = %s", (run.run_id,))
    assert pg_store.poll_run_delta(run.run_id).revision == 1


def test_an_idle_poll_answer_over_http_is_under_300_bytes(
    devstack: DevStack, project: str, pg_store: PgStore
) -> None:
    run = run_in_status(pg_store, project, "running", worker=WORKER)
    with (
        CountingProxy(devstack.server.port, "http") as proxy,
        rest_store(f"http://127.0.0.1:{proxy.port}", devstack.service_role_key) as store,
    ):
        first = store.poll_run_delta(run.run_id)
        cursor = first.events[-1].seq
        before = proxy.counts
        store.poll_run_delta(run.run_id, after_seq=cursor, known_revision=first.revision)
        idle = proxy.counts - before
    assert idle.requests == 1
    assert idle.bytes_received < 300, (
        f"idle poll answer: {idle.bytes_received} bytes (status line, headers, body)"
    )


# -- notifications ------------------------------------------------------------------------------


def test_the_channel_rule_is_the_same_in_sql_and_python(db: psycopg.Connection[Any]) -> None:
    run_id = "run-20261202-010000-abc123d-9999"  # the longest run id
    assert db.execute("SELECT ops.run_channel(%s)", (run_id,)).fetchone() == (run_channel(run_id),)
    assert len(run_channel(run_id).encode()) <= 63


def test_one_notification_per_commit_that_changes_what_a_waiter_shows(
    devstack: DevStack, pg_store: PgStore, project: str
) -> None:
    run = run_in_status(pg_store, project, "running", worker=WORKER)
    with psycopg.connect(devstack.database_url, autocommit=True) as listener:
        listener.execute(f'LISTEN "{run_channel(run.run_id)}"')
        pg_store.heartbeat_run(run.run_id, WORKER)  # not shown by a waiter: no notification
        pg_store.append_events(run.run_id, log_lines(100, "batch"))  # one transaction: one notification
        got = list(listener.notifies(stop_after=1, timeout=30))
        got += list(listener.notifies(timeout=0.5))
        assert [(n.channel, n.payload) for n in got] == [(run_channel(run.run_id), "")]
        pg_store.finish_run(run.run_id, WORKER, "success", exit_code=0)
        assert len(list(listener.notifies(stop_after=1, timeout=30))) == 1


# -- the wait loop over real stores -----------------------------------------------------------


def test_a_burst_is_drained_completely_in_pages(
    backend: Backend, project: str, db: psycopg.Connection[Any]
) -> None:
    run = run_in_status(backend.store, project, "running", worker=WORKER)
    for block in range(2):
        backend.store.append_events(run.run_id, log_lines(5000, f"burst{block}"))
    backend.store.finish_run(run.run_id, WORKER, "success", exit_code=0)
    observer = Collector()
    result = wait_for_run(
        backend.store, run.run_id, timeout=120, schedule=PollSchedule(interval=5), observer=observer
    )
    expected = all_seqs(db, run.run_id)
    assert result.outcome == "success"
    assert observer.seqs == expected
    assert result.polls == math.ceil(len(expected) / 1000)
    assert observer.statuses == ["success"]


class Following:
    """``wait_for_run`` over a change feed, in a thread."""

    def __init__(self, store: RunStore, run_id: str, feed: PgRunChanges) -> None:
        self.observer = Collector()
        self.feed = feed
        self._results: list[WaitResult] = []
        self._thread = threading.Thread(
            target=lambda: self._results.append(
                wait_for_run(
                    store,
                    run_id,
                    timeout=120,
                    schedule=PollSchedule(interval=5),
                    observer=self.observer,
                    changes=feed,
                )
            ),
            daemon=True,
        )
        self._thread.start()

    def result(self) -> WaitResult:
        self._thread.join(timeout=120)
        assert not self._thread.is_alive(), "the waiter did not end"
        return self._results[0]


def wait_until(predicate: Any, what: str) -> None:
    done = threading.Event()
    for _ in range(600):
        if predicate():
            return
        done.wait(0.1)
    raise AssertionError(f"gave up waiting for {what}")


@pytest.fixture
def restart_safe_project(devstack: DevStack) -> Iterator[str]:
    """A project created and removed on connections of its own (the shared ``db`` dies in a restart)."""
    project = unique_id("lc")
    with psycopg.connect(devstack.database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO ops.projects (project_id) VALUES (%s)", (project,))
        conn.execute("INSERT INTO ops.environments (project_id, env_id) VALUES (%s, 'dev')", (project,))
    yield project
    with psycopg.connect(devstack.database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM ops.projects WHERE project_id = %s", (project,))


def test_following_over_listen_loses_and_repeats_nothing_across_a_database_restart(
    devstack: DevStack, restart_safe_project: str
) -> None:
    with PgStore(devstack.database_url) as writer, PgStore(devstack.database_url) as reader:
        run = run_in_status(writer, restart_safe_project, "running", worker=WORKER)
        feed = PgRunChanges(reader.listen_connection, run.run_id)
        following = Following(reader, run.run_id, feed)
        observer = following.observer
        writer.append_events(run.run_id, log_lines(50, "before"))
        wait_until(lambda: "before 00049" in observer.messages, "the events written before the restart")
        devstack.cluster.restart()
        devstack.server.api.pool.close()  # the REST server's pooled connections died too: later tests
        writer.close()  # its connection died with the server; the next call opens a new one
        writer.append_events(run.run_id, log_lines(50, "after"))
        writer.finish_run(run.run_id, WORKER, "success", exit_code=0)
        result = following.result()
    with psycopg.connect(devstack.database_url, autocommit=True) as conn:
        expected = all_seqs(conn, run.run_id)
    assert result.outcome == "success"
    assert observer.seqs == expected  # every event once, in order
    assert "after 00049" in observer.messages
    assert feed.reconnects >= 1
    # Polls only on a notification or a reconnect (and the first): none while nothing happened.
    assert result.polls <= 1 + feed.notifications + feed.reconnects


def test_a_status_change_is_never_missed_when_following_over_listen(devstack: DevStack, project: str) -> None:
    with PgStore(devstack.database_url) as writer, PgStore(devstack.database_url) as reader:
        run = queue_run(writer, project)
        following = Following(reader, run.run_id, PgRunChanges(reader.listen_connection, run.run_id))
        observer = following.observer
        wait_until(lambda: observer.statuses == ["queued"], "the first answer")
        writer.claim_next_run(WORKER, ClaimFilter(project_id=project))
        wait_until(lambda: observer.statuses[-1:] == ["claimed"], "claimed")
        writer.start_run(run.run_id, WORKER)
        wait_until(lambda: observer.statuses[-1:] == ["running"], "running")
        writer.finish_run(run.run_id, WORKER, "failed", exit_code=3)
        result = following.result()
    assert result.outcome == "failed"
    assert observer.statuses == ["queued", "claimed", "running", "failed"]
    assert observer.messages[-1] == "Run failed: exit code 3" or observer.messages[-1].startswith(
        "Run failed"
    )


class DeafConnection:
    """A connection whose LISTEN is lost, as through a transaction pooler (PgBouncer, port 6543)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, query: Any, params: Any = None) -> Any:
        if "LISTEN" in repr(query):
            return None
        return self._conn.execute(query, params)

    def notifies(self, **options: Any) -> Any:
        return self._conn.notifies(**options)

    def close(self) -> None:
        self._conn.close()


def test_a_feed_whose_notifications_never_arrive_gives_up_and_the_loop_polls(
    devstack: DevStack, pg_store: PgStore, project: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("odooops_action.push.PROBE_SECONDS", 0.5)
    run = run_in_status(pg_store, project, "running", worker=WORKER)
    feed = PgRunChanges(
        lambda: DeafConnection(psycopg.connect(devstack.database_url, autocommit=True)), run.run_id
    )  # type: ignore[arg-type, return-value]
    feed.start()
    assert feed.live is False
    live = PgRunChanges(pg_store.listen_connection, run.run_id)
    live.start()
    assert live.live is True
    live.close()
