#!/usr/bin/env bash
# The seed's env_wait_ready.sh, written from its description in the seed guide
# (/work/shared/seed/odooops-scripts-guide.md, "env_wait_ready.sh"): the reference that
# bench/follow_bench.py measures `odooops wait` against. Not part of the product.
#
#   env_wait_ready.sh <run_id> [max_wait_seconds] [sleep_seconds]
#
# Every sleep_seconds: query ops.runs for the status; query ops.run_events for the latest 5 log
# entries and show them; on success query ops.artifacts for the build output URL (stdout: the URL
# or "success"). Exit 0 on success, 1 on failed, cancelled, not found or timeout. Progress on stderr.
# Needs SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY; uses curl and jq.
set -euo pipefail

run_id="${1:?usage: env_wait_ready.sh <run_id> [max_wait_seconds] [sleep_seconds]}"
max_wait="${2:-1200}"
sleep_seconds="${3:-5}"
: "${SUPABASE_URL:?SUPABASE_URL is not set}"
: "${SUPABASE_SERVICE_ROLE_KEY:?SUPABASE_SERVICE_ROLE_KEY is not set}"

api="${SUPABASE_URL%/}/rest/v1"
headers=(
    -H "apikey: ${SUPABASE_SERVICE_ROLE_KEY}"
    -H "Authorization: Bearer ${SUPABASE_SERVICE_ROLE_KEY}"
    -H "Accept-Profile: ops"
)

get() {
    curl -sS --fail "${headers[@]}" "$api/$1"
}

echo "Waiting for run ${run_id} to complete (timeout: ${max_wait}s)..." >&2
started=$(date +%s)
while true; do
    # 1. the run's status
    status="$(get "runs?run_id=eq.${run_id}&select=status" | jq -r '.[0].status // empty')"
    if [[ -z "$status" ]]; then
        echo "Run not found: ${run_id}" >&2
        exit 1
    fi
    case "$status" in
        success)
            echo "Run completed successfully: ${run_id}" >&2
            # 3. the build output URL
            url="$(get "artifacts?run_id=eq.${run_id}&select=storage_path&order=created_at.desc&limit=1" \
                | jq -r '.[0].storage_path // empty')"
            echo "${url:-success}"
            exit 0
            ;;
        failed)
            echo "Run failed: ${run_id}. Check ops.run_events for details." >&2
            exit 1
            ;;
        cancelled)
            echo "Run was cancelled: ${run_id}" >&2
            exit 1
            ;;
    esac
    echo "Status: ${status} - waiting..." >&2
    # 2. the latest 5 log entries, oldest first
    echo "Recent logs:" >&2
    get "run_events?run_id=eq.${run_id}&select=level,message&order=seq.desc&limit=5" \
        | jq -r 'reverse | .[] | "[\(.level)] \(.message)"' >&2
    # 4. until terminal or timeout
    if (( $(date +%s) - started >= max_wait )); then
        echo "Timeout after ${max_wait}s waiting for run ${run_id} (last status: ${status})" >&2
        exit 1
    fi
    sleep "$sleep_seconds"
done
