"""Rules every workflow in .github/workflows keeps (the ones a schema or zizmor does not enforce)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("ruamel.yaml", reason="ruamel.yaml comes with check-jsonschema (dev extra)")

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((REPO_ROOT / ".github" / "workflows").glob("*.yml"))
PINNED_USES = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
VERSION_COMMENT = re.compile(r"#\s*v\d+\.\d+\.\d+\s*$")


def load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.YAML(typ="safe").load(path.read_text())
    return loaded


def steps_of(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


@pytest.fixture(params=WORKFLOWS, ids=[path.name for path in WORKFLOWS])
def workflow_path(request: pytest.FixtureRequest) -> Path:
    path: Path = request.param
    return path


def test_there_are_workflows() -> None:
    assert {path.name for path in WORKFLOWS} >= {"ci.yml", "release.yml"}


def test_no_default_permissions(workflow_path: Path) -> None:
    assert load(workflow_path)["permissions"] == {}


def test_every_job_has_a_timeout_and_its_own_permissions(workflow_path: Path) -> None:
    for name, job in load(workflow_path)["jobs"].items():
        assert "permissions" in job, f"job {name} inherits permissions"
        if "uses" not in job:  # a reusable-workflow call takes the called jobs' timeouts
            assert isinstance(job.get("timeout-minutes"), int), f"job {name} has no timeout-minutes"


def test_third_party_actions_are_pinned_by_commit_with_a_version_comment(workflow_path: Path) -> None:
    lines = workflow_path.read_text().splitlines()
    uses_lines = [line for line in lines if re.match(r"^\s*(-\s+)?uses:", line)]
    for line in uses_lines:
        reference = line.split("uses:", 1)[1].split("#", 1)[0].strip()
        if reference.startswith(("./", "$/")):
            continue
        assert PINNED_USES.match(reference), f"not pinned to a full commit SHA: {line.strip()}"
        assert VERSION_COMMENT.search(line), f"no '# vX.Y.Z' comment: {line.strip()}"


def test_checkouts_keep_no_credentials(workflow_path: Path) -> None:
    for step in steps_of(load(workflow_path)):
        if str(step.get("uses", "")).startswith("actions/checkout@"):
            assert step.get("with", {}).get("persist-credentials") is False


def test_the_same_action_is_pinned_to_the_same_commit_everywhere() -> None:
    pins: dict[str, set[str]] = {}
    for path in WORKFLOWS:
        for step in steps_of(load(path)):
            action, _, ref = str(step.get("uses", "")).partition("@")
            if ref:
                pins.setdefault(action, set()).add(ref)
    assert {action: refs for action, refs in pins.items() if len(refs) > 1} == {}


def test_ci_runs_the_action_from_the_checkout_in_every_mode() -> None:
    ci = load(REPO_ROOT / ".github" / "workflows" / "ci.yml")
    modes = [step["with"]["mode"] for step in ci["jobs"]["action"]["steps"] if step.get("uses") == "./"]
    assert set(modes) == {"create", "wait", "destroy"}
    assert "workflow_call" in ci["on"], "release.yml runs CI through workflow_call"


def test_ci_runs_every_lint_gate_and_the_test_suite() -> None:
    ci = load(REPO_ROOT / ".github" / "workflows" / "ci.yml")
    listed = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "lint.sh"), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    gates_run: list[str] = []
    for step in ci["jobs"]["lint"]["steps"]:
        command = step.get("run", "")
        if command.startswith("bash scripts/lint.sh "):
            gates_run += command.split()[2:]
    assert sorted(gates_run) == sorted(listed)
    assert {"hadolint", "action-schema", "workflow-schema", "squawk", "zizmor", "mypy"} <= set(listed)
    zizmor_step = next(
        s for s in ci["jobs"]["lint"]["steps"] if s.get("run") == "bash scripts/lint.sh zizmor"
    )
    assert zizmor_step["env"]["ZIZMOR_ONLINE"] == "1"
    assert [s["run"] for s in ci["jobs"]["tests"]["steps"] if "run" in s][-1] == "make pytest"
