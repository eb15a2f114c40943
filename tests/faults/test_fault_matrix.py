"""The fault matrix: every write through a real TCP proxy that loses answers after the commit.

The clients are the real ones (``odooops create``/``destroy`` in-process, the REST store a worker
uses, real worker processes for the events), the network between them and the REST server is the
fault proxy (tests/devstack/faultproxy.py), and the database is checked afterwards: no duplicate
run, event, artifact or claim, no orphan run, and every message true. The figures (requests,
faults injected per kind, duplicates, orphans) are printed in the terminal summary.
"""

from __future__ import annotations

import re
import secrets
import signal
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest

from odooops_action.config import ConnectionSettings
from odooops_action.domain import new_key
from odooops_action.errors import OdooOpsError
from odooops_action.models import ClaimFilter, NewArtifact, NewEvent
from odooops_action.store.base import RunStore
from odooops_action.store.pg import PgStore
from odooops_action.store.rest import RestStore
from tests.devstack import DevStack
from tests.devstack.faultproxy import FaultProxy
from tests.faults.conftest import CliResult, InProcessCli, run_ids_of
from tests.faults.figures import Figures, publish
from tests.worker.helpers import WorkerFactory, new_project, queue_runs, wait_until, write_script

pytestmark = pytest.mark.slow

RATE = 0.3
BULK_KINDS = {"503": 1.0, "520": 1.0, "520_after": 1.0, "reset": 1.0, "drop_after": 1.0, "delay": 1.0}
AFTER_COMMIT_KINDS = ("520_after", "drop_after")
THREADS = 8
KEY_IN_MESSAGE = re.compile(r"--idempotency-key[ =]'?\"?([A-Za-z0-9][A-Za-z0-9._:/@+-]*)")


def proxied_store(proxy: FaultProxy, devstack: DevStack) -> RestStore:
    return RestStore(ConnectionSettings(supabase_url=proxy.url, supabase_key=devstack.service_role_key))


def new_sha() -> str:
    return secrets.token_hex(20)


def status_events(db: psycopg.Connection[Any], run_id: str, to: str) -> int:
    row = db.execute(
        "SELECT count(*) FROM ops.run_events WHERE run_id = %s AND payload->>'kind' = 'status' "
        "AND payload->>'to' = %s",
        (run_id, to),
    ).fetchone()
    assert row is not None
    return int(row[0])


def run_status(db: psycopg.Connection[Any], run_id: str) -> tuple[str, str | None, int]:
    row = db.execute(
        "SELECT status, claimed_by, attempt FROM ops.runs WHERE run_id = %s", (run_id,)
    ).fetchone()
    assert row is not None, run_id
    return str(row[0]), row[1], int(row[2])


# ------------------------------------------------------------------------------------------------
# Each write, with its answer lost after the commit
# ------------------------------------------------------------------------------------------------


class AfterCommitCase:
    """One write whose answer the proxy loses after the server applied it; returns problems found."""

    def __init__(
        self, db: psycopg.Connection[Any], direct: RunStore, store: RunStore, cli: InProcessCli
    ) -> None:
        self.db, self.direct, self.store, self.cli = db, direct, store, cli
        self.projects: list[str] = []
        self.project = ""

    def fresh_project(self) -> None:
        """Each case gets its own project, so whatever a case leaves behind cannot mislead another."""
        self.project = new_project(self.db)
        self.projects.append(self.project)

    def drop_projects(self) -> None:
        for project in self.projects:
            self.db.execute("DELETE FROM ops.projects WHERE project_id = %s", (project,))

    def queued(self) -> str:
        return queue_runs(self.db, self.project, 1)[0]

    def claimed(self, worker: str) -> str:
        run_id = self.queued()
        claimed = self.direct.claim_next_run(worker, ClaimFilter(project_id=self.project))
        assert claimed is not None
        assert claimed.run_id == run_id
        return run_id

    def running(self, worker: str) -> str:
        run_id = self.claimed(worker)
        self.direct.start_run(run_id, worker)
        return run_id

    def create_run(self) -> list[str]:
        sha = new_sha()
        result = self.cli("create", self.project, "build", "main", sha)
        runs = [run_id for run_id, run_sha in run_ids_of(self.db, self.project) if run_sha == sha]
        return create_problems(sha, result, runs)

    def cancel_run(self) -> list[str]:
        run_id = self.queued()
        return destroy_problems(self.db, run_id, [self.cli("destroy", run_id)])

    def claim_next_run(self) -> list[str]:
        run_id = self.queued()
        worker = f"fm-claimer-{secrets.token_hex(3)}"
        claimed = self.store.claim_next_run(worker, ClaimFilter(project_id=self.project))
        status, holder, attempt = run_status(self.db, run_id)
        problems = []
        if claimed is None or claimed.run_id != run_id:
            problems.append(
                f"orphan: the claim answered {claimed and claimed.run_id}; the run is {status} by {holder}"
            )
        if attempt != 1:
            problems.append(f"duplicate: the run was claimed {attempt} times")
        return problems

    def start_run(self) -> list[str]:
        worker = "fm-starter"
        run_id = self.claimed(worker)
        self.store.start_run(run_id, worker)
        return transition_problems(self.db, run_id, "running")

    def heartbeat_run(self) -> list[str]:
        worker = "fm-heart"
        run_id = self.running(worker)
        self.store.heartbeat_run(run_id, worker)
        status, holder, _ = run_status(self.db, run_id)
        return (
            []
            if (status, holder) == ("running", worker)
            else [f"failed: after the heartbeat the run is {status} by {holder}"]
        )

    def finish_run(self) -> list[str]:
        worker = "fm-finisher"
        run_id = self.running(worker)
        self.store.finish_run(run_id, worker, "success", 0)
        return transition_problems(self.db, run_id, "success")

    def append_events(self) -> list[str]:
        worker = "fm-writer"
        run_id = self.running(worker)
        marker = secrets.token_hex(4)
        events = [NewEvent(level="info", message=f"{marker} {i}", payload={}) for i in range(3)]
        self.store.append_events(run_id, events)
        stored = self.db.execute(
            "SELECT message FROM ops.run_events WHERE run_id = %s AND message LIKE %s ORDER BY seq",
            (run_id, f"{marker} %"),
        ).fetchall()
        messages = [row[0] for row in stored]
        expected = [event.message for event in events]
        return (
            [] if messages == expected else [f"duplicate: 3 events sent, {len(messages)} stored: {messages}"]
        )

    def add_artifact(self) -> list[str]:
        worker = "fm-artist"
        run_id = self.running(worker)
        self.store.add_artifact(run_id, NewArtifact(artifact_type="logs", storage_path=f"s3://b/{run_id}"))
        row = self.db.execute("SELECT count(*) FROM ops.artifacts WHERE run_id = %s", (run_id,)).fetchone()
        assert row is not None
        return [] if row[0] == 1 else [f"duplicate: 1 artifact sent, {row[0]} stored"]


def transition_problems(db: psycopg.Connection[Any], run_id: str, to: str) -> list[str]:
    status, _, _ = run_status(db, run_id)
    changes = status_events(db, run_id, to)
    if (status, changes) == (to, 1):
        return []
    kind = "duplicate" if changes > 1 else "failed"
    return [f"{kind}: wanted {to} once: the run is {status}, {changes} status change(s) to {to}"]


def create_problems(sha: str, result: CliResult, runs: list[str]) -> list[str]:
    """What is wrong with one ``odooops create`` whose commit ``sha`` is unique to it."""
    problems = []
    printed = result.stdout.strip()
    if len(runs) > 1:
        problems.append(f"duplicate: create of {sha[:7]} queued {len(runs)} runs {runs}")
    if result.code == 0:
        if runs != [printed]:
            problems.append(f"untrue: create of {sha[:7]} printed {printed!r}, the database has {runs}")
        if "already" in result.stderr:
            problems.append(f"untrue: create of {sha[:7]} queued the run but said: {result.stderr.strip()}")
    elif runs and not KEY_IN_MESSAGE.search(result.stderr):
        problems.append(
            f"orphan: create of {sha[:7]} exited {result.code} but run {runs[0]} is queued; "
            f"it said: {result.stderr.strip()}"
        )
    return problems


def destroy_problems(db: psycopg.Connection[Any], run_id: str, tries: list[CliResult]) -> list[str]:
    """What is wrong with ``odooops destroy`` run as a user would: again after a failure, until it works.

    The first try that succeeds must say it cancelled the run, unless an earlier failed try may
    have done it (then "already cancelled" is true too); a failed try must not claim success.
    """
    status, _, _ = run_status(db, run_id)
    problems = []
    *failed, last = tries
    if last.code != 0 or last.stdout.strip() != f"cancelled:{run_id}":
        problems.append(
            f"failed: destroy {run_id} exited {last.code} {len(tries)} times: {last.stderr.strip()}"
        )
    elif f"Run {run_id} cancelled." not in last.stderr and not (
        failed and "already cancelled" in last.stderr
    ):
        problems.append(f"untrue: destroy {run_id} cancelled it but said: {last.stderr.strip()}")
    problems += [f"untrue: a failed destroy printed {t.stdout.strip()!r}" for t in failed if t.stdout.strip()]
    if status != "cancelled" or status_events(db, run_id, "cancelled") != 1:
        problems.append(f"failed: destroy {run_id}: the run is {status}")
    return problems


def destroy_like_a_user(odooops: InProcessCli, run_id: str, tries: int = 5) -> list[CliResult]:
    results = [odooops("destroy", run_id)]
    while results[-1].code != 0 and len(results) < tries:
        results.append(odooops("destroy", run_id))
    return results


WRITES: tuple[str, ...] = (
    "create_run",
    "append_events",
    "add_artifact",
    "claim_next_run",
    "start_run",
    "heartbeat_run",
    "finish_run",
    "cancel_run",
)


def test_each_write_whose_answer_is_lost_after_the_commit_takes_effect_once_and_says_so(
    proxy: FaultProxy,
    devstack: DevStack,
    db: psycopg.Connection[Any],
    odooops: InProcessCli,
) -> None:
    figures = Figures("after-commit fault on each write", operations=len(WRITES) * len(AFTER_COMMIT_KINDS))
    started = time.monotonic()
    with PgStore(devstack.database_url) as direct, proxied_store(proxy, devstack) as store:
        case = AfterCommitCase(db, direct, store, odooops)
        for write in WRITES:
            for kind in AFTER_COMMIT_KINDS:
                case.fresh_project()
                proxy.force(kind, path=rf"/rpc/{write}(_v\d+)?$")
                try:
                    problems = getattr(case, write)()
                except OdooOpsError as error:
                    problems = [f"failed: raised {type(error).__name__}: {error}"]
                proxy.clear_forced()
                figures.count(problems, prefix=f"{write} / {kind}: ")
        case.drop_projects()
    figures.add_proxy(proxy.stats())
    figures.seconds = time.monotonic() - started
    publish(figures)
    assert proxy.stats().faults == dict.fromkeys(AFTER_COMMIT_KINDS, len(WRITES)), "a fault did not fire"
    assert not figures.details, figures.report()


def test_a_create_whose_every_try_fails_after_queuing_the_run_names_the_key_that_finds_it(
    proxy: FaultProxy, db: psycopg.Connection[Any], fault_project: str, odooops: InProcessCli
) -> None:
    """The first try is applied but its answer lost, the store's retries all fail: exit 1, and then?

    A script that retries on exit 1 queues the run twice unless the message gives it the key.
    """
    sha = new_sha()
    proxy.force("drop_after", path=r"/rpc/create_run$")
    proxy.force("503", path=r"/rpc/create_run$", times=10)
    failed = odooops("create", fault_project, "build", "main", sha)
    proxy.clear_forced()
    runs = [run_id for run_id, run_sha in run_ids_of(db, fault_project) if run_sha == sha]
    assert failed.code != 0
    assert len(runs) == 1
    assert KEY_IN_MESSAGE.search(failed.stderr), (
        f"run {runs[0]} is queued but the failed create does not say how to find it: {failed.stderr.strip()}"
    )
    assert _follow_the_message(odooops, fault_project, sha, failed, runs) == []


# ------------------------------------------------------------------------------------------------
# 500 creates, 100 destroys, 50 claims at 30 % faults
# ------------------------------------------------------------------------------------------------


def _creates(
    odooops: InProcessCli, project: str, count: int, *, threads: int = THREADS
) -> list[tuple[str, CliResult]]:
    def one(_: int) -> tuple[str, CliResult]:
        sha = new_sha()
        return sha, odooops("create", project, "build", "main", sha)

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, range(count)))


def _judge_creates(
    figures: Figures,
    db: psycopg.Connection[Any],
    odooops: InProcessCli,
    project: str,
    results: list[tuple[str, CliResult]],
) -> None:
    by_sha: dict[str, list[str]] = {}
    for run_id, sha in run_ids_of(db, project):
        by_sha.setdefault(sha, []).append(run_id)
    intended = {sha for sha, _ in results}
    strays = [run_id for sha, runs in by_sha.items() if sha not in intended for run_id in runs]
    figures.orphans += len(strays)
    for sha, result in results:
        runs = by_sha.get(sha, [])
        figures.failed_operations += result.code != 0
        problems = create_problems(sha, result, runs)
        if result.code != 0 and runs and not problems:
            problems = _follow_the_message(odooops, project, sha, result, runs)
        figures.duplicates += max(0, len(runs) - 1)
        figures.orphans += any(p.startswith("orphan") for p in problems)
        figures.untrue_messages += any(p.startswith("untrue") for p in problems)
        figures.details.extend(problems)


def _follow_the_message(
    odooops: InProcessCli, project: str, sha: str, failed: CliResult, runs: list[str]
) -> list[str]:
    """A create failed but may have queued the run and named its key: re-running with it finds it."""
    found = KEY_IN_MESSAGE.search(failed.stderr)
    assert found is not None
    for _ in range(5):
        again = odooops("create", project, "build", "main", sha, "--idempotency-key", found.group(1))
        if again.code == 0:
            if again.stdout.strip() != runs[0]:
                return [f"orphan: re-running with key {found.group(1)} printed {again.stdout.strip()!r}"]
            return []
    return [f"orphan: re-running with key {found.group(1)} kept failing: {again.stderr.strip()}"]


def test_500_creates_at_30_percent_faults_queue_each_run_once_and_say_so(
    proxy: FaultProxy, db: psycopg.Connection[Any], fault_project: str, odooops: InProcessCli
) -> None:
    figures = Figures("500 x odooops create, 30 % faults (delays 0.05-0.2 s)", operations=500)
    started = time.monotonic()
    proxy.configure(rate=RATE, kinds=BULK_KINDS, delay=(0.05, 0.2))
    results = _creates(odooops, fault_project, 500)
    proxy.configure(rate=0.0)
    figures.add_proxy(proxy.stats())
    _judge_creates(figures, db, odooops, fault_project, results)
    figures.seconds = time.monotonic() - started
    publish(figures)
    assert figures.faults.total() > 0.2 * figures.requests, "the proxy injected fewer faults than asked"
    assert figures.clean, figures.report()


def test_creates_answered_2_to_5_seconds_late_queue_each_run_once(
    proxy: FaultProxy, db: psycopg.Connection[Any], fault_project: str, odooops: InProcessCli
) -> None:
    figures = Figures("12 x odooops create, every create_run answer held 2-5 s", operations=12)
    started = time.monotonic()
    proxy.configure(rate=1.0, kinds={"delay": 1.0}, delay=(2.0, 5.0))
    results = _creates(odooops, fault_project, 12, threads=12)
    proxy.configure(rate=0.0)
    figures.add_proxy(proxy.stats())
    _judge_creates(figures, db, odooops, fault_project, results)
    figures.seconds = time.monotonic() - started
    publish(figures)
    assert figures.faults["delay"] >= 12
    assert figures.failed_operations == 0, figures.report()
    assert figures.clean, figures.report()


def test_100_destroys_at_30_percent_faults_cancel_each_run_and_say_who_did(
    proxy: FaultProxy, db: psycopg.Connection[Any], fault_project: str, odooops: InProcessCli
) -> None:
    figures = Figures("100 x odooops destroy, 30 % faults", operations=100)
    run_ids = queue_runs(db, fault_project, 100)
    started = time.monotonic()
    proxy.configure(rate=RATE, kinds=BULK_KINDS, delay=(0.05, 0.2))
    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(lambda run_id: destroy_like_a_user(odooops, run_id), run_ids))
    proxy.configure(rate=0.0)
    figures.add_proxy(proxy.stats())
    for run_id, tries in zip(run_ids, results, strict=True):
        figures.failed_operations += sum(result.code != 0 for result in tries)
        figures.count(destroy_problems(db, run_id, tries))
    figures.seconds = time.monotonic() - started
    publish(figures)
    assert figures.faults.total() > 0
    assert not figures.details, figures.report()


def test_50_claims_at_30_percent_faults_claim_each_run_once_and_lose_none(
    proxy: FaultProxy, devstack: DevStack, db: psycopg.Connection[Any], fault_project: str
) -> None:
    """A worker's claim loop over REST: claim until the queue is empty, retrying what fails."""
    figures = Figures("50 x claim_next_run, 30 % faults", operations=50)
    run_ids = set(queue_runs(db, fault_project, 50))
    worker = f"fm-worker-{secrets.token_hex(3)}"
    returned: list[str] = []
    started = time.monotonic()
    proxy.configure(rate=RATE, kinds=BULK_KINDS, delay=(0.05, 0.2))
    token = new_key("claim")  # as the worker does: kept until a claim is answered
    with proxied_store(proxy, devstack) as store:
        while time.monotonic() - started < 120:
            try:
                claimed = store.claim_next_run(
                    worker, ClaimFilter(project_id=fault_project), claim_token=token
                )
            except OdooOpsError:
                figures.failed_operations += 1  # the loop goes on, as a worker's does
                continue
            token = new_key("claim")
            if claimed is None:
                break
            returned.append(claimed.run_id)
    proxy.configure(rate=0.0)
    figures.add_proxy(proxy.stats())
    rows = db.execute(
        "SELECT run_id, status, claimed_by, attempt FROM ops.runs WHERE project_id = %s", (fault_project,)
    ).fetchall()
    held = {run_id for run_id, status, holder, _ in rows if status == "claimed" and holder == worker}
    twice = Counter(returned)
    figures.duplicates = sum(n - 1 for n in twice.values()) + sum(a - 1 for *_, a in rows if a > 1)
    unknown = sorted(held - set(returned))
    figures.orphans = len(unknown) + len(run_ids - held)
    figures.details += [f"run {r} is claimed by {worker}, whose claim loop never got it" for r in unknown]
    figures.details += [f"run {r} was never claimed" for r in sorted(run_ids - held)]
    figures.seconds = time.monotonic() - started
    publish(figures)
    assert figures.faults.total() > 0
    assert (figures.duplicates, figures.orphans) == (0, 0), figures.report()
    assert sorted(returned) == sorted(run_ids)


# ------------------------------------------------------------------------------------------------
# 20 runs x 2,000 lines through real workers over REST
# ------------------------------------------------------------------------------------------------

LINES = 2000
ARTIFACTS = 3
RUNS = 20
WAITED = 4


def _chatty_command(tmp_path: Path) -> str:
    """Prints LINES numbered lines in bursts (so the worker sends several batches) and 3 artifacts."""
    return write_script(
        tmp_path,
        "chatty.sh",
        "python3 - \"$1\" <<'PY'\n"
        "import json, os, sys, time\n"
        "run_id = sys.argv[1]\n"
        f"for i in range(1, {LINES + 1}):\n"
        "    print(f'{run_id} line {i}', flush=(i % 50 == 0))\n"
        "    if i % 100 == 0:\n"
        "        time.sleep(0.05)\n"
        "with open(os.environ['ODOOOPS_ARTIFACTS_FILE'], 'a') as out:\n"
        f"    for n in range({ARTIFACTS}):\n"
        "        path = f's3://b/{run_id}/{n}'\n"
        "        out.write(json.dumps({'artifact_type': 'logs', 'storage_path': path}) + '\\n')\n"
        "PY\n",
    )


def test_20_runs_of_2000_lines_through_workers_at_30_percent_faults_store_each_line_once(  # noqa: PLR0917
    proxy: FaultProxy,
    devstack: DevStack,
    db: psycopg.Connection[Any],
    fault_project: str,
    workers: WorkerFactory,
    tmp_path: Path,
    odooops: InProcessCli,
) -> None:
    """Two workers execute the runs while ``odooops wait`` follows some of them, all through the proxy."""
    figures = Figures(
        f"{RUNS} runs x {LINES} lines via 2 REST workers + {WAITED} waits, 30 % faults",
        operations=RUNS + WAITED,
    )
    run_ids = queue_runs(db, fault_project, RUNS)
    command = _chatty_command(tmp_path)
    env = {"SUPABASE_URL": proxy.url, "SUPABASE_SERVICE_ROLE_KEY": devstack.service_role_key}
    options = ["--project", fault_project, "--command", command, "--concurrency", "3"]
    options += ["--poll-interval", "0.2", "--heartbeat-interval", "1"]
    started = time.monotonic()
    proxy.configure(rate=RATE, kinds=BULK_KINDS, delay=(0.05, 0.2))
    with ThreadPoolExecutor(WAITED) as pool:
        waits = [pool.submit(odooops, "wait", run_id, "240", "0.2") for run_id in run_ids[:WAITED]]
        started_workers = [workers(*options, "--worker-name", f"fm-w{n}", env=env) for n in (1, 2)]
        _wait_for_the_runs(figures, db, fault_project)
        waited = [future.result(timeout=240) for future in waits]
    proxy.configure(rate=0.0)
    for worker in started_workers:
        worker.signal(signal.SIGTERM)
        worker.wait(60)
    figures.add_proxy(proxy.stats())
    _judge_runs(figures, db, run_ids)
    for run_id, result in zip(run_ids, waited, strict=False):
        figures.count(_wait_problems(run_id, result))
    figures.seconds = time.monotonic() - started
    publish(figures)
    assert figures.faults.total() > 0
    assert not figures.details, figures.report()


def _wait_for_the_runs(figures: Figures, db: psycopg.Connection[Any], project: str) -> None:
    def all_finished() -> bool:
        row = db.execute(
            "SELECT count(*) FROM ops.runs WHERE project_id = %s "
            "AND status IN ('success', 'failed', 'cancelled')",
            (project,),
        ).fetchone()
        return row is not None and row[0] == RUNS

    try:
        wait_until(all_finished, 240, "every run to finish", interval=0.5)
    except AssertionError as timeout:
        figures.details.append(f"failed: {timeout}")


def _wait_problems(run_id: str, result: CliResult) -> list[str]:
    """``odooops wait`` must end in success, print the run's artifact and every line once, in order."""
    problems = []
    if result.code != 0 or not result.stdout.startswith(f"s3://b/{run_id}/"):
        problems.append(f"failed: wait {run_id} exited {result.code} printing {result.stdout.strip()!r}")
    pattern = rf"^\[info\] {re.escape(run_id)} line (\d+)$"
    printed = [int(n) for n in re.findall(pattern, result.stderr, re.MULTILINE)]
    repeated = len(printed) - len(set(printed))
    if repeated:
        problems.append(f"duplicate: wait {run_id} printed {repeated} lines twice")
    elif printed != list(range(1, LINES + 1)):
        problems.append(f"failed: wait {run_id} printed {len(printed)} of {LINES} lines, or out of order")
    return problems


def _judge_runs(figures: Figures, db: psycopg.Connection[Any], run_ids: list[str]) -> None:
    for run_id in run_ids:
        status, _, attempt = run_status(db, run_id)
        lines = [
            row[0]
            for row in db.execute(
                "SELECT message FROM ops.run_events WHERE run_id = %s AND payload->>'stream' = 'stdout' "
                "ORDER BY seq",
                (run_id,),
            ).fetchall()
        ]
        expected = [f"{run_id} line {i}" for i in range(1, LINES + 1)]
        artifacts = Counter(
            row[0]
            for row in db.execute("SELECT storage_path FROM ops.artifacts WHERE run_id = %s", (run_id,))
        )
        extra_lines = len(lines) - len(set(lines))
        extra_artifacts = sum(artifacts.values()) - len(artifacts)
        figures.duplicates += extra_lines + extra_artifacts + max(0, attempt - 1)
        if status != "success" or attempt != 1:
            figures.details.append(f"run {run_id}: {status} after {attempt} attempt(s)")
        if extra_lines:
            figures.details.append(f"run {run_id}: {extra_lines} duplicate lines")
        elif lines != expected:
            figures.details.append(f"run {run_id}: {len(lines)} of {LINES} lines stored, or out of order")
        if len(artifacts) != ARTIFACTS or extra_artifacts:
            figures.details.append(f"run {run_id}: artifacts {dict(artifacts)}")
