"""``odooops selftest``: the seed's end-to-end suite (``test_e2e.sh``) against YOUR deployment.

The twelve scenarios of the seed, in its order and with its wording (``[TEST] Test N: …``,
``[PASS] …`` / ``[FAIL] …``, ``PASSED: N`` / ``FAILED: N``), then the checks the seed lacks
(tests 13 to 18). Everything goes through the configured connection (REST with a key, or
``DATABASE_URL``) and the ``ops.*`` functions, so it proves what the Action and the workers use.

Only its own data: a project ``selftest-<UTC time>-<random>`` (metadata ``created_by: odooops
selftest`` and a random nonce) with one environment; its runs are reserved for its own worker id
(``metadata.selftest_worker``: a real worker's claim skips them, see the migration), and the
selftest plays the worker itself (claim, start, events, artifact, finish). On exit — success,
failure, Ctrl-C or SIGTERM — ``ops.delete_selftest_project`` removes the project and everything
in it, and refuses any project without that nonce. ``--keep`` leaves it for inspection and prints
how to remove it.

Exit 0 when every check passed (skipped ones do not count), 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Literal

from odooops_action.errors import OdooOpsError

if TYPE_CHECKING:
    from odooops_action.models import Run
    from odooops_action.store.base import FinalStatus, RunStore

Outcome = Literal["pass", "fail", "skip"]
Connect = Callable[[argparse.Namespace], Any]

RUN_ID = re.compile(r"^run-\d{8}-\d{6}-[0-9a-f]{7}(-[1-9]\d{0,3})?$")
CREATOR = "odooops selftest"
ENV_ID = "selftest"
WAIT_SECONDS = 30.0


@dataclass
class Result:
    outcome: Outcome
    message: str


@dataclass
class TestRecord:
    number: int
    title: str
    results: list[Result] = field(default_factory=list)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during the selftest (cleanup still runs)."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name


class CheckFailed(Exception):
    """A check's assertion did not hold; the message says what was seen."""


def register(commands: Any, parents: list[argparse.ArgumentParser], connect: Connect) -> None:
    selftest = commands.add_parser(
        "selftest",
        parents=parents,
        help="the end-to-end suite against this deployment (cleans up after itself)",
    )
    selftest.add_argument(
        "--keep", action="store_true", help="keep the selftest's project and runs for inspection"
    )
    selftest.set_defaults(handler=lambda options: selftest_command(options, connect))


# Checks a later feature adds (for example scoped tokens) register here: (title, check). A check
# returns the PASS message, raises CheckFailed, or raises SkipCheck with the reason.
class SkipCheck(Exception):
    """The check does not apply to this deployment or connection."""


ExtraCheck = Callable[["Selftest"], str]
EXTRA_CHECKS: list[tuple[str, ExtraCheck]] = []


def selftest_command(options: argparse.Namespace, connect: Connect) -> int:
    report = Report(json_mode=options.json)
    suite = Selftest(report, environ=dict(os.environ) | _dotenv())
    with _signals_interrupt():
        try:
            with connect(options) as store:
                suite.store = store
                try:
                    suite.run_all()
                finally:
                    with _signals_deferred():
                        suite.clean_up(keep=options.keep)
        except Interrupted as stop:
            left = "its data was kept (--keep)" if suite.kept else "the selftest's data was removed"
            report.fail_current(f"interrupted by {stop.signal_name}; {left}")
        except OdooOpsError as error:
            # The connection could not even be opened (configuration, anon key, unreachable).
            report.fail_current(_one_line(str(error)))
    report.summary(suite)
    return 0 if report.failed == 0 and report.passed > 0 else 1


def _dotenv() -> dict[str, str]:
    from odooops_action.config import read_dotenv

    return read_dotenv(Path(".env"))


# -- the report -------------------------------------------------------------------------------------


class Report:
    def __init__(self, *, json_mode: bool) -> None:
        self.json_mode = json_mode
        self.tests: list[TestRecord] = []

    def start(self, number: int, title: str) -> None:
        self.tests.append(TestRecord(number, title))
        self._emit(f"[TEST] Test {number}: {title}")

    def record(self, outcome: Outcome, message: str) -> None:
        if not self.tests:
            self.start(1, SEED_TITLES[0])
        self.tests[-1].results.append(Result(outcome, message))
        self._emit(f"[{outcome.upper()}] {message}")

    def fail_current(self, message: str) -> None:
        self.record("fail", message)

    @property
    def passed(self) -> int:
        return self._count("pass")

    @property
    def failed(self) -> int:
        return self._count("fail")

    @property
    def skipped(self) -> int:
        return self._count("skip")

    def _count(self, outcome: Outcome) -> int:
        return sum(1 for test in self.tests for result in test.results if result.outcome == outcome)

    def summary(self, suite: Selftest) -> None:
        if self.json_mode:
            from odooops_action.operator.output import print_json

            print_json(
                {
                    "passed": self.passed,
                    "failed": self.failed,
                    "skipped": self.skipped,
                    "project_id": suite.project_id,
                    "kept": suite.kept,
                    "transport": suite.transport,
                    "tests": [asdict(test) for test in self.tests],
                }
            )
            return
        bar = "=" * 42
        lines = ["", bar, "E2E Test Suite Summary", bar, f"PASSED: {self.passed}", f"FAILED: {self.failed}"]
        if self.skipped:
            lines.append(f"SKIPPED: {self.skipped}")
        lines.append(bar)
        lines.append("All tests passed!" if self.failed == 0 and self.passed else "Some tests failed.")
        for line in lines:
            self._emit(line)

    def _emit(self, line: str) -> None:
        if self.json_mode:
            return
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


# -- the suite ----------------------------------------------------------------------------------------

SEED_TITLES = (
    "Create test project in ops.projects",
    "Create test environment in ops.environments",
    "Create queued run using env_create.sh (odooops create)",
    "Verify run status is 'queued'",
    "Simulate worker claiming run",
    "Add log events to ops.run_events",
    "Mark run as running",
    "Add artifact to ops.artifacts",
    "Mark run as success",
    "Test env_wait_ready.sh (odooops wait) with completed run",
    "Create another run and cancel it",
    "Create run, mark as failed, verify wait_ready detects it",
)


class Selftest:
    def __init__(self, report: Report, environ: dict[str, str]) -> None:
        self.report = report
        self.environ = environ
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        self.project_id = f"selftest-{stamp}-{secrets.token_hex(4)}"
        self.nonce = secrets.token_hex(16)
        self.worker_id = f"selftest-worker-{secrets.token_hex(6)}"
        self.store: RunStore | None = None
        self.created_project = False
        self.kept = False
        self.run: Run | None = None
        self.attempts: dict[str, int] = {}  # run id -> the attempt this selftest's claim holds

    @property
    def transport(self) -> str:
        from odooops_action.store.rest import RestStore

        return "rest" if isinstance(self.store, RestStore) else "postgres"

    @property
    def db(self) -> RunStore:
        assert self.store is not None
        return self.store

    def run_all(self) -> None:
        seed_ok = self._seed()
        if seed_ok is None:
            return  # the project could not be set up: nothing else can run
        number = 13
        for title, check in [*_OWN_CHECKS, *EXTRA_CHECKS]:
            self._check(number, title, check)
            number += 1

    # -- the seed's scenarios

    def _seed(self) -> bool | None:
        steps: list[Callable[[], str | list[str]]] = [
            self._create_project,
            self._create_environment,
            self._create_run,
            self._verify_queued,
            self._claim,
            self._log_events,
            self._mark_running,
            self._add_artifact,
            self._mark_success,
            self._wait_success,
            self._cancel_another,
            self._failure_detected,
        ]
        chain_broken = False
        for number, (title, step) in enumerate(zip(SEED_TITLES, steps, strict=True), start=1):
            if chain_broken and 3 <= number <= 10:
                continue  # tests 4-10 follow the run of test 3
            self.report.start(number, title)
            try:
                messages = step()
            except (CheckFailed, OdooOpsError) as error:
                self.report.record("fail", _one_line(str(error)))
                if number <= 2:
                    return None
                chain_broken = chain_broken or number <= 10
                continue
            for message in [messages] if isinstance(messages, str) else messages:
                self.report.record("pass", message)
        return not chain_broken

    def _create_project(self) -> str:
        from odooops_action.operator.calls import call

        metadata = {"created_by": CREATOR, "selftest_nonce": self.nonce}
        call(
            self.db,
            "create_project",
            {"project_id": self.project_id, "name": "odooops selftest", "metadata": metadata},
        )
        self.created_project = True
        return f"Project created successfully: {self.project_id}"

    def _create_environment(self) -> str:
        from odooops_action.operator.calls import call

        call(
            self.db,
            "create_environment",
            {"project_id": self.project_id, "env_id": ENV_ID, "name": "selftest"},
        )
        return "Environment created successfully"

    def new_run(self, idempotency_key: str | None = None, sha: str | None = None) -> Run:
        from odooops_action.domain import CreateRunRequest

        request = CreateRunRequest(
            project_id=self.project_id,
            workflow_type="build",
            git_ref="selftest",
            git_sha=sha or secrets.token_hex(20),
            env_id=ENV_ID,
            created_by=CREATOR,
            idempotency_key=idempotency_key,
            metadata={"selftest_worker": self.worker_id},
        )
        return self.db.create_run(request).run

    def _create_run(self) -> list[str]:
        self.run = self.new_run()
        created = f"Run created with ID: {self.run.run_id}"
        well_formed = RUN_ID.fullmatch(self.run.run_id) is not None
        expect(well_formed, f"{created}, but not in the format run-YYYYMMDD-HHMMSS-<sha7>")
        return [created, "Run ID has the format run-YYYYMMDD-HHMMSS-<sha7>"]

    def current(self) -> Run:
        assert self.run is not None
        return self.db.poll_run(self.run.run_id, max_events=0).run

    def _verify_queued(self) -> str:
        status = self.current().status
        expect(status == "queued", f"run status is {status!r}, expected 'queued'")
        return "Run status is 'queued'"

    def claim(self, run: Run) -> Run:
        from odooops_action.models import ClaimFilter

        claimed = self.db.claim_next_run(
            self.worker_id, ClaimFilter(project_id=self.project_id, env_id=ENV_ID)
        )
        expect(claimed is not None, "claim_next_run returned no run although the selftest's run is queued")
        assert claimed is not None
        expect(claimed.run_id == run.run_id, f"claimed {claimed.run_id}, expected {run.run_id}")
        self.attempts[claimed.run_id] = claimed.attempt
        return claimed

    def start(self, run_id: str) -> Run:
        return self.db.start_run(run_id, self.worker_id, attempt=self.attempts[run_id]).run

    def finish(self, run_id: str, status: FinalStatus, exit_code: int, reason: str | None = None) -> Run:
        attempt = self.attempts[run_id]
        return self.db.finish_run(run_id, self.worker_id, status, exit_code, reason, attempt=attempt).run

    def _claim(self) -> str:
        assert self.run is not None
        claimed = self.claim(self.run)
        expect(
            claimed.status == "claimed" and claimed.claimed_by == self.worker_id, f"run is {claimed.status}"
        )
        return "Run claimed by worker"

    def _log_events(self) -> str:
        from odooops_action.models import NewEvent

        assert self.run is not None
        events = [
            NewEvent(level="info", message="Starting build process"),
            NewEvent(level="debug", message="Layer 1/5 complete"),
            NewEvent(level="warn", message="Build cache is cold"),
        ]
        self.db.append_events(self.run.run_id, events, attempt=self.attempts[self.run.run_id])
        logged = [
            e for e in self.db.poll_run(self.run.run_id).events if e.message in {e.message for e in events}
        ]
        expect(len(logged) == 3, f"{len(logged)} of the 3 events were read back")
        return "Log events created (3 total)"

    def _mark_running(self) -> str:
        assert self.run is not None
        started = self.start(self.run.run_id)
        expect(started.status == "running" and started.started_at is not None, f"run is {started.status}")
        return "Run marked as running"

    def _add_artifact(self) -> str:
        from odooops_action.models import NewArtifact

        assert self.run is not None
        artifact = self.db.add_artifact(
            self.run.run_id,
            attempt=self.attempts[self.run.run_id],
            artifact=NewArtifact(
                artifact_type="image",
                storage_path=f"ghcr.io/odooops/selftest:{self.run.short_sha}",
                digest="sha256:" + secrets.token_hex(32),
                size_bytes=1024,
            ),
        )
        return f"Artifact created: {artifact.artifact_id}"

    def _mark_success(self) -> str:
        assert self.run is not None
        finished = self.finish(self.run.run_id, "success", 0)
        expect(finished.status == "success" and finished.finished_at is not None, f"run is {finished.status}")
        return "Run marked as success"

    def wait(self, run_id: str) -> str:
        from odooops_action.waiting import PollSchedule, wait_for_run

        class Quiet:
            def on_status(self, run: Run, previous: str | None) -> None:
                pass

            def on_events(self, run: Run, events: Any) -> None:
                pass

        result = wait_for_run(
            self.db, run_id, timeout=WAIT_SECONDS, schedule=PollSchedule.for_interval(1.0), observer=Quiet()
        )
        return result.outcome

    def _wait_success(self) -> str:
        assert self.run is not None
        outcome = self.wait(self.run.run_id)
        expect(outcome == "success", f"odooops wait ended with {outcome!r}, expected success")
        return "env_wait_ready.sh (odooops wait) returned successfully"

    def _cancel_another(self) -> list[str]:
        run = self.new_run()
        cancelled = self.db.cancel_run(run.run_id, reason="odooops selftest", cancelled_by=CREATOR)
        expect(cancelled.outcome == "cancelled", f"cancel answered {cancelled.outcome!r}")
        status = self.db.poll_run(run.run_id, max_events=0).run.status
        first = f"Run cancelled successfully: {run.run_id}"
        expect(status == "cancelled", f"{first}, but its status is then {status!r}")
        return [first, "Run status confirmed as cancelled"]

    def _failure_detected(self) -> str:
        run = self.new_run()
        self.claim(run)
        self.start(run.run_id)
        self.finish(run.run_id, "failed", 3, "selftest failure")
        outcome = self.wait(run.run_id)
        expect(outcome == "failed", f"odooops wait ended with {outcome!r} for a failed run")
        return "env_wait_ready.sh (odooops wait) correctly detected failed run"

    # -- checks the seed lacks

    def _check(self, number: int, title: str, check: ExtraCheck) -> None:
        self.report.start(number, title)
        try:
            self.report.record("pass", check(self))
        except SkipCheck as skip:
            self.report.record("skip", str(skip))
        except (CheckFailed, OdooOpsError) as error:
            self.report.record("fail", _one_line(str(error)))

    # -- cleanup

    def clean_up(self, *, keep: bool) -> None:
        if not self.created_project or self.store is None:
            return
        if keep:
            self.kept = True
            self._note(
                f"Kept project {self.project_id} and its runs. Remove them with: "
                f"SELECT ops.delete_selftest_project('{self.project_id}', '{self.nonce}');"
            )
            return
        from odooops_action.operator.calls import call

        try:
            removed = call(
                self.db, "delete_selftest_project", {"project_id": self.project_id, "nonce": self.nonce}
            )
            runs = removed.get("runs", 0) if isinstance(removed, dict) else 0
            self._note(f"Cleanup: removed project {self.project_id} and its {runs} run(s).")
        except OdooOpsError as error:
            self._note(
                f"Could not remove project {self.project_id}: {_one_line(str(error))} Remove it with: "
                f"SELECT ops.delete_selftest_project('{self.project_id}', '{self.nonce}');"
            )
            self.report.fail_current(f"cleanup failed for project {self.project_id}")

    def _note(self, text: str) -> None:
        sys.stderr.write(text + "\n")


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def _one_line(text: str) -> str:
    return " ".join(text.split())


# -- the checks the seed lacks ----------------------------------------------------------------------


def check_idempotent_create(suite: Selftest) -> str:
    key = f"selftest-{secrets.token_hex(8)}"
    sha = secrets.token_hex(20)
    first = suite.new_run(idempotency_key=key, sha=sha)
    second_request = suite.new_run(idempotency_key=key, sha=sha)
    suite.db.cancel_run(first.run_id, reason="odooops selftest", cancelled_by=CREATOR)
    expect(
        second_request.run_id == first.run_id,
        f"the same key queued two runs: {first.run_id}, {second_request.run_id}",
    )
    return f"The same idempotency key twice queued one run: {first.run_id}"


def check_id_collision(suite: Selftest) -> str:
    sha = secrets.token_hex(20)
    for _ in range(5):
        first, second = suite.new_run(sha=sha), suite.new_run(sha=sha)
        for run in (first, second):  # leave nothing queued for the next checks' claims
            suite.db.cancel_run(run.run_id, reason="odooops selftest", cancelled_by=CREATOR)
        if first.run_id[:23] != second.run_id[:23]:
            continue  # the second ticked over between the two: try again
        expect(first.run_id != second.run_id, f"two runs in one second share the id {first.run_id}")
        return f"Two runs of one commit in one second got distinct ids: {first.run_id}, {second.run_id}"
    raise CheckFailed("could not queue two runs within one second in five tries (slow connection?)")


def check_event_cursor(suite: Selftest) -> str:
    from odooops_action.models import NewEvent

    run = suite.new_run()
    suite.claim(run)
    suite.start(run.run_id)
    total = 25
    for start in (0, 10, 20):
        batch = [NewEvent(message=f"selftest line {n}") for n in range(start + 1, min(start + 10, total) + 1)]
        suite.db.append_events(run.run_id, batch, attempt=suite.attempts[run.run_id])
    seen: list[str] = []
    seqs: list[int] = []
    cursor, pages = 0, 0
    while True:
        poll = suite.db.poll_run(run.run_id, after_seq=cursor, max_events=7)
        pages += 1
        seen += [e.message for e in poll.events if e.message.startswith("selftest line")]
        seqs += [e.seq for e in poll.events]
        cursor = poll.cursor_after(cursor)
        if not poll.has_more:
            break
    suite.finish(run.run_id, "success", 0)
    expected = [f"selftest line {n}" for n in range(1, total + 1)]
    expect(seqs == sorted(set(seqs)), "sequence numbers repeated or out of order across pages")
    expect(seen == expected, f"read {len(seen)} lines, not 1..{total} once each in order")
    return f"{total} events read once each and in order across {pages} pages of a poll cursor"


def check_cancel_running(suite: Selftest) -> str:
    run = suite.new_run()
    suite.claim(run)
    suite.start(run.run_id)
    cancelled = suite.db.cancel_run(run.run_id, reason="odooops selftest", cancelled_by=CREATOR)
    expect(cancelled.run.status == "cancelled", f"a running run's cancel left it {cancelled.run.status}")
    seen_by_worker = suite.db.heartbeat_run(
        run.run_id, suite.worker_id, attempt=suite.attempts[run.run_id]
    ).run
    expect(seen_by_worker.status == "cancelled", f"the worker's heartbeat sees {seen_by_worker.status}")
    return f"Running run cancelled and its worker's heartbeat sees it: {run.run_id}"


def check_anon_refused(suite: Selftest) -> str:
    if suite.transport != "rest":
        raise SkipCheck("anon key check runs over REST only (this connection is PostgreSQL)")
    key = suite.environ.get("SUPABASE_ANON_KEY") or suite.environ.get("SUPABASE_PUBLISHABLE_KEY")
    url = suite.environ.get("SUPABASE_URL")
    if not key or not url:
        raise SkipCheck("set SUPABASE_ANON_KEY (the public key) to check that it is refused")
    import httpx

    from odooops_action.config import looks_like_jwt, normalize_supabase_url

    headers = {"apikey": key, "Content-Profile": "ops", "Accept-Profile": "ops"}
    if looks_like_jwt(key):
        headers["Authorization"] = f"Bearer {key}"
    base = normalize_supabase_url(url) + "/rest/v1"
    run_id = suite.run.run_id if suite.run is not None else "run-20000101-000000-0000000"
    with httpx.Client(timeout=10.0, headers=headers) as client:
        rpc = client.post(f"{base}/rpc/poll_run", json={"run_id": run_id})
        table = client.get(
            f"{base}/runs", params={"select": "run_id", "project_id": f"eq.{suite.project_id}"}
        )
    expect(rpc.status_code in (401, 403, 404), f"the anon key called ops.poll_run: HTTP {rpc.status_code}")
    rows = table.json() if table.is_success else []
    expect(not rows, f"the anon key read {len(rows)} of the selftest's runs from ops.runs")
    return f"The anon key is refused (ops.poll_run: HTTP {rpc.status_code}; ops.runs: no row)"


def check_scoped_token(suite: Selftest) -> str:
    """A read-only scoped token (``odooops_pat_…`` with the public key) reads its project's run and
    is refused a create and a cancel. Skipped where the store has no token management (versions
    before scoped tokens) and over PostgreSQL (tokens travel over REST)."""
    manage = getattr(suite.db, "manage_tokens", None)
    if manage is None:
        raise SkipCheck("scoped tokens are not part of this version; nothing to check")
    if suite.transport != "rest":
        raise SkipCheck("scoped tokens travel over REST only (this connection is PostgreSQL)")
    public_key = suite.environ.get("SUPABASE_ANON_KEY") or suite.environ.get("SUPABASE_PUBLISHABLE_KEY")
    url = suite.environ.get("SUPABASE_URL")
    if not public_key or not url:
        raise SkipCheck("set SUPABASE_ANON_KEY (the public key a token travels with) to check tokens")
    from datetime import timedelta

    run = suite.new_run()
    expires = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    arguments = {"project_id": suite.project_id, "scopes": ["read"], "expires_at": expires}
    created = manage("create_api_token", arguments | {"note": "odooops selftest", "created_by": CREATOR})
    try:
        refused = _refused_outside_read_scope(suite, run, url, public_key, str(created["token"]))
    finally:
        manage("revoke_api_token", {"token_id": created["token_id"], "revoked_by": CREATOR})
        suite.db.cancel_run(run.run_id, reason="odooops selftest", cancelled_by=CREATOR)
    return f"A read-only token reads its project's run and is refused {' and '.join(refused)}"


def _refused_outside_read_scope(
    suite: Selftest, run: Run, url: str, public_key: str, token: str
) -> list[str]:
    from odooops_action.config import ConnectionSettings
    from odooops_action.domain import CreateRunRequest
    from odooops_action.store.factory import open_store

    # Built from a mapping: the token field exists only in versions with scoped tokens.
    connection: dict[str, Any] = {"supabase_url": url, "supabase_key": public_key, "token": token}
    scoped = open_store(ConnectionSettings(**connection), "rest")
    try:
        seen = scoped.poll_run(run.run_id, max_events=0).run
        expect(seen.run_id == run.run_id, f"the token read {seen.run_id}, not its project's run {run.run_id}")
        request = CreateRunRequest(
            project_id=suite.project_id,
            workflow_type="build",
            git_ref="selftest",
            git_sha=secrets.token_hex(20),
            env_id=ENV_ID,
            metadata={"selftest_worker": suite.worker_id},
        )
        attempts: list[tuple[str, Callable[[], object]]] = [
            ("create", lambda: scoped.create_run(request)),
            ("cancel", lambda: scoped.cancel_run(run.run_id, reason="odooops selftest")),
        ]
        refused = []
        for what, attempt in attempts:
            try:
                attempt()
            except OdooOpsError:
                refused.append(what)
                continue
            raise CheckFailed(f"a token scoped to read could {what}")
        return refused
    finally:
        scoped.close()


_OWN_CHECKS: list[tuple[str, ExtraCheck]] = [
    ("Create the same run twice with one idempotency key", check_idempotent_create),
    ("Two runs of one commit in the same second", check_id_collision),
    ("Each event once and in order across a poll cursor", check_event_cursor),
    ("Cancel a running run", check_cancel_running),
    ("The anon key is refused", check_anon_refused),
    ("A scoped token is refused outside its scope", check_scoped_token),
]


# -- signals ----------------------------------------------------------------------------------------


@contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGINT/SIGTERM raise :class:`Interrupted` in the main thread (so ``finally`` cleans up)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, _frame: FrameType | None) -> None:
        raise Interrupted(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """During cleanup a signal is remembered, not acted on; it is re-raised afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[str] = []

    def remember(signum: int, _frame: FrameType | None) -> None:
        received.append(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, remember) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        raise Interrupted(received[0])
