#!/usr/bin/env bash
# The "build" the CI worker runs for the end-to-end job: a few log lines and one image artifact,
# through the worker's documented channels (stdout/stderr lines, $ODOOOPS_ARTIFACTS_FILE).
set -euo pipefail
echo "e2e build of ${ODOOOPS_PROJECT_ID} at ${ODOOOPS_GIT_SHA:0:7} (run ${ODOOOPS_RUN_ID}, attempt ${ODOOOPS_ATTEMPT})"
echo "[warn] a warning the Action turns into an annotation" >&2
printf '{"artifact_type": "image", "storage_path": "ghcr.io/example/e2e:%s"}\n' "${ODOOOPS_GIT_SHA:0:7}" \
    >>"$ODOOOPS_ARTIFACTS_FILE"
echo "e2e build done"
