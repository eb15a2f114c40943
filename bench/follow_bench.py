"""Following a run, side by side: the seed's env_wait_ready.sh against `odooops wait` (REST and PostgreSQL).

    python bench/follow_bench.py             # about 3.5 minutes: 30 s phases
    python bench/follow_bench.py --quick     # 12 s phases, for a smoke run
    python bench/follow_bench.py --json out.json

On the local stack (``tests.devstack``: a throwaway PostgreSQL and the PostgREST-compatible server),
each scenario queues a run, brings it to ``running`` and starts three followers on it at once:

* ``seed``  — ``bench/seed_env_wait_ready.sh RUN 600 5`` (curl + jq; status, then the latest 5
  events, every 5 s), through a counting HTTP proxy;
* ``rest``  — ``odooops wait RUN 600 5 --rest``, through its own counting HTTP proxy;
* ``pg``    — ``odooops wait RUN 600 5 --database-url …``, through a counting PostgreSQL proxy
  (it LISTENs for the run's notifications; a "request" is a query round trip: ``Q`` or ``Sync``).

A writer then logs ``bench line NNNNNN`` lines (58 characters) at the scenario's rate for one phase,
committing every 200 ms as the worker's event buffer does (``append_events`` of the lines due),
or a 10,000-line burst in 500-line calls, and finishes the run as ``success``. Per follower:
requests per minute and bytes received during the phase (steady state, from the writer's start to
the finish), bytes over the whole follow, events shown (distinct), shown more than once, in order,
bytes received per event shown, the latency from an event's commit to its line on the follower's
stderr (p50 / p99 / max; the PostgreSQL verdict takes the p99, the max of a loaded shared machine
being its scheduler's), and from the run's ``success`` to the follower's last line and its exit.
Times start when the writer's ``append_events`` / ``finish_run`` call returns, just after the
commit (a follower can print a line before the writer has read its reply: a latency a few ms below
0). Requests per minute are not given for the burst, whose writing phase lasts under a second.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from odooops_action.config import ConnectionSettings  # noqa: E402
from odooops_action.models import ClaimFilter, CreateRunRequest, NewEvent  # noqa: E402
from odooops_action.store.pg import PgStore  # noqa: E402
from odooops_action.store.rest import RestStore  # noqa: E402
from tests.devstack import DevStack  # noqa: E402
from tests.devstack.counting_proxy import CountingProxy, Counts  # noqa: E402

SEED_SCRIPT = REPO_ROOT / "bench" / "seed_env_wait_ready.sh"
PROJECT = "follow-bench"
WORKER = "bench-worker"
SHA = "fedcba9876543210fedcba9876543210fedcba98"
INTERVAL_S = 5
BATCH_PERIOD_S = 0.2  # the worker's event buffer commits at least this often
BURST_LINES = 10_000
BURST_CALL = 500
LINE = re.compile(r"^\[(?:debug|info|warn|error)\] bench line (\d{6}) ")
FOLLOWERS = ("seed", "rest", "pg")
PG_LATENCY_BUDGET_MS = 100.0


@dataclass
class Scenario:
    name: str
    rate: float  # lines per second; 0 = idle; -1 = burst
    seconds: float


@dataclass
class Follow:
    """One follower on one scenario."""

    follower: str
    phase_requests: int = 0
    phase_bytes: int = 0
    phase_seconds: float = 0.0
    total: Counts = field(default_factory=Counts)
    shown: int = 0
    repeated: int = 0
    in_order: bool = True
    written: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    end_line_ms: float | None = None
    exit_ms: float | None = None
    returncode: int | None = None

    @property
    def requests_per_minute(self) -> float:
        return self.phase_requests * 60 / self.phase_seconds if self.phase_seconds else 0.0

    @property
    def bytes_per_event(self) -> float | None:
        return self.total.bytes_received / self.shown if self.shown else None

    @property
    def complete(self) -> bool:
        return self.shown == self.written and self.repeated == 0 and self.in_order

    def latency(self, quantile: float) -> float | None:
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(quantile * len(ordered)))]


class Reader:
    """Reads a process's stderr on a thread, stamping each line with the monotonic clock."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[tuple[float, str]] = []
        self.exited_at = 0.0
        self._process = process
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._process.stderr is not None
        for line in self._process.stderr:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def join(self) -> None:
        self._thread.join(timeout=10)

    def has(self, prefix: str) -> bool:
        return any(line.startswith(prefix) for _, line in list(self.lines))


def reap(process: subprocess.Popen[str], reader: Reader) -> None:
    """Wait for the follower to exit (killed after 60 s) and stamp the moment."""
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    reader.exited_at = time.monotonic()


def message(number: int) -> str:
    return f"bench line {number:06d} " + "x" * 40


class Stack:
    def __init__(self, devstack: DevStack) -> None:
        self.devstack = devstack
        self.writer = PgStore(devstack.database_url)
        with devstack.database.connect() as conn:  # type: ignore[attr-defined]
            conn.execute(
                "INSERT INTO ops.projects (project_id) VALUES (%s) ON CONFLICT DO NOTHING", (PROJECT,)
            )
            conn.execute(
                "INSERT INTO ops.environments (project_id, env_id) VALUES (%s, 'dev') ON CONFLICT DO NOTHING",
                (PROJECT,),
            )

    def running_run(self) -> str:
        request = CreateRunRequest(
            project_id=PROJECT,
            workflow_type="build",
            git_ref="main",
            git_sha=SHA,
            env_id="dev",
            created_by="bench",
        )
        run_id = self.writer.create_run(request).run.run_id
        claimed = self.writer.claim_next_run(WORKER, ClaimFilter(project_id=PROJECT))
        assert claimed is not None
        assert claimed.run_id == run_id
        self.writer.start_run(run_id, WORKER)
        return run_id

    def round_trip_ms(self) -> float:
        store = RestStore(
            ConnectionSettings(supabase_url=self.devstack.url, supabase_key=self.devstack.service_role_key)
        )
        run_id = self.running_run()
        first = store.poll_run_delta(run_id)
        samples = []
        for _ in range(15):
            started = time.monotonic()
            store.poll_run_delta(run_id, after_seq=first.events[-1].seq, known_revision=first.revision)
            samples.append((time.monotonic() - started) * 1000)
        store.close()
        self.writer.finish_run(run_id, WORKER, "success")
        return statistics.median(samples)


def start_followers(
    stack: Stack, run_id: str, proxies: dict[str, CountingProxy], workdir: Path
) -> dict[str, Any]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SUPABASE_", "DATABASE_URL"))}
    key = stack.devstack.service_role_key
    pg_url = (
        stack.devstack.database_url.replace(f":{stack.devstack.cluster.port}/", f":{proxies['pg'].port}/")
        + "?sslmode=disable&gssencmode=disable"
    )
    commands = {
        "seed": (
            ["bash", str(SEED_SCRIPT), run_id, "600", str(INTERVAL_S)],
            {"SUPABASE_URL": f"http://127.0.0.1:{proxies['seed'].port}", "SUPABASE_SERVICE_ROLE_KEY": key},
        ),
        "rest": (
            [sys.executable, "-m", "odooops_action.cli", "wait", run_id, "600", str(INTERVAL_S), "--rest"],
            {"SUPABASE_URL": f"http://127.0.0.1:{proxies['rest'].port}", "SUPABASE_SERVICE_ROLE_KEY": key},
        ),
        "pg": (
            [
                sys.executable,
                "-m",
                "odooops_action.cli",
                "wait",
                run_id,
                "600",
                str(INTERVAL_S),
                "--database-url",
                pg_url,
            ],
            {},
        ),
    }
    started = {}
    for name, (command, extra) in commands.items():
        process = subprocess.Popen(
            command,
            cwd=workdir,
            env={**base, **extra, "PYTHONPATH": str(REPO_ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started[name] = (process, Reader(process))
    return started


def write_phase(stack: Stack, run_id: str, scenario: Scenario) -> dict[int, float]:
    """Log the scenario's lines; the commit time of each line number."""
    committed: dict[int, float] = {}
    if scenario.rate < 0:
        for start in range(0, BURST_LINES, BURST_CALL):
            numbers = range(start, start + BURST_CALL)
            stack.writer.append_events(run_id, [NewEvent(message=message(n)) for n in numbers])
            committed.update(dict.fromkeys(numbers, time.monotonic()))  # committed just before
        return committed
    began = time.monotonic()
    written = 0
    tick = 0
    while True:
        tick += 1
        due_at = began + tick * BATCH_PERIOD_S
        time.sleep(max(0.0, due_at - time.monotonic()))
        if due_at - began > scenario.seconds + 1e-9:
            return committed
        due = int(scenario.rate * (due_at - began) + 1e-9)
        if due > written:
            numbers = range(written, due)
            stack.writer.append_events(run_id, [NewEvent(message=message(n)) for n in numbers])
            committed.update(dict.fromkeys(numbers, time.monotonic()))
            written = due


def run_scenario(stack: Stack, scenario: Scenario, workdir: Path) -> list[Follow]:
    run_id = stack.running_run()
    proxies = {
        "seed": CountingProxy(stack.devstack.server.port, "http"),
        "rest": CountingProxy(stack.devstack.server.port, "http"),
        "pg": CountingProxy(stack.devstack.cluster.port, "pg"),
    }
    followers = start_followers(stack, run_id, proxies, workdir)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all(r.has("Status: running") for _, r in followers.values()):
        time.sleep(0.05)
    time.sleep(0.5)  # past the first polls: the phase measures the steady state
    before = {name: proxy.counts for name, proxy in proxies.items()}
    phase_started = time.monotonic()
    committed = write_phase(stack, run_id, scenario)  # an idle phase writes nothing for its length
    phase_ended = time.monotonic()
    during = {name: proxy.counts - before[name] for name, proxy in proxies.items()}
    stack.writer.finish_run(run_id, WORKER, "success", exit_code=0)
    finished = time.monotonic()
    exits = {
        name: threading.Thread(target=reap, args=(process, reader))
        for name, (process, reader) in followers.items()
    }
    for thread in exits.values():
        thread.start()
    results = []
    for name in FOLLOWERS:
        process, reader = followers[name]
        exits[name].join()
        exited = reader.exited_at
        reader.join()
        results.append(
            measure(
                name,
                reader,
                committed=committed,
                during=during[name],
                total=proxies[name].counts,
                seconds=phase_ended - phase_started,
            )
            | {"exit": (exited - finished) * 1000, "returncode": process.returncode, "finished": finished}
        )
        proxies[name].close()
    return [build_follow(result) for result in results]


def measure(
    name: str, reader: Reader, *, committed: dict[int, float], during: Counts, total: Counts, seconds: float
) -> dict[str, Any]:
    first_seen: dict[int, float] = {}
    order: list[int] = []
    repeated = 0
    for at, line in reader.lines:
        match = LINE.match(line)
        if match is None:
            continue
        number = int(match.group(1))
        if number in first_seen:
            repeated += 1
            continue
        first_seen[number] = at
        order.append(number)
    latencies = [(first_seen[n] - committed[n]) * 1000 for n in order if n in committed]
    last_line_at = reader.lines[-1][0] if reader.lines else None
    return {
        "follower": name,
        "during": during,
        "total": total,
        "seconds": seconds,
        "shown": len(order),
        "repeated": repeated,
        "in_order": order == sorted(order),
        "written": len(committed),
        "latencies": latencies,
        "last_line_at": last_line_at,
    }


def build_follow(result: dict[str, Any]) -> Follow:
    follow = Follow(
        follower=result["follower"],
        phase_requests=result["during"].requests,
        phase_bytes=result["during"].bytes_received,
        phase_seconds=result["seconds"],
        total=result["total"],
        shown=result["shown"],
        repeated=result["repeated"],
        in_order=result["in_order"],
        written=result["written"],
        latencies_ms=result["latencies"],
        exit_ms=result["exit"],
        returncode=result["returncode"],
    )
    if result["last_line_at"] is not None:
        follow.end_line_ms = (result["last_line_at"] - result["finished"]) * 1000
    return follow


def fmt(value: float | None, digits: int = 0, unit: str = "") -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}{unit}"


COLUMNS = (
    "scenario",
    "follower",
    "requests/min (phase)",
    "requests (all)",
    "KB received (phase)",
    "KB received (all)",
    "events shown",
    "shown twice",
    "in order",
    "B received / event shown",
    "commit → shown p50 / p99 / max",
    "success → last line / exit",
)


def row(scenario: Scenario, follow: Follow) -> str:
    cells = [
        scenario.name,
        follow.follower,
        f"{follow.requests_per_minute:.1f}" if scenario.rate >= 0 else "—",
        f"{follow.total.requests:,}",
        f"{follow.phase_bytes / 1000:.1f}",
        f"{follow.total.bytes_received / 1000:.1f}",
        f"{follow.shown:,} of {follow.written:,}",
        f"{follow.repeated:,}",
        "yes" if follow.in_order else "NO",
        fmt(follow.bytes_per_event),
        f"{fmt(follow.latency(0.5))} / {fmt(follow.latency(0.99))} / {fmt(follow.latency(1.0))} ms",
        f"{fmt(follow.end_line_ms)} / {fmt(follow.exit_ms)} ms",
    ]
    return "| " + " | ".join(cells) + " |"


def render(results: dict[str, list[Follow]], scenarios: list[Scenario]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += [row(scenario, follow) for scenario in scenarios for follow in results[scenario.name]]
    return "\n".join(lines)


def verdicts(results: dict[str, list[Follow]], scenarios: list[Scenario], round_trip_ms: float) -> list[str]:
    checks: list[str] = []

    def check(text: str, ok: bool) -> None:
        checks.append(f"{'pass' if ok else 'FAIL'}  {text}")

    end_budget = INTERVAL_S * 1000 + round_trip_ms
    for scenario in scenarios:
        by = {follow.follower: follow for follow in results[scenario.name]}
        seed, rest, pg = by["seed"], by["rest"], by["pg"]
        name = scenario.name
        if scenario.rate >= 0:
            ours, theirs = rest.requests_per_minute, seed.requests_per_minute
            check(f"{name}: rest requests/min {ours:.1f} < seed {theirs:.1f}", ours < theirs)
        if scenario.rate == 0:
            check(
                f"{name}: rest bytes while idle {rest.phase_bytes:,} < seed {seed.phase_bytes:,}",
                rest.phase_bytes < seed.phase_bytes,
            )
            check(f"{name}: pg queries while idle {pg.phase_requests} == 0", pg.phase_requests == 0)
        elif seed.bytes_per_event is not None and rest.bytes_per_event is not None:
            ours, theirs = rest.bytes_per_event, seed.bytes_per_event
            check(f"{name}: rest bytes/event {ours:.0f} <= 2 x seed {theirs:.0f}", ours <= 2 * theirs)
        for follow in (rest, pg):
            check(
                f"{name}: {follow.follower} shows every event once, in order "
                f"({follow.shown} of {follow.written})",
                follow.complete and follow.returncode == 0,
            )
        check(
            f"{name}: rest notices the end in {fmt(rest.end_line_ms)} ms "
            f"<= interval + round trip {end_budget:.0f} ms",
            rest.end_line_ms is not None and rest.end_line_ms <= end_budget,
        )
        p99 = pg.latency(0.99) or 0.0
        end = pg.end_line_ms
        check(
            f"{name}: pg shows events (p99 {p99:.0f} ms, max {fmt(pg.latency(1.0))} ms) and the end "
            f"({fmt(end)} ms) within {PG_LATENCY_BUDGET_MS:.0f} ms",
            end is not None and end < PG_LATENCY_BUDGET_MS and p99 < PG_LATENCY_BUDGET_MS,
        )
    return checks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="12 s phases instead of 30 s")
    parser.add_argument("--json", type=Path, help="also write the measurements as JSON")
    options = parser.parse_args()
    seconds = 12.0 if options.quick else 30.0
    scenarios = [
        Scenario("idle", 0, seconds),
        Scenario("1 line/s", 1, seconds),
        Scenario("10 lines/s", 10, seconds),
        Scenario("100 lines/s", 100, seconds),
        Scenario("10,000-line burst", -1, 0),
    ]
    began = time.monotonic()
    results: dict[str, list[Follow]] = {}
    with DevStack() as devstack, tempfile.TemporaryDirectory() as workdir:
        stack = Stack(devstack)
        round_trip_ms = stack.round_trip_ms()
        for scenario in scenarios:
            print(f"… {scenario.name}", file=sys.stderr, flush=True)
            results[scenario.name] = run_scenario(stack, scenario, Path(workdir))
        stack.writer.close()
    checks = verdicts(results, scenarios, round_trip_ms)
    print(render(results, scenarios))
    print()
    print(
        f"Poll interval {INTERVAL_S} s for all three; phases of {seconds:g} s; REST round trip (idle poll, "
        f"median) {round_trip_ms:.1f} ms; total {time.monotonic() - began:.0f} s."
    )
    system = f"{platform.system()} {platform.release()}"
    print(f"Machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, {system}.")
    print()
    print("\n".join(checks))
    if options.json:
        payload = {
            name: [asdict(follow) | {"total": asdict(follow.total)} for follow in follows]
            for name, follows in results.items()
        }
        options.json.write_text(json.dumps(payload, indent=2))
    return 0 if all(check.startswith("pass") for check in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
