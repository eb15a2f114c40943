#!/usr/bin/env bash
# The `action` job of ci.yml: the local stack on the runner host, reachable from the Action's container.
#
#   e2e_stack.sh start          start `python -m tests.devstack` on the PostgreSQL of E2E_DATABASE_URL
#                               (ci.yml: the postgres service; unset: a throwaway cluster), forward
#                               its REST port to the Docker bridge gateway (tcp_forward.py), register
#                               a project + environment, export E2E_* to $GITHUB_ENV for `uses: ./`
#   e2e_stack.sh worker RUN_ID  start `odooops worker --once` in the background (host side, REST)
#   e2e_stack.sh verify         check the steps' outputs (env) against the database
#   e2e_stack.sh logs           print the stack's, the forwarder's and the worker's logs
#   e2e_stack.sh stop           stop everything this script started (by pid); the database server,
#                               when given, is the job's and stays
#
# Why a forwarder: a container action runs on a Docker bridge network (the job's network when the
# job has services, else the default `bridge`: actions/runner passes `--network` only when
# job.container.network is set), where 127.0.0.1 is the container itself. The host is the bridge's
# gateway, so tcp_forward.py forwards the REST server (bound to 127.0.0.1 on the host) there.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
state_dir="${RUNNER_TEMP:-/tmp}/odooops-e2e"
python_bin="$repo_root/.venv/bin/python"
# Any free port on the gateway; E2E_FORWARD_PORT overrides it (tests/delivery rehearses this job).
forward_port="${E2E_FORWARD_PORT:-54321}"

die() {
    echo "::error::e2e: $*"
    exit 1
}

load_state() {
    [[ -f "$state_dir/devstack.env" ]] || die "the stack is not running (no $state_dir/devstack.env)"
    # shellcheck disable=SC1091 # written by tests.devstack: NAME=<shell-quoted value> lines
    source "$state_dir/devstack.env"
}

rest() {
    # rest METHOD PATH [JSON]: one request to the stack's REST API on the host, schema ops.
    local method="$1" path="$2" body="${3:-}"
    local args=(--fail-with-body --silent --show-error --max-time 10 -X "$method"
        -H "apikey: $SUPABASE_SERVICE_ROLE_KEY" -H "Authorization: Bearer $SUPABASE_SERVICE_ROLE_KEY"
        -H "Accept-Profile: ops" -H "Content-Profile: ops" -H "Content-Type: application/json")
    if [[ -n "$body" ]]; then args+=(--data "$body"); fi
    curl "${args[@]}" "$SUPABASE_URL/rest/v1/$path"
}

wait_for_file() {
    local path="$1" pid="$2" seconds="$3"
    for _ in $(seq $((seconds * 10))); do
        [[ -s "$path" ]] && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

start() {
    mkdir -p "$state_dir"
    cd "$repo_root"
    local database_args=()
    if [[ -n "${E2E_DATABASE_URL:-}" ]]; then
        database_args=(--database-url "$E2E_DATABASE_URL")
        echo "database: ${E2E_DATABASE_URL%%://*}://${E2E_DATABASE_URL#*@} (given)"
    else
        echo "database: a throwaway PostgreSQL cluster (E2E_DATABASE_URL is not set)"
    fi
    "$python_bin" -m tests.devstack --env-file "$state_dir/devstack.env" "${database_args[@]}" \
        >"$state_dir/devstack.log" 2>&1 &
    echo $! >"$state_dir/devstack.pid"
    wait_for_file "$state_dir/devstack.env" "$!" 90 || {
        cat "$state_dir/devstack.log"
        die "the stack did not start within 90s"
    }
    load_state
    echo "::add-mask::$SUPABASE_SERVICE_ROLE_KEY"

    local network="${JOB_NETWORK:-bridge}" gateway rest_port
    gateway="$(docker network inspect "$network" --format '{{range .IPAM.Config}}{{.Gateway}}{{end}}')"
    [[ "$gateway" =~ ^[0-9.]+$ ]] || die "no IPv4 gateway for Docker network $network (got '$gateway')"
    rest_port="${SUPABASE_URL##*:}"
    rest_port="${rest_port%%/*}"
    "$python_bin" "$repo_root/.github/scripts/tcp_forward.py" "$gateway" "$forward_port" 127.0.0.1 "$rest_port" \
        >"$state_dir/forward.log" 2>&1 &
    echo $! >"$state_dir/forward.pid"
    wait_for_file "$state_dir/forward.log" "$!" 10 || {
        cat "$state_dir/forward.log"
        die "the forwarder did not start on $gateway:$forward_port"
    }

    local project="e2e-${GITHUB_RUN_ID:-local}-${GITHUB_RUN_ATTEMPT:-1}" environment="ci"
    rest POST projects "{\"project_id\": \"$project\", \"name\": \"CI end-to-end\"}" >/dev/null
    rest POST environments "{\"project_id\": \"$project\", \"env_id\": \"$environment\"}" >/dev/null

    # A container on that network must get through the forwarder before the Action is run; the
    # probe is bash's /dev/tcp in an image the job already has (E2E_PROBE_IMAGE).
    docker run --rm --network "$network" --entrypoint bash "${E2E_PROBE_IMAGE:?set E2E_PROBE_IMAGE}" \
        -c 'exec 3<>"/dev/tcp/$0/$1"' "$gateway" "$forward_port" 2>"$state_dir/probe.log" \
        || { cat "$state_dir/probe.log"; die "a container on $network cannot reach $gateway:$forward_port"; }

    {
        echo "E2E_SUPABASE_URL=http://$gateway:$forward_port"
        echo "E2E_SUPABASE_KEY=$SUPABASE_SERVICE_ROLE_KEY"
        echo "E2E_PROJECT_ID=$project"
        echo "E2E_ENV_ID=$environment"
    } >>"${GITHUB_ENV:-/dev/null}"
    echo "stack ready: REST on the host at $SUPABASE_URL, for containers at http://$gateway:$forward_port"
}

worker() {
    local run_id="${1:?usage: e2e_stack.sh worker RUN_ID}"
    load_state
    [[ "$run_id" =~ ^run-[0-9]{8}-[0-9]{6}-[0-9a-f]{7}(-[0-9]+)?$ ]] || die "create gave no run id ('$run_id')"
    cd "$repo_root"
    SUPABASE_URL="$SUPABASE_URL" SUPABASE_SERVICE_ROLE_KEY="$SUPABASE_SERVICE_ROLE_KEY" \
        "$python_bin" -m odooops_action worker --once --store rest --workflow-type build --poll-interval 1 \
        --command "bash .github/scripts/e2e_build.sh" >"$state_dir/worker.log" 2>&1 &
    echo $! >"$state_dir/worker.pid"
    echo "worker started (pid $!) for $run_id"
}

expect() {
    local what="$1" got="$2" wanted="$3"
    if [[ "$got" != "$wanted" ]]; then
        echo "::error::e2e: $what is '$got', expected '$wanted'"
        return 1
    fi
    echo "ok: $what = $got"
}

verify() {
    load_state
    local failures=0 first_status second_status events
    expect "wait output status" "${WAIT_STATUS:-}" success || failures=$((failures + 1))
    expect "destroy output status" "${DESTROY_STATUS:-}" cancelled || failures=$((failures + 1))
    first_status="$(rest GET "runs?select=status&run_id=eq.$FIRST_RUN" | jq -r '.[0].status')"
    second_status="$(rest GET "runs?select=status&run_id=eq.$SECOND_RUN" | jq -r '.[0].status')"
    expect "status of $FIRST_RUN in ops.runs" "$first_status" success || failures=$((failures + 1))
    expect "status of $SECOND_RUN in ops.runs" "$second_status" cancelled || failures=$((failures + 1))
    events="$(rest GET "run_events?select=message,payload&run_id=eq.$FIRST_RUN&order=seq.asc")"
    expect "stdout lines of the build in ops.run_events" \
        "$(jq -r 'map(select(.payload.stream == "stdout" and (.message | startswith("e2e build of")))) | length' \
            <<<"$events")" 1 || failures=$((failures + 1))
    expect "artifacts of $FIRST_RUN" \
        "$(rest GET "artifacts?select=artifact_type&run_id=eq.$FIRST_RUN" | jq -r 'map(.artifact_type) | join(",")')" \
        image || failures=$((failures + 1))
    if [[ "$(ps -o stat= -p "$(cat "$state_dir/worker.pid")" 2>/dev/null || true)" =~ ^[^Z] ]]; then
        echo "::error::e2e: the --once worker is still running"
        failures=$((failures + 1))
    fi
    ((failures == 0)) || die "$failures check(s) failed"
}

logs() {
    local name token
    for name in devstack forward worker; do
        if [[ -f "$state_dir/$name.log" ]]; then
            token="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
            echo "::group::$name.log"
            # The logs hold text the runner must not execute as workflow commands.
            echo "::stop-commands::$token"
            # The stack prints its throwaway keys when it starts; they stay out of the job log.
            grep -v -E '^[A-Z_]*(KEY|SECRET)=' "$state_dir/$name.log" || true
            echo "::$token::"
            echo "::endgroup::"
        fi
    done
}

stop() {
    local name pid
    for name in worker forward devstack; do
        [[ -f "$state_dir/$name.pid" ]] || continue
        pid="$(cat "$state_dir/$name.pid")"
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid"
            for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        fi
        rm -f "$state_dir/$name.pid"
    done
}

case "${1:-}" in
    start | verify | logs | stop) "$1" ;;
    worker) worker "${2:-}" ;;
    *) die "usage: e2e_stack.sh start|worker RUN_ID|verify|logs|stop" ;;
esac
