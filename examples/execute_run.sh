#!/usr/bin/env bash
# A pretend Odoo build for the worker demo: `odooops worker --command examples/execute_run.sh`.
# The worker runs it as `execute_run.sh <run_id>` with ODOOOPS_* variables set; each output line
# becomes an event ("[warn] ..." sets the level), and an artifact is registered by appending a
# JSON line to "$ODOOOPS_ARTIFACTS_FILE". Exits 0, or fails before pushing with
# $ODOOOPS_DEMO_EXIT when set (ODOOOPS_DEMO_STEP_SECONDS sets the pause per step).
set -euo pipefail

run_id="${1:?usage: execute_run.sh <run_id>}"
sha="${ODOOOPS_GIT_SHA:-0000000000000000000000000000000000000000}"
sha7="${sha:0:7}"
step_delay="${ODOOOPS_DEMO_STEP_SECONDS:-0.5}"

step() {
    echo "[info] $*"
    sleep "$step_delay"
}

echo "[info] Run ${run_id}: ${ODOOOPS_WORKFLOW_TYPE:-build} of ${ODOOOPS_PROJECT_ID:-project} (${ODOOOPS_GIT_REF:-ref} @ ${sha7}) on ${ODOOOPS_ENV_ID:-dev}, attempt ${ODOOOPS_ATTEMPT:-1}"
step "Resolving addons"
echo "[debug] addons path: /mnt/extra-addons,/usr/lib/python3/dist-packages/odoo/addons"
echo "[warn] Module web_kanban_gauge is deprecated and will be removed in Odoo 18"
step "Building image"
echo "Step 1/4 : FROM odoo:17.0" >&2
echo "Step 2/4 : COPY addons /mnt/extra-addons" >&2
echo "Step 3/4 : RUN pip install -r requirements.txt" >&2
echo "Step 4/4 : LABEL org.opencontainers.image.revision=${sha}" >&2
exit_code="${ODOOOPS_DEMO_EXIT:-0}"
if [[ "$exit_code" != "0" ]]; then
    echo "ERROR: pip install failed: No matching distribution found for odoo-addon-demo" >&2
    echo "[error] Build failed (demo exit code ${exit_code})" >&2
    exit "$exit_code"
fi

step "Pushing ghcr.io/example/odoo:${sha7}"
image_size=734003200
digest="sha256:$(printf '%s' "ghcr.io/example/odoo:${sha}" | sha256sum | cut -d' ' -f1)"
if [[ -n "${ODOOOPS_ARTIFACTS_FILE:-}" ]]; then
    printf '{"artifact_type":"image","storage_path":"ghcr.io/example/odoo:%s","digest":"%s","size_bytes":%d,"metadata":{"git_ref":"%s"}}\n' \
        "$sha7" "$digest" "$image_size" "${ODOOOPS_GIT_REF:-}" >>"$ODOOOPS_ARTIFACTS_FILE"
fi
echo "[info] Build complete: ghcr.io/example/odoo:${sha7}"
