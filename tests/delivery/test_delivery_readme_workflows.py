"""The README's workflow examples are valid workflows that use only what action.yml declares."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")
MANIFEST = yaml.safe_load((REPO / "action.yml").read_text(encoding="utf-8"))
EXAMPLES = [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", README, re.S)]
OUR_ACTION = re.compile(r"^[\w.-]+/odooops-action@v\d+$")


def workflow_schema() -> dict[str, Any]:
    schemas = resources.files("check_jsonschema.builtin_schemas.vendor")
    loaded: dict[str, Any] = json.loads(schemas.joinpath("github-workflows.json").read_text(encoding="utf-8"))
    return loaded


def our_steps(workflow: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (job_name, step)
        for job_name, job in workflow["jobs"].items()
        for step in job.get("steps", [])
        if OUR_ACTION.match(step.get("uses", ""))
    ]


def test_the_readme_shows_the_three_workflows_users_write() -> None:
    names = [example["name"] for example in EXAMPLES]
    assert names == ["Build", "Deploy", "PR build"]
    assert all(our_steps(example) for example in EXAMPLES)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda example: example["name"])
def test_each_example_is_a_valid_workflow(example: dict[str, Any]) -> None:
    # YAML reads the key `on` as True; the schema wants the text key, as GitHub reads it.
    workflow = {("on" if key is True else key): value for key, value in example.items()}
    jsonschema.validate(workflow, workflow_schema())


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda example: example["name"])
def test_each_step_uses_declared_inputs_and_passes_what_its_mode_requires(example: dict[str, Any]) -> None:
    declared = set(MANIFEST["inputs"])
    for job_name, step in our_steps(example):
        inputs = step["with"]
        assert set(inputs) <= declared, (job_name, set(inputs) - declared)
        assert inputs["mode"] in ("create", "wait", "destroy")
        assert "supabase_url" in inputs
        assert "supabase_key" in inputs
        if inputs["mode"] == "create":
            assert {"project_id", "workflow_type"} <= set(inputs)
        else:
            assert "run_id" in inputs


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda example: example["name"])
def test_outputs_read_by_the_examples_exist(example: dict[str, Any]) -> None:
    text = yaml.safe_dump(example)
    used = set(re.findall(r"steps\.[\w-]+\.outputs\.(\w+)", text))
    assert used <= set(MANIFEST["outputs"]), used - set(MANIFEST["outputs"])


def test_a_check_run_example_asks_for_the_checks_permission() -> None:
    for example in EXAMPLES:
        wants_check_run = any(
            str(step["with"].get("check_run")).lower() == "true" for _, step in our_steps(example)
        )
        if wants_check_run:
            assert example["permissions"].get("checks") == "write", example["name"]
