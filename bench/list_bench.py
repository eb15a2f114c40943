"""How fast the operator reads answer over a long history: ``odooops list`` (``ops.list_runs``),
``status`` (``ops.run_status``) and ``doctor`` (``ops.doctor_report``) over 1,000,000 finished runs.

    python bench/list_bench.py             # 1,000,000 runs, about two minutes
    python bench/list_bench.py --runs 100000

A throwaway stack (``tests.devstack``) gets ``--runs`` finished runs (success 90 %, failed 9 %,
cancelled 1 %) spread over a year, 20 projects x 3 environments x 3 workflow types, inserted in
bulk with the triggers off (the history, not the write path, is what is measured), then ANALYZEd.
Each query shape runs 25 times; the table shows the median and the slowest of the database's own
execution time (EXPLAIN ANALYZE) and of the whole call through each store (REST over loopback and
PostgreSQL). Budget: the database answers each list page (up to 100 runs) in well under
100 ms. It also times
building the migration's indexes on that history (what an upgrade holds writes for).
Exit 1 when a budget is missed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import psycopg  # noqa: E402

from odooops_action.config import ConnectionSettings  # noqa: E402
from odooops_action.operator.calls import call  # noqa: E402
from odooops_action.store.factory import open_store  # noqa: E402
from tests.devstack import DevStack  # noqa: E402

BUDGET_MS = 100.0
REPEATS = 25
PROJECTS = 20

LOAD = """
SET session_replication_role = replica;
INSERT INTO ops.projects (project_id) SELECT 'bench-' || p FROM generate_series(1, %(projects)s) p;
INSERT INTO ops.environments (project_id, env_id)
  SELECT 'bench-' || p, e FROM generate_series(1, %(projects)s) p, unnest(array['dev', 'staging', 'prod']) e;
INSERT INTO ops.runs (run_id, project_id, env_id, workflow_type, git_sha, git_ref, status, claimed_by,
                      queued_at, claimed_at, started_at, finished_at, heartbeat_at, attempt, exit_code,
                      event_seq, metadata)
SELECT 'run-' || to_char(q AT TIME ZONE 'UTC', 'YYYYMMDD-HH24MISS') || '-' || left(sha, 7)
         || '-' || (i %% 9000 + 1),
       'bench-' || (i %% %(projects)s + 1),
       (array['dev', 'staging', 'prod'])[i %% 3 + 1],
       (array['build', 'deploy', 'test'])[(i / 3) %% 3 + 1],
       sha, 'main',
       CASE WHEN i %% 100 = 0 THEN 'cancelled' WHEN i %% 100 < 10 THEN 'failed' ELSE 'success' END,
       'worker-' || (i %% 7), q, q + interval '1 second', q + interval '2 seconds', q + interval '5 minutes',
       q + interval '5 minutes', 1, CASE WHEN i %% 100 BETWEEN 1 AND 9 THEN 1 ELSE 0 END, 6, '{}'::jsonb
  FROM (SELECT i, now() - interval '2 hours' - (i * interval '31 seconds') AS q,
               md5(i::text) || left(md5((i + 1)::text), 8) AS sha
          FROM generate_series(1, %(runs)s) i) s;
SET session_replication_role = origin;
ANALYZE ops.runs;
"""

SHAPES: list[tuple[str, dict[str, Any]]] = [
    ("odooops list", {}),
    ("list --project", {"project_id": "bench-7"}),
    ("list --project --env", {"project_id": "bench-7", "env_id": "prod"}),
    ("list --status failed", {"status": "failed"}),
    ("list --status cancelled", {"status": "cancelled"}),
    ("list --status running (none)", {"status": "running"}),
    ("list --workflow-type deploy", {"workflow_type": "deploy"}),
    ("list --since 2h (none)", {"since_seconds": 7000.0}),
    ("list --project --status failed", {"project_id": "bench-7", "status": "failed"}),
    ("list --limit 1000", {"max_runs": 1000}),
]

INDEXES = [
    "runs_recent_idx ON ops.runs (queued_at DESC, run_id DESC)",
    "runs_status_recent_idx ON ops.runs (status, queued_at DESC, run_id DESC)",
    "runs_env_recent_idx ON ops.runs (project_id, env_id, queued_at DESC, run_id DESC)",
    "runs_workflow_recent_idx ON ops.runs (workflow_type, queued_at DESC, run_id DESC)",
]


def median_max(samples: list[float]) -> str:
    return f"{statistics.median(samples):.1f} ms ({max(samples):.1f})"


def server_ms(db: psycopg.Connection[Any], arguments: dict[str, Any]) -> float:
    names = ", ".join(f"{name} => %({name})s" for name in arguments)
    query = f"EXPLAIN (ANALYZE, FORMAT JSON) SELECT ops.list_runs({names})"
    plan = db.execute(query, arguments).fetchone()
    assert plan is not None
    return float(plan[0][0]["Execution Time"])


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return (time.perf_counter() - started) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    rows: list[tuple[str, str, str, str, str]] = []
    failed = False
    with DevStack() as stack, psycopg.connect(stack.database_url, autocommit=True) as db:
        load_s = timed(lambda: db.execute(LOAD % {"runs": args.runs, "projects": PROJECTS})) / 1000
        for index in INDEXES:
            db.execute(f"DROP INDEX ops.{index.split()[0]}")
        build_s = timed(lambda: [db.execute(f"CREATE INDEX {index}") for index in INDEXES]) / 1000
        db.execute("ANALYZE ops.runs")
        rest = open_store(
            ConnectionSettings(supabase_url=stack.url, supabase_key=stack.service_role_key), "rest"
        )
        pg = open_store(ConnectionSettings(database_url=stack.database_url), "postgres")
        anchor = db.execute(
            "SELECT run_id FROM ops.runs ORDER BY queued_at DESC, run_id DESC OFFSET 500000 LIMIT 1"
        )
        deep = anchor.fetchone()
        shapes = [*SHAPES]
        if deep is not None:
            shapes.append(("list --before <500,000th run>", {"before_run_id": deep[0]}))
        for label, arguments in shapes:
            server = [server_ms(db, arguments) for _ in range(REPEATS)]
            over_pg = [timed(lambda a=arguments: call(pg, "list_runs", a)) for _ in range(REPEATS)]
            over_rest = [timed(lambda a=arguments: call(rest, "list_runs", a)) for _ in range(REPEATS)]
            ok = statistics.median(server) < BUDGET_MS and max(server) < BUDGET_MS
            verdict = "pass" if ok else "FAIL"
            if arguments.get("max_runs", 20) > 100:
                verdict = "(a 1,000-run page: no budget)"
            else:
                failed = failed or not ok
            rows.append((label, median_max(server), median_max(over_pg), median_max(over_rest), verdict))
        some_run = db.execute("SELECT run_id FROM ops.runs LIMIT 1").fetchone()
        assert some_run is not None
        for label, function, arguments in (
            ("odooops status RUN", "run_status", {"run_id": some_run[0]}),
            ("odooops doctor (report)", "doctor_report", {}),
        ):
            over_pg = [timed(lambda f=function, a=arguments: call(pg, f, a)) for _ in range(REPEATS)]
            over_rest = [timed(lambda f=function, a=arguments: call(rest, f, a)) for _ in range(REPEATS)]
            ok = statistics.median(over_pg) < BUDGET_MS
            failed = failed or not ok
            rows.append((label, "-", median_max(over_pg), median_max(over_rest), "pass" if ok else "FAIL"))
        pg.close()
        rest.close()
    print(
        f"{args.runs:,} finished runs loaded in {load_s:.1f} s; the migration's 4 list indexes built in "
        f"{build_s:.1f} s"
    )
    print(f"median (slowest) of {REPEATS}; budget: database time < {BUDGET_MS:.0f} ms per page\n")
    print("| Query | Database (EXPLAIN ANALYZE) | Over PostgreSQL | Over REST | Verdict |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if args.json:
        args.json.write_text(
            json.dumps({"runs": args.runs, "load_s": load_s, "index_build_s": build_s, "rows": rows})
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
