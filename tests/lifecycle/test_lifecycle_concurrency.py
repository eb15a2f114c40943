"""Many clients at once: claims never overlap, run ids never collide, idempotency keys dedupe."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import httpx
import psycopg
import pytest

from odooops_action.errors import StateConflictError
from odooops_action.models import ClaimFilter, CreatedRun, CreateRunRequest
from odooops_action.store.base import RunStore
from odooops_action.store.pg import PgStore
from tests.devstack import DevStack
from tests.lifecycle.helpers import Backend, new_sha, rest_headers, rest_store, unique_id

QUEUED_RUNS = 200
PG_CLAIMERS = 8
REST_CLAIMERS = 3
_T = TypeVar("_T")


def in_parallel(tasks: list[Callable[[], _T]]) -> list[_T]:
    """Run the tasks in threads released together by a barrier; results in task order."""
    barrier = threading.Barrier(len(tasks))

    def released(task: Callable[[], _T]) -> _T:
        barrier.wait(timeout=30)
        return task()

    with ThreadPoolExecutor(max_workers=len(tasks)) as pool:
        return list(pool.map(released, tasks))


def queue_many(db: psycopg.Connection[Any], project: str, count: int) -> set[str]:
    """``count`` queued runs of distinct commits, in one statement."""
    rows = db.execute(
        "SELECT ops.create_run(%s, 'build', 'main', md5(g::text) || left(md5('x' || g), 8))"
        " -> 'run' ->> 'run_id' FROM generate_series(1, %s) AS g",
        (project, count),
    ).fetchall()
    return {row[0] for row in rows}


def test_every_queued_run_is_claimed_exactly_once(
    devstack: DevStack, db: psycopg.Connection[Any], project: str
) -> None:
    queued = queue_many(db, project, QUEUED_RUNS)
    only_this_project = ClaimFilter(project_id=project)

    def claimer(make_store: Callable[[], RunStore], worker: str) -> Callable[[], list[str]]:
        def claim_until_empty() -> list[str]:
            claimed: list[str] = []
            store = make_store()
            try:
                while (run := store.claim_next_run(worker, only_this_project)) is not None:
                    assert run.claimed_by == worker
                    claimed.append(run.run_id)
            finally:
                store.close()
            return claimed

        return claim_until_empty

    def pg() -> RunStore:
        return PgStore(devstack.database_url)

    def rest() -> RunStore:
        return rest_store(devstack.url, devstack.service_role_key)

    names = [f"pg-{n}" for n in range(PG_CLAIMERS)] + [f"rest-{n}" for n in range(REST_CLAIMERS)]
    per_worker = in_parallel([claimer(pg if name.startswith("pg") else rest, name) for name in names])

    everything = [run_id for claims in per_worker for run_id in claims]
    assert Counter(everything).most_common(1)[0][1] == 1, "a run was claimed twice"
    assert set(everything) == queued
    assert sum(1 for claims in per_worker if claims) >= 2, "the claimers did not run concurrently"
    rows = db.execute(
        "SELECT run_id, claimed_by, attempt FROM ops.runs WHERE project_id = %s AND status = 'claimed'",
        (project,),
    ).fetchall()
    holders = {run_id: (name, 1) for name, claims in zip(names, per_worker, strict=True) for run_id in claims}
    assert holders == {run_id: (claimed_by, attempt) for run_id, claimed_by, attempt in rows}


def wait_for_a_fresh_second() -> None:
    """Sleep to just after a second boundary, so that a burst of creates shares one second."""
    time.sleep(1.02 - time.time() % 1)


def split_id(run_id: str) -> tuple[str, int]:
    match = re.fullmatch(r"(run-\d{8}-\d{6}-[0-9a-f]{7})(?:-(\d+))?", run_id)
    assert match is not None, run_id
    return match.group(1), int(match.group(2) or 1)


def assert_numbered_from_one(run_ids: list[str], sha: str) -> None:
    """Per second: the base id, then -2, -3, ... with no gap and no repeat."""
    by_base: dict[str, list[int]] = {}
    for run_id in run_ids:
        base, number = split_id(run_id)
        assert base.endswith(sha[:7])
        by_base.setdefault(base, []).append(number)
    for numbers in by_base.values():
        assert sorted(numbers) == list(range(1, len(numbers) + 1))


def request(project: str, sha: str, workflow: str = "build", key: str | None = None) -> CreateRunRequest:
    return CreateRunRequest(
        project_id=project,
        workflow_type=workflow,
        git_ref="main",
        git_sha=sha,
        env_id="dev",
        idempotency_key=key,
    )


def test_runs_of_one_commit_in_one_second_get_numbered_ids(backend: Backend, project: str) -> None:
    sha = new_sha()
    workflows = ["build", "deploy", "test", "build", "deploy"]
    wait_for_a_fresh_second()
    created = [backend.store.create_run(request(project, sha, workflow)) for workflow in workflows]
    run_ids = [item.run.run_id for item in created]
    base = split_id(run_ids[0])[0]
    assert run_ids == [base, f"{base}-2", f"{base}-3", f"{base}-4", f"{base}-5"]
    assert [item.run.workflow_type for item in created] == workflows
    assert all(item.created for item in created)


def test_concurrent_creates_of_one_commit_all_succeed_with_distinct_ids(
    devstack: DevStack, project: str
) -> None:
    sha = new_sha()

    def creator(make_store: Callable[[], RunStore]) -> Callable[[], CreatedRun]:
        def create() -> CreatedRun:
            store = make_store()
            try:
                return store.create_run(request(project, sha))
            finally:
                store.close()

        return create

    stores: list[Callable[[], RunStore]] = [lambda: PgStore(devstack.database_url)] * 8
    stores += [lambda: rest_store(devstack.url, devstack.service_role_key)] * 4
    wait_for_a_fresh_second()
    created = in_parallel([creator(make) for make in stores])
    run_ids = [item.run.run_id for item in created]
    assert len(set(run_ids)) == len(stores)
    assert_numbered_from_one(run_ids, sha)


def test_the_same_idempotency_key_returns_the_same_run(backend: Backend, project: str) -> None:
    key = unique_id("deploy-key")
    sha = new_sha()
    first = backend.store.create_run(request(project, sha, "deploy", key))
    again = backend.store.create_run(request(project, sha, "deploy", key))
    assert (first.created, again.created) == (True, False)
    # event_seq aside: the row create_run returns predates its own "Run queued" event.
    assert again.run.model_copy(update={"event_seq": 0}) == first.run.model_copy(update={"event_seq": 0})


def test_concurrent_creates_with_one_key_make_one_run(
    devstack: DevStack, db: psycopg.Connection[Any], project: str
) -> None:
    key = unique_id("race-key")
    sha = new_sha()

    def create(make_store: Callable[[], RunStore]) -> Callable[[], CreatedRun]:
        def go() -> CreatedRun:
            store = make_store()
            try:
                return store.create_run(request(project, sha, "deploy", key))
            finally:
                store.close()

        return go

    makers: list[Callable[[], RunStore]] = [lambda: PgStore(devstack.database_url)] * 6
    makers += [lambda: rest_store(devstack.url, devstack.service_role_key)] * 4
    results = in_parallel([create(make) for make in makers])
    assert len({item.run.run_id for item in results}) == 1
    assert [item.created for item in results].count(True) == 1
    count = db.execute("SELECT count(*) FROM ops.runs WHERE idempotency_key = %s", (key,)).fetchone()
    assert count == (1,)


@pytest.mark.parametrize(
    "change",
    [{"workflow": "build"}, {"sha": "other"}, {"env": "prod"}],
    ids=["workflow", "commit", "environment"],
)
def test_a_key_reused_for_a_different_run_is_refused(
    backend: Backend, project: str, change: dict[str, str]
) -> None:
    key = unique_id("reused-key")
    sha = new_sha()
    backend.store.create_run(request(project, sha, "deploy", key))
    different = CreateRunRequest(
        project_id=project,
        workflow_type=change.get("workflow", "deploy"),
        git_ref="main",
        git_sha=new_sha() if "sha" in change else sha,
        env_id=change.get("env", "dev"),
        idempotency_key=key,
    )
    with pytest.raises(StateConflictError, match="was already used for run"):
        backend.store.create_run(different)


def test_a_reused_key_answers_409_over_rest(devstack: DevStack, project: str) -> None:
    key = unique_id("http-key")
    body = {"project_id": project, "workflow_type": "deploy", "git_ref": "main", "git_sha": new_sha()}
    body["idempotency_key"] = key
    url = f"{devstack.url}/rest/v1/rpc/create_run"
    headers = rest_headers(devstack.service_role_key)
    assert httpx.post(url, json=body, headers=headers).status_code == 200
    conflict = httpx.post(url, json={**body, "workflow_type": "build"}, headers=headers)
    assert (conflict.status_code, conflict.json()["code"]) == (409, "PT409")
