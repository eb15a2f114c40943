"""The performance budget of odooops-action, measured on the local stack; prints ONE table.

    python bench/perf_budget.py            # about three minutes
    python bench/perf_budget.py --quick    # shorter windows and fewer repeats, for a smoke run

Everything runs against ``tests.devstack.DevStack`` (a throwaway PostgreSQL + the PostgREST-compatible
server) through public interfaces only: the Action's ``entrypoint.py`` as a subprocess with the
``INPUT_*`` environment the runner would give it, ``odooops_action.waiting.wait_for_run`` over the
REST store, and the REST server's request log (``DevStack.server.requests``). What is measured:

1. Start-up of the Action per mode: process start → first request seen by the server, the same for
   a bare ``python -c pass`` (the interpreter's own share), and ``-X importtime`` of the entry point
   minus that of the bare interpreter. Budget: the Action adds < 150 ms of its own before its first
   request. Plus the wall time of a whole ``create`` step.
2. Waiting: requests and bytes per minute on an idle run and on a run logging one line a second
   (budget: one ``poll_run_delta`` per poll, each event transferred once). The side-by-side
   comparison with the seed's script, over REST and PostgreSQL, is ``bench/follow_bench.py``.
3. A 10,000-event log, as a backlog and while it is written: requests per 200 events (budget < 1).
4. Latency from a run turning terminal to ``wait_for_run`` returning (budget: poll interval + one
   round trip).
5. Installed size of the runtime dependencies (requirements.txt), summed from the installed files
   of those distributions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from odooops_action.config import ConnectionSettings  # noqa: E402
from odooops_action.models import ClaimFilter, CreateRunRequest, NewEvent, Run, RunEvent  # noqa: E402
from odooops_action.store.base import RunStore  # noqa: E402
from odooops_action.store.factory import open_store  # noqa: E402
from odooops_action.waiting import PollSchedule, WaitResult, wait_for_run  # noqa: E402
from tests.devstack import DevStack, RequestRecord  # noqa: E402

PROJECT = "bench"
ENVIRONMENT = "dev"
WORKER = "bench-worker"
SHA = "0123456789abcdef0123456789abcdef01234567"
STARTUP_BUDGET_MS = 150.0
REQUESTS_PER_EVENT_BUDGET = 1 / 200
PROBE_PERIOD_S = 0.001
REQUIREMENTS = REPO_ROOT / "requirements.txt"
ENTRYPOINT = REPO_ROOT / "entrypoint.py"
# As the image runs it (its #! line): started without them, the entry point re-executes itself so.
ENTRYPOINT_FLAGS = ("-E", "-s", "-u")
# The image's Python layer: only requirements.txt (the dev venv also holds click, rich, ... which
# httpx imports when present, and which the image does not have).
RUNTIME_VENV = REPO_ROOT / ".venv-runtime"


@dataclass
class Row:
    measure: str
    result: str
    budget: str = ""
    verdict: str = ""  # "pass", "FAIL", "" (informational) or "not run"


@dataclass
class Config:
    repeats: int
    wait_window_s: float
    latency_trials: int
    latency_interval_s: float


FULL = Config(repeats=7, wait_window_s=60.0, latency_trials=6, latency_interval_s=2.0)
QUICK = Config(repeats=3, wait_window_s=8.0, latency_trials=3, latency_interval_s=1.0)


def verdict(ok: bool) -> str:
    return "pass" if ok else "FAIL"


# -- the stack ------------------------------------------------------------------------------------


def seed(stack: DevStack) -> None:
    with stack.cluster.connect() as conn:
        conn.execute("INSERT INTO ops.projects (project_id, name) VALUES (%s, 'benchmark')", (PROJECT,))
        conn.execute(
            "INSERT INTO ops.environments (project_id, env_id) VALUES (%s, %s)", (PROJECT, ENVIRONMENT)
        )


def rest_store(stack: DevStack) -> RunStore:
    settings = ConnectionSettings(supabase_url=stack.url, supabase_key=stack.service_role_key)
    return open_store(settings, prefer="rest")


def queue_run(store: RunStore, workflow_type: str = "build") -> Run:
    request = CreateRunRequest(
        project_id=PROJECT, workflow_type=workflow_type, git_ref="main", git_sha=SHA, env_id=ENVIRONMENT
    )  # type: ignore[arg-type]
    return store.create_run(request).run


def running_run(store: RunStore) -> Run:
    """A build run claimed and started by the benchmark's worker (the other runs are test/deploy)."""
    queued = queue_run(store)
    claimed = store.claim_next_run(WORKER, ClaimFilter(project_id=PROJECT, workflow_type="build"))
    if claimed is None or claimed.run_id != queued.run_id:
        raise RuntimeError(f"expected to claim {queued.run_id}, got {claimed}")
    return store.start_run(queued.run_id, WORKER, attempt=claimed.attempt).run


def append_lines(store: RunStore, run_id: str, count: int, batch: int = 1000, start: int = 0) -> None:
    for offset in range(0, count, batch):
        size = min(batch, count - offset)
        events = [
            NewEvent(
                message=f"line {start + offset + i + 1}",
                payload={"stream": "stdout", "line": start + offset + i + 1},
            )
            for i in range(size)
        ]
        store.append_events(run_id, events)


def poll_requests(records: Sequence[RequestRecord], run_id: str) -> list[RequestRecord]:
    found = []
    for record in records:
        if record.path.endswith(("/rpc/poll_run", "/rpc/poll_run_delta")):
            body = record.json_body() or {}
            if body.get("run_id") == run_id:
                found.append(record)
    return found


def wire_bytes(record: RequestRecord) -> int:
    """Bytes of one exchange as counted here: request headers + body, response body."""
    header_bytes = sum(len(name) + len(value) + 4 for name, value in record.headers.items())
    return header_bytes + record.body_size + record.response_bytes


# -- 1. start-up of the Action --------------------------------------------------------------------


def runner_environment(stack: DevStack, workdir: Path, mode: str, inputs: dict[str, str]) -> dict[str, str]:
    """What the runner gives the container: GITHUB_* variables, file commands, every input."""
    for name in ("output", "summary", "state", "env", "path"):
        (workdir / name).write_text("")
    environ = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "PYTHONPATH": str(REPO_ROOT),
        "GITHUB_ACTIONS": "true",
        "GITHUB_REPOSITORY": "acme/app",
        "GITHUB_RUN_ID": str(time.time_ns() % 10**12),
        "GITHUB_RUN_ATTEMPT": "1",
        "GITHUB_JOB": "bench",
        "GITHUB_ACTION": f"bench-{mode}",
        "GITHUB_SHA": SHA,
        "GITHUB_REF_NAME": "main",
        "GITHUB_WORKSPACE": str(workdir),
        "GITHUB_OUTPUT": str(workdir / "output"),
        "GITHUB_STEP_SUMMARY": str(workdir / "summary"),
        "GITHUB_STATE": str(workdir / "state"),
        "GITHUB_ENV": str(workdir / "env"),
        "GITHUB_PATH": str(workdir / "path"),
    }
    defaults = {
        "mode": mode,
        "supabase_url": stack.url,
        "supabase_key": stack.service_role_key,
        "git_ref": "main",
        "commit_sha": SHA,
        "env_id": ENVIRONMENT,
        "wait": "false",
        "timeout_seconds": "60",
        "poll_interval_seconds": "5",
        "cancel_on_timeout": "false",
        "cancel_on_abort": "true",
        "github_token": "ghs_" + "b" * 36,
        "check_run": "false",
        "annotate_levels": "warn,error",
    }
    for name, value in {**defaults, **inputs}.items():
        environ["INPUT_" + name.upper()] = value
    return environ


@contextmanager
def first_request_probe(stack: DevStack) -> Iterator[Callable[[], float | None]]:
    """Watches the request log; yields a function giving the first new request's arrival time."""
    seen_before = len(stack.server.requests)
    arrival: list[float] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            records = stack.server.requests
            if len(records) > seen_before:
                # Logged when answered: the arrival is that moment minus the time spent serving it.
                arrival.append(time.perf_counter() - records[seen_before].duration_ms / 1000)
                return
            time.sleep(PROBE_PERIOD_S)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield lambda: arrival[0] if arrival else None
    finally:
        done.set()
        thread.join()


def time_action(stack: DevStack, mode: str, inputs: dict[str, str]) -> tuple[float, float, int]:
    """(ms to first request, ms wall, exit code) of one entry-point process."""
    python = runtime_python()  # created on first use: outside the timed part
    with tempfile.TemporaryDirectory(prefix="bench-action-") as scratch:
        environ = runner_environment(stack, Path(scratch), mode, inputs)
        with first_request_probe(stack) as first_request:
            started = time.perf_counter()
            done = subprocess.run(
                [python, *ENTRYPOINT_FLAGS, str(ENTRYPOINT)],
                env=environ,
                capture_output=True,
                check=False,
                timeout=120,
            )
            ended = time.perf_counter()
            time.sleep(0.01)
            arrived = first_request()
    if arrived is None:
        raise RuntimeError(
            f"mode {mode}: no request reached the server:\n{done.stdout.decode()}{done.stderr.decode()}"
        )
    return (arrived - started) * 1000, (ended - started) * 1000, done.returncode


def runtime_python() -> str:
    """The interpreter of a venv holding exactly requirements.txt, created on first use."""
    python = RUNTIME_VENV / "bin" / "python"
    stamp = RUNTIME_VENV / ".requirements"
    wanted = REQUIREMENTS.read_text()
    if not python.exists() or not stamp.exists() or stamp.read_text() != wanted:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(RUNTIME_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--no-cache-dir", "-r", str(REQUIREMENTS)],
            check=True,
        )
        stamp.write_text(wanted)
    return str(python)


def bare_interpreter_ms(repeats: int) -> float:
    times = []
    python = runtime_python()
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([python, "-c", "pass"], check=True)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def import_time_ms(argv: list[str], environ: dict[str, str] | None = None) -> float:
    """Total of the top-level cumulative import times that ``-X importtime`` reports."""
    done = subprocess.run(
        [runtime_python(), "-X", "importtime", *argv],
        env=environ,
        capture_output=True,
        text=True,
        check=False,
    )
    total_us = 0
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = (part for part in line.split(":", 1)[1].split("|"))
        if not name.startswith("  "):  # one leading space separates the column; more means nested
            total_us += int(cumulative)
    return total_us / 1000


def startup_rows(stack: DevStack, store: RunStore, config: Config) -> list[Row]:
    finished = running_run(store)
    store.finish_run(finished.run_id, WORKER, "success", exit_code=0)
    modes: dict[str, Callable[[], dict[str, str]]] = {
        "create": lambda: {"project_id": PROJECT, "workflow_type": "test"},
        "wait": lambda: {"run_id": finished.run_id},
        "destroy": lambda: {"run_id": queue_run(store, "deploy").run_id},
    }
    bare_ms = bare_interpreter_ms(config.repeats)
    bare_import_ms = import_time_ms(["-c", "pass"])
    rows = [Row("Bare interpreter start (`python -c pass`), median", f"{bare_ms:.0f} ms")]
    create_walls: list[float] = []
    for mode, inputs in modes.items():
        firsts = []
        for _ in range(config.repeats):
            first_ms, wall_ms, code = time_action(stack, mode, inputs())
            if code != 0:
                raise RuntimeError(f"mode {mode} exited {code}")
            firsts.append(first_ms)
            if mode == "create":
                create_walls.append(wall_ms)
        with tempfile.TemporaryDirectory(prefix="bench-import-") as scratch:
            environ = runner_environment(stack, Path(scratch), mode, inputs())
            own_import_ms = import_time_ms([*ENTRYPOINT_FLAGS, str(ENTRYPOINT)], environ) - bare_import_ms
        own_ms = statistics.median(firsts) - bare_ms
        rows.append(
            Row(
                f"`{mode}`: process start → first request, median (max) of {config.repeats}",
                f"{statistics.median(firsts):.0f} ms ({max(firsts):.0f} ms); own share {own_ms:.0f} ms; "
                f"imports {own_import_ms:.0f} ms",
                f"own share < {STARTUP_BUDGET_MS:.0f} ms",
                verdict(own_ms < STARTUP_BUDGET_MS),
            )
        )
    rows.append(
        Row(
            f"`create` step wall time (process start → exit), median (max) of {config.repeats}",
            f"{statistics.median(create_walls):.0f} ms ({max(create_walls):.0f} ms)",
        )
    )
    return rows


# -- 2. waiting -----------------------------------------------------------------------------------


class CountingObserver:
    def __init__(self) -> None:
        self.seqs: list[int] = []
        self.statuses: list[str] = []

    def on_status(self, run: Run, previous: str | None) -> None:
        self.statuses.append(run.status)

    def on_events(self, run: Run, events: Sequence[RunEvent]) -> None:
        self.seqs.extend(event.seq for event in events)


def wait_in_thread(
    store: RunStore, run_id: str, interval: float, timeout: float
) -> tuple[threading.Thread, CountingObserver, list[WaitResult], threading.Event]:
    observer = CountingObserver()
    results: list[WaitResult] = []
    stop = threading.Event()

    def run() -> None:
        results.append(
            wait_for_run(
                store,
                run_id,
                timeout=timeout,
                schedule=PollSchedule.for_interval(interval),
                observer=observer,
                stop=stop,
            )
        )

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, observer, results, stop


def waiting_row(stack: DevStack, store: RunStore, config: Config, lines_per_second: float) -> Row:
    run = running_run(store)
    waiter_store = rest_store(stack)
    thread, observer, results, stop = wait_in_thread(waiter_store, run.run_id, 5.0, config.wait_window_s + 30)
    started = time.monotonic()
    appended = 0
    while (elapsed := time.monotonic() - started) < config.wait_window_s:
        if lines_per_second and appended < int(elapsed * lines_per_second):
            append_lines(store, run.run_id, 1, start=appended)
            appended += 1
        time.sleep(0.05)
    store.finish_run(run.run_id, WORKER, "success", exit_code=0)
    thread.join(30)
    stop.set()
    waiter_store.close()
    polls = poll_requests(stack.server.requests, run.run_id)
    waited = results[0].waited_seconds if results else config.wait_window_s
    per_minute = 60 / waited
    total_bytes = sum(wire_bytes(p) for p in polls)
    expected_events = appended + 4  # queued, claimed, running, success status events
    duplicates = len(observer.seqs) - len(set(observer.seqs))
    one_per_poll = bool(results) and results[0].polls == len(polls)
    each_once = duplicates == 0 and sorted(observer.seqs) == list(range(1, expected_events + 1))
    kind = "an idle run" if not lines_per_second else f"a run logging {lines_per_second:g} line/s"
    return Row(
        f"Waiting on {kind} for {waited:.0f} s (poll interval 5 s): requests and bytes per minute",
        f"{len(polls) * per_minute:.1f} req/min, {total_bytes * per_minute / 1024:.1f} KiB/min; "
        f"{len(observer.seqs)} of {expected_events} events delivered, {duplicates} duplicates",
        "1 `poll_run_delta` per poll; each event once",
        verdict(one_per_poll and each_once),
    )


# -- 3. a 10,000-event log ------------------------------------------------------------------------


def big_log_rows(stack: DevStack, store: RunStore) -> list[Row]:
    rows = []
    # As a backlog: everything is written before the wait starts.
    run = running_run(store)
    append_lines(store, run.run_id, 10_000)
    store.finish_run(run.run_id, WORKER, "success", exit_code=0)
    rows.append(stream_row(stack, run.run_id, "already written (backlog)", producer=None))
    # While it is written: 20 batches of 500 lines, one every 100 ms.
    live = running_run(store)

    def produce() -> None:
        for batch in range(20):
            append_lines(store, live.run_id, 500, batch=500, start=batch * 500)
            time.sleep(0.1)
        store.finish_run(live.run_id, WORKER, "success", exit_code=0)

    rows.append(
        stream_row(stack, live.run_id, "written while waiting (500 lines / 100 ms)", producer=produce)
    )
    return rows


def stream_row(stack: DevStack, run_id: str, how: str, producer: Callable[[], None] | None) -> Row:
    waiter_store = rest_store(stack)
    started = time.perf_counter()
    thread, observer, results, _ = wait_in_thread(waiter_store, run_id, 5.0, 120)
    if producer is not None:
        producer()
    thread.join(130)
    elapsed = time.perf_counter() - started
    waiter_store.close()
    polls = poll_requests(stack.server.requests, run_id)
    lines = observer.seqs
    complete = sorted(lines) == list(range(1, len(lines) + 1)) and len(lines) >= 10_000
    per_200 = len(polls) / len(lines) * 200 if lines else float("inf")
    total = sum(wire_bytes(p) for p in polls)
    outcome = results[0].outcome if results else "none"
    return Row(
        f"10,000-line log {how}",
        f"{len(lines)} events in {len(polls)} requests ({per_200:.2f} per 200 events), "
        f"{total / 1024 / 1024:.1f} MiB, {elapsed:.1f} s, outcome {outcome}",
        "< 1 request per 200 events; all events, in order",
        verdict(complete and per_200 < 1),
    )


# -- 4. terminal → wait returns -------------------------------------------------------------------


def round_trip_ms(store: RunStore, run_id: str, samples: int = 20) -> float:
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        store.poll_run(run_id, after_seq=2**62, max_events=0)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def latency_row(stack: DevStack, store: RunStore, config: Config) -> Row:
    interval = config.latency_interval_s
    latencies, rtts = [], []
    for _ in range(config.latency_trials):
        run = running_run(store)
        waiter_store = rest_store(stack)
        rtts.append(round_trip_ms(waiter_store, run.run_id))
        thread, _, results, _ = wait_in_thread(waiter_store, run.run_id, interval, 120)
        # Idle for a few intervals, then finish at a random phase of the poll interval.
        time.sleep(interval * 3 + random.uniform(0, interval))  # noqa: S311 - a phase, not a secret
        finished_at = time.perf_counter()
        store.finish_run(run.run_id, WORKER, "success", exit_code=0)
        thread.join(60)
        returned_at = time.perf_counter()
        waiter_store.close()
        if not results or results[0].outcome != "success":
            raise RuntimeError(f"the wait ended with {results}")
        latencies.append((returned_at - finished_at) * 1000)
    rtt = statistics.median(rtts)
    budget = interval * 1000 + rtt
    return Row(
        f"Run terminal → `wait_for_run` returns (poll interval {interval:g} s), median (max) of "
        f"{config.latency_trials}",
        f"{statistics.median(latencies):.0f} ms ({max(latencies):.0f} ms); round trip {rtt:.1f} ms",
        f"≤ interval + round trip = {budget:.0f} ms",
        verdict(max(latencies) <= budget),
    )


# -- 5. installed size ----------------------------------------------------------------------------


def requirement_names(path: Path) -> list[str]:
    names = []
    for raw in path.read_text().splitlines():
        requirement = raw.split("#", 1)[0].strip()
        if requirement:
            names.append(re.split(r"[\[=<>!~; ]", requirement, maxsplit=1)[0])
    return names


def installed_size_row() -> Row:
    if not REQUIREMENTS.exists():
        return Row(
            "Installed size of the runtime dependencies", "requirements.txt missing", verdict="not run"
        )
    total = without_bytecode = 0
    missing = []
    names = requirement_names(REQUIREMENTS)
    for name in names:
        try:
            files = metadata.distribution(name).files or []
        except metadata.PackageNotFoundError:
            missing.append(name)
            continue
        for file in files:
            located = Path(str(file.locate()))
            if located.is_file():
                size = located.stat().st_size
                total += size
                if "__pycache__" not in located.parts:
                    without_bytecode += size
    note = f"; not installed here: {', '.join(missing)}" if missing else ""
    return Row(
        f"Installed size of the {len(names) - len(missing)} runtime distributions (requirements.txt)",
        f"{total / 2**20:.1f} MiB with bytecode, {without_bytecode / 2**20:.1f} MiB without{note}",
    )


# -- report ---------------------------------------------------------------------------------------


def machine(stack: DevStack) -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    with stack.cluster.connect() as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "python": platform.python_version(),
        "postgresql": str(row[0]) if row else "unknown",
        "os": platform.platform(),
    }


def render(rows: list[Row], info: dict[str, str], elapsed: float) -> str:
    lines = [
        "| Measure | Result | Budget | Verdict |",
        "|---|---|---|---|",
        *(f"| {r.measure} | {r.result} | {r.budget} | {r.verdict} |" for r in rows),
        "",
        f"Machine: {info['nproc']} CPUs ({info['cpu']}), Python {info['python']}, PostgreSQL "
        f"{info['postgresql']}, {info['os']}. Measured in {elapsed:.0f} s by `python bench/perf_budget.py`.",
    ]
    return "\n".join(lines)


def guarded(name: str, measure: Callable[[], list[Row]]) -> list[Row]:
    """A measurement that cannot run (a part not written yet, a failure) becomes a 'not run' row."""
    try:
        return measure()
    except Exception as exc:  # report it and keep measuring the rest
        return [
            Row(
                name,
                f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}",
                verdict="not run",
            )
        ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short windows, few repeats (a smoke run)")
    parser.add_argument("--json", type=Path, help="also write the rows and the machine as JSON here")
    args = parser.parse_args(argv)
    config = QUICK if args.quick else FULL
    started = time.monotonic()
    with DevStack() as stack:
        seed(stack)
        store = rest_store(stack)
        rows: list[Row] = []
        rows += guarded("Action start-up", lambda: startup_rows(stack, store, config))
        rows += guarded("Waiting, idle", lambda: [waiting_row(stack, store, config, 0)])
        rows += guarded("Waiting, 1 line/s", lambda: [waiting_row(stack, store, config, 1)])
        rows += guarded("10,000-line log", lambda: big_log_rows(stack, store))
        rows += guarded("Terminal → wait returns", lambda: [latency_row(stack, store, config)])
        rows += guarded("Installed size", lambda: [installed_size_row()])
        info = machine(stack)
        store.close()
    print(render(rows, info, time.monotonic() - started))
    if args.json:
        payload: dict[str, Any] = {"machine": info, "rows": [r.__dict__ for r in rows]}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 1 if any(r.verdict in ("FAIL", "not run") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
