"""What a scoped token costs (not a test): ``python bench/token_bench.py [--calls 300]``.

Starts the local stack and times ``ops.poll_run`` over REST, one client at a time, with the
service_role key and with a token (publishable key + ``X-OdooOps-Token``): the token adds the
caller check (a SHA-256 and one unique-index lookup in ``ops.api_tokens``; ``last_used_at`` is
written at most once a minute) and the wrapper's call of the implementation in ``ops_private``.
Also times ``ops.poll_run`` in SQL, without HTTP, as service_role and as anon with the token header.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from odooops_action.config import ConnectionSettings  # noqa: E402
from odooops_action.domain import CreateRunRequest  # noqa: E402
from odooops_action.store.rest import RestStore  # noqa: E402
from tests.devstack import DevStack  # noqa: E402
from tests.lifecycle.helpers import mint_token  # noqa: E402

PROJECT = "bench-tokens"


def timed_polls(store: RestStore, run_id: str, calls: int) -> list[float]:
    store.poll_run(run_id)  # warm the connection
    timings = []
    for _ in range(calls):
        start = time.perf_counter()
        store.poll_run(run_id)
        timings.append((time.perf_counter() - start) * 1000)
    return timings


def sql_polls(stack: DevStack, run_id: str, role: str, token: str | None, calls: int) -> list[float]:
    headers = json.dumps({"x-odooops-token": token} if token else {})
    with stack.cluster.connect() as conn:
        timings = []
        for _ in range(calls):
            with conn.transaction():
                conn.execute(f"SET LOCAL ROLE {role}")
                conn.execute("SELECT set_config('request.headers', %s, true)", (headers,))
                start = time.perf_counter()
                conn.execute("SELECT ops.poll_run(%s)", (run_id,))
                timings.append((time.perf_counter() - start) * 1000)
        return timings


def describe(name: str, timings: list[float]) -> str:
    ordered = sorted(timings)
    p95 = ordered[int(len(ordered) * 0.95) - 1]
    return f"| {name} | {statistics.median(ordered):.2f} ms | {p95:.2f} ms |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    calls = parser.parse_args().calls
    with DevStack() as stack, stack.cluster.connect() as conn:
        conn.execute("INSERT INTO ops.projects (project_id) VALUES (%s)", (PROJECT,))
        conn.execute("INSERT INTO ops.environments (project_id, env_id) VALUES (%s, 'dev')", (PROJECT,))
        token = mint_token(stack.database_url, PROJECT, ("create", "read", "cancel"))
        service = RestStore(ConnectionSettings(supabase_url=stack.url, supabase_key=stack.service_role_key))
        scoped = RestStore(
            ConnectionSettings(supabase_url=stack.url, supabase_key=stack.publishable_key, token=token)
        )
        request = CreateRunRequest(
            project_id=PROJECT, workflow_type="build", git_ref="main", git_sha="ab" * 20
        )
        run_id = service.create_run(request).run.run_id
        rows = [
            describe("poll_run, service_role key", timed_polls(service, run_id, calls)),
            describe("poll_run, token + publishable key", timed_polls(scoped, run_id, calls)),
            describe(
                "SQL ops.poll_run as service_role", sql_polls(stack, run_id, "service_role", None, calls)
            ),
            describe("SQL ops.poll_run as anon + token", sql_polls(stack, run_id, "anon", token, calls)),
        ]
        service.close()
        scoped.close()
    print(f"{calls} sequential calls each, loopback, local stack\n")
    print("| call | median | p95 |\n| --- | --- | --- |")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
