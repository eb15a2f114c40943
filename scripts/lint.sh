#!/usr/bin/env bash
# The lint gates of odooops-action. Runs locally (`bash scripts/lint.sh`), from `make test` and in CI.
#
# Prints one line per gate that passed; stops at the first gate that fails, after printing the
# tool's own output and the command to re-run. Every tool is a pinned PyPI package from the `dev`
# extra of pyproject.toml (`pip install -e '.[dev]'`) and works offline.
#
# Usage: scripts/lint.sh [GATE...]     e.g. scripts/lint.sh squawk zizmor
#        scripts/lint.sh --list
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

# Prefer the project's virtualenv when the caller has not activated one.
if [[ -z "${VIRTUAL_ENV:-}" && -x "$repo_root/.venv/bin/python" ]]; then
    PATH="$repo_root/.venv/bin:$PATH"
fi
export NO_COLOR=1 FORCE_COLOR=0 PY_COLORS=0

ALL_GATES=(ruff-check ruff-format mypy hadolint action-schema workflow-schema dependabot-schema squawk zizmor)

fail() {
    printf 'lint: FAILED gate %s: %s\n' "$1" "$2" >&2
    exit 1
}

require_tool() {
    local gate="$1" tool="$2"
    command -v "$tool" >/dev/null 2>&1 \
        || fail "$gate" "'$tool' is not installed; run: pip install -e '.[dev]'"
}

require_files() {
    local gate="$1"
    shift
    local path
    for path in "$@"; do
        [[ -e "$path" ]] || fail "$gate" "$path not found (run from a full checkout)"
    done
}

# run_gate NAME SUMMARY COMMAND...: run the command, print "ok" or the output and stop.
run_gate() {
    local gate="$1" summary="$2"
    shift 2
    local output
    if output="$("$@" 2>&1)"; then
        printf 'lint: ok  %-17s %s\n' "$gate" "$summary"
    else
        printf '%s\n' "$output" >&2
        fail "$gate" "$summary (re-run: $*)"
    fi
}

gate_ruff_check() {
    require_tool ruff-check ruff
    run_gate ruff-check "ruff check" ruff check --no-cache --output-format concise .
}

gate_ruff_format() {
    require_tool ruff-format ruff
    run_gate ruff-format "ruff format --check" ruff format --no-cache --check .
}

gate_mypy() {
    require_tool mypy mypy
    # Packages and --strict come from [tool.mypy] in pyproject.toml.
    run_gate mypy "mypy --strict (odooops_action)" mypy --no-color-output --no-error-summary
}

gate_hadolint() {
    require_tool hadolint hadolint
    require_files hadolint Dockerfile
    run_gate hadolint "hadolint Dockerfile" hadolint --no-color --failure-threshold style Dockerfile
}

gate_action_schema() {
    require_tool action-schema check-jsonschema
    require_files action-schema action.yml
    run_gate action-schema "action.yml against vendor.github-actions" \
        check-jsonschema --no-cache --builtin-schema vendor.github-actions action.yml
}

gate_workflow_schema() {
    require_tool workflow-schema check-jsonschema
    local workflows=(.github/workflows/*.yml)
    require_files workflow-schema "${workflows[@]}"
    run_gate workflow-schema "${#workflows[@]} workflows against vendor.github-workflows" \
        check-jsonschema --no-cache --builtin-schema vendor.github-workflows "${workflows[@]}"
}

gate_dependabot_schema() {
    require_tool dependabot-schema check-jsonschema
    require_files dependabot-schema .github/dependabot.yml
    run_gate dependabot-schema ".github/dependabot.yml against vendor.dependabot" \
        check-jsonschema --no-cache --builtin-schema vendor.dependabot .github/dependabot.yml
}

gate_squawk() {
    require_tool squawk squawk
    local migrations=(supabase/migrations/*.sql)
    require_files squawk .squawk.toml "${migrations[@]}"
    run_gate squawk "${#migrations[@]} migrations (rules: .squawk.toml)" \
        squawk --config .squawk.toml --reporter gcc "${migrations[@]}"
}

gate_zizmor() {
    require_tool zizmor zizmor
    require_files zizmor .github/workflows action.yml .github/dependabot.yml
    # Offline unless asked: the online audits (a pinned SHA that is not a commit of the action's
    # repository, a version comment that is not the SHA's tag, actions with known advisories) need
    # the GitHub API and a token in GH_TOKEN. ci.yml turns them on; a laptop stays offline.
    local mode=(--offline) audits="offline audits"
    if [[ "${ZIZMOR_ONLINE:-}" == 1 ]]; then
        [[ -n "${GH_TOKEN:-}" ]] || fail zizmor "ZIZMOR_ONLINE=1 needs a GitHub token in GH_TOKEN"
        mode=() audits="online audits"
    fi
    run_gate zizmor "workflows, action.yml, dependabot ($audits)" \
        zizmor "${mode[@]}" --no-progress --format plain .github/workflows action.yml .github/dependabot.yml
}

main() {
    local gates=("$@")
    if [[ "${1:-}" == "--list" ]]; then
        printf '%s\n' "${ALL_GATES[@]}"
        return 0
    fi
    if ((${#gates[@]} == 0)); then
        gates=("${ALL_GATES[@]}")
    fi
    local gate
    for gate in "${gates[@]}"; do
        if ! declare -F "gate_${gate//-/_}" >/dev/null; then
            fail "$gate" "unknown gate; known gates: ${ALL_GATES[*]}"
        fi
    done
    for gate in "${gates[@]}"; do
        "gate_${gate//-/_}"
    done
    printf 'lint: all %d gates passed\n' "${#gates[@]}"
}

main "$@"
