"""Claim benchmark (not a test): ``python bench/claim_bench.py [--seconds 3] [--history 1000000]``.

Starts its own throwaway PostgreSQL (``tests.devstack.PostgresCluster``, migrations applied) and
measures:

1. Claim throughput and latency for 1, 2, 4 and 8 concurrent claimers (separate processes, one
   connection each, ``SELECT * FROM ops.claim_next_run(worker)`` as the worker's store sends it),
   with 10 queued runs among 10 finished ones, then among ``--history`` (1,000,000) finished ones.
   The queue is kept at 10 runs: after each timed claim the claimer puts the run back with
   ``UPDATE ops.runs SET status = 'queued'`` (the state machine's recovery transition, which runs
   the same triggers as a real requeue). Throughput therefore counts claim + requeue cycles per
   second; the latency columns time the claim call alone.
2. Queued-to-claimed time with an idle real worker (``python -m odooops_action.worker``, poll
   interval 60 s, so only LISTEN/NOTIFY can wake it): ``claimed_at - queued_at`` on the server's
   clock, for runs created one at a time.

Finished history is bulk-inserted with ``session_replication_role = replica`` (superuser only, in
this one session): that skips the triggers, which would otherwise force every inserted run to
``queued`` and write an event and a NOTIFY per row. Every CHECK constraint still applies, so the
history rows are consistent finished runs (success with started/finished times). Queued runs are
created with ``ops.create_run`` like any client's.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import psycopg

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.devstack import PostgresCluster  # noqa: E402

PROJECT = "bench"
QUEUE_DEPTH = 10
CLAIMERS = (1, 2, 4, 8)
NOTIFY_SAMPLES = 20

HISTORY_SQL = """
INSERT INTO ops.runs (run_id, project_id, env_id, workflow_type, git_sha, git_ref, status, claimed_by,
                      queued_at, claimed_at, started_at, finished_at, heartbeat_at, attempt, exit_code,
                      event_seq)
SELECT 'run-' || to_char(t, 'YYYYMMDD-HH24MISS') || '-' || left(md5(i::text), 7),
       %(project)s, 'dev', 'build', md5(i::text) || left(md5(i::text), 8), 'main', 'success',
       'worker-history', t, t, t, t + interval '1 minute', t + interval '1 minute', 1, 0, 0
  FROM generate_series(%(first)s::int, %(last)s::int) AS i,
       LATERAL (SELECT timestamptz '2020-01-01 00:00:00+00' + i * interval '1 second' AS t) AS ts
"""


def setup(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO ops.projects (project_id) VALUES (%s)", (PROJECT,))
        conn.execute("INSERT INTO ops.environments (project_id, env_id) VALUES (%s, 'dev')", (PROJECT,))


def add_history(dsn: str, first: int, last: int) -> float:
    """Finished runs numbered ``first`` to ``last`` (their ids and commits derive from the number)."""
    started = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute(HISTORY_SQL, {"project": PROJECT, "first": first, "last": last})
        conn.execute("SET session_replication_role = origin")
        conn.execute("VACUUM ANALYZE ops.runs")
    return time.perf_counter() - started


def queue_runs(dsn: str, count: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "SELECT ops.create_run(%s, 'build', 'main',"
            " md5(clock_timestamp()::text || i) || left(md5(i::text), 8))"
            " FROM generate_series(1, %s) AS i",
            (PROJECT, count),
        )


def claimer(dsn: str, worker_id: str, start_at: float, seconds: float) -> list[float]:
    """Claim (timed) and requeue (untimed) until the time is up; returns claim latencies (s)."""
    latencies: list[float] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.time() < start_at:
            time.sleep(0.001)
        end = start_at + seconds
        while time.time() < end:
            before = time.perf_counter()
            row = conn.execute("SELECT run_id FROM ops.claim_next_run(%s)", (worker_id,)).fetchone()
            latencies.append(time.perf_counter() - before)
            if row is not None:
                conn.execute("UPDATE ops.runs SET status = 'queued' WHERE run_id = %s", (row[0],))
    return latencies


def measure_claims(dsn: str, claimers: int, seconds: float) -> tuple[float, list[float]]:
    start_at = time.time() + 1.0
    with ProcessPoolExecutor(max_workers=claimers) as pool:
        futures = [pool.submit(claimer, dsn, f"bench-{n}", start_at, seconds) for n in range(claimers)]
        latencies = [value for future in futures for value in future.result()]
    return len(latencies) / seconds, latencies


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def notify_latency(dsn: str, samples: int) -> list[float]:
    project = "bench-notify"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO ops.projects (project_id) VALUES (%s)", (project,))
        conn.execute("INSERT INTO ops.environments (project_id, env_id) VALUES (%s, 'dev')", (project,))
        env = {**os.environ, "DATABASE_URL": dsn, "PYTHONPATH": str(REPO_ROOT)}
        args = ["--project", project, "--poll-interval", "60", "--command", "true"]
        worker = subprocess.Popen(
            [sys.executable, "-m", "odooops_action.worker", *args],
            cwd=REPO_ROOT,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert worker.stderr is not None
            for line in worker.stderr:  # wait until the worker is listening and idle
                if "action=idle" in line:
                    break
            results = [_one_notify_sample(conn, project, n) for n in range(samples)]
        finally:
            worker.terminate()
            worker.wait(30)
    return results


def _one_notify_sample(conn: psycopg.Connection[tuple[object, ...]], project: str, number: int) -> float:
    time.sleep(0.3)  # the worker is idle again, far from its next poll
    sha = f"{number:08x}" * 5
    run_id = conn.execute(
        "SELECT ops.create_run(%s, 'build', 'main', %s) -> 'run' ->> 'run_id'", (project, sha)
    ).fetchone()
    assert run_id is not None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        row = conn.execute(
            "SELECT extract(epoch FROM claimed_at - queued_at) FROM ops.runs"
            " WHERE run_id = %s AND claimed_at IS NOT NULL",
            (run_id[0],),
        ).fetchone()
        if row is not None:
            return float(row[0])
        time.sleep(0.005)
    raise RuntimeError(f"run {run_id[0]} was not claimed within 10 s")


def machine() -> str:
    cpu = "unknown CPU"
    try:
        match = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        cpu = match.group(1).strip() if match else cpu
    except OSError:
        pass
    system = f"{platform.system()} {platform.release()}"
    return f"{os.cpu_count()} CPUs ({cpu}), {system}, Python {platform.python_version()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each claim measurement")
    parser.add_argument("--history", type=int, default=1_000_000, help="finished runs for the large case")
    args = parser.parse_args()
    rows: list[str] = []
    with PostgresCluster() as cluster:
        dsn = cluster.superuser_dsn
        with psycopg.connect(dsn) as conn:
            version = conn.execute("SHOW server_version").fetchone()
        print(f"machine: {machine()}; PostgreSQL {version[0] if version else '?'}", flush=True)
        setup(dsn)
        add_history(dsn, 1, 10)
        queue_runs(dsn, QUEUE_DEPTH)
        for history in (10, args.history):
            if history != 10:
                took = add_history(dsn, 11, history)
                print(f"inserted {history - 10:,} finished runs in {took:.1f}s", flush=True)
            for claimers in CLAIMERS:
                rate, latencies = measure_claims(dsn, claimers, args.seconds)
                p50, p95, p99 = (percentile(latencies, q) * 1000 for q in (0.5, 0.95, 0.99))
                timings = f"{p50:>6.2f} | {p95:>6.2f} | {p99:>6.2f}"
                rows.append(f"| {history:>9,} | {claimers:>8} | {rate:>8,.0f} | {timings} |")
                print(rows[-1], flush=True)
        wakeups = notify_latency(dsn, NOTIFY_SAMPLES)
    print("\nClaims (10 queued runs; claim + requeue cycles per second; claim latency in ms)")
    print("|   history | claimers | cycles/s |    p50 |    p95 |    p99 |")
    print("|----------:|---------:|---------:|-------:|-------:|-------:|")
    print("\n".join(rows))
    print(
        "\nQueued -> claimed with an idle worker (LISTEN/NOTIFY, poll interval 60 s,"
        f" {args.history:,} finished runs, {NOTIFY_SAMPLES} samples):"
        f" median {statistics.median(wakeups) * 1000:.1f} ms,"
        f" p95 {percentile(wakeups, 0.95) * 1000:.1f} ms, max {max(wakeups) * 1000:.1f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
