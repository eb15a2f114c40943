"""The Action's packaging: action.yml, the Dockerfile, requirements.txt, and a fast, lean start."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import psycopg
import pytest
from action_harness import ENTRYPOINT, POST_ENTRYPOINT, REPO, FakeWorker, Workspace, load_manifest

DOCKERFILE = (REPO / "Dockerfile").read_text(encoding="utf-8")
DOCKERIGNORE = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()


def dockerfile_instructions() -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", DOCKERFILE)
    pairs = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def test_manifest_runs_the_image_with_a_post_step() -> None:
    runs = load_manifest()["runs"]

    assert runs["using"] == "docker"
    assert runs["image"] == "Dockerfile"
    assert "entrypoint" not in runs  # the image's ENTRYPOINT runs the main step
    assert runs["post-entrypoint"] == "/opt/odooops/post_entrypoint.py"
    assert runs["post-if"] == "always()"
    # The image's ENTRYPOINT and the runner's --entrypoint both execute the scripts: their #! lines
    # carry the interpreter's isolation flags (odooops_action/action/isolation.py).
    for script in (ENTRYPOINT, POST_ENTRYPOINT):
        assert script.read_text().splitlines()[0] == "#!/usr/local/bin/python -Esu"


def test_every_input_and_output_is_documented() -> None:
    manifest = load_manifest()
    assert manifest["branding"]["icon"]
    assert manifest["branding"]["color"]
    for name, spec in manifest["inputs"].items():
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name), f"input ids use underscores: {name}"
        assert spec["description"].strip(), name
        if name != "mode":
            assert spec["required"] is False
            assert isinstance(spec["default"], str), f"{name}: defaults must be strings"
    assert manifest["inputs"]["mode"]["required"] is True
    for name, spec in manifest["outputs"].items():
        assert spec["description"].strip(), name


def test_dockerfile_shape() -> None:
    instructions = dockerfile_instructions()
    keywords = [keyword for keyword, _ in instructions]

    assert "USER" not in keywords
    assert "WORKDIR" not in keywords
    base = dict(instructions)["FROM"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", base)
    assert base.split(":")[1].startswith(".".join(map(str, sys.version_info[:2])))
    (entrypoint,) = [rest for keyword, rest in instructions if keyword == "ENTRYPOINT"]
    command = json.loads(entrypoint)  # exec form
    assert command == ["/opt/odooops/entrypoint.py"]  # its #! line: python -Esu
    env = " ".join(rest for keyword, rest in instructions if keyword == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "PYTHONUNBUFFERED=1" in env
    copies = [rest for keyword, rest in instructions if keyword == "COPY"]
    copied = {source for rest in copies for source in rest.split()[:-1]}
    assert copied == {"requirements.txt", "entrypoint.py", "post_entrypoint.py", "odooops_action/"}
    assert any("pip install --no-cache-dir -r" in rest for keyword, rest in instructions if keyword == "RUN")


def test_dockerignore_keeps_tests_and_local_state_out() -> None:
    # Everything excluded first, then the few files the image needs re-included.
    assert DOCKERIGNORE.index("**") < min(i for i, line in enumerate(DOCKERIGNORE) if line.startswith("!"))
    included = {line[1:] for line in DOCKERIGNORE if line.startswith("!")}
    assert not any(path.startswith(("tests", ".venv", ".git")) for path in included)


def test_requirements_mirror_the_pinned_runtime_dependencies() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    declared = set(pyproject["project"]["dependencies"])
    lines = (REPO / "requirements.txt").read_text(encoding="utf-8").splitlines()
    pins = {line.strip() for line in lines if line.strip() and not line.startswith("#")}

    assert declared <= pins
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[0-9][0-9A-Za-z.]*", pin) for pin in pins), pins
    from importlib.metadata import version

    for pin in pins:
        name, pinned = pin.split("==")
        assert version(name.split("[")[0]) == pinned, f"{name}: the tests run {version(name.split('[')[0])}"


def imported_modules(stderr: str) -> set[str]:
    """Module names from ``python -X importtime`` output."""
    return {
        line.rsplit("|", 1)[-1].strip() for line in stderr.splitlines() if line.startswith("import time:")
    }


def heavy(modules: set[str]) -> set[str]:
    return {
        m for m in modules if m.split(".")[0] in ("github", "psycopg", "psycopg_binary", "requests", "jwt")
    }


@pytest.mark.parametrize("check_run", ["false", "true"])
def test_start_imports_only_what_the_mode_needs(
    workspace: Workspace, connection: dict[str, str], project: str, pg_dsn: str, check_run: str
) -> None:
    worker = FakeWorker(pg_dsn, project).start()
    inputs = {
        **connection,
        "mode": "create",
        "project_id": project,
        "workflow_type": "build",
        "wait": "true",
        "check_run": check_run,
        "github_token": "ghs_x",
    }
    env = workspace.environment(inputs, {"GITHUB_API_URL": "http://127.0.0.1:9"})
    process = subprocess.run(
        [sys.executable, "-X", "importtime", str(ENTRYPOINT)],
        env=env,
        cwd=workspace.workspace,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    worker.join()

    assert process.returncode == 0, process.stdout[-2000:]
    modules = imported_modules(process.stderr)
    assert "odooops_action.store.rest" in modules
    if check_run == "false":
        assert heavy(modules) == set()
    else:
        assert "github" in modules  # PyGithub, only for the check run
        assert not any(m.startswith("psycopg") for m in modules)


# Replaces httpx's send in the entry point's process: reports what is loaded when the first
# request leaves, then ends the process (nothing reaches a server).
_FIRST_REQUEST_PROBE = """
import json, os, runpy, sys
import httpx

def send(self, request, *args, **kwargs):
    print("PROBE " + json.dumps({"path": request.url.path, "modules": sorted(sys.modules)}), flush=True)
    os._exit(0)

httpx.Client.send = send
sys.path.insert(0, os.path.dirname(sys.argv[1]))  # as when the script itself is run
runpy.run_path(sys.argv[1], run_name="__main__")
"""


@pytest.mark.slow  # three Action processes, each through its connection retries
@pytest.mark.parametrize(
    ("mode", "inputs"),
    [
        ("create", {"project_id": "shop", "workflow_type": "build"}),
        ("wait", {"run_id": "run-20261201-000000-aaaaaaa"}),
        ("destroy", {"run_id": "run-20261201-000000-aaaaaaa"}),
    ],
)
def test_first_request_leaves_before_pydantic_is_imported(
    workspace: Workspace, mode: str, inputs: dict[str, str]
) -> None:
    """The start-up budget: validation and the request need no pydantic (the largest import)."""
    connection = {"supabase_url": "http://127.0.0.1:9", "supabase_key": "sb_secret_" + "c" * 32}
    env = workspace.environment({**connection, "mode": mode, **inputs})
    process = subprocess.run(
        [sys.executable, "-c", _FIRST_REQUEST_PROBE, str(ENTRYPOINT)],
        env=env,
        cwd=workspace.workspace,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    probes = [line for line in process.stdout.splitlines() if line.startswith("PROBE ")]
    assert probes, process.stdout[-2000:] + process.stderr[-2000:]
    first = json.loads(probes[0].removeprefix("PROBE "))
    assert first["path"].startswith("/rest/v1/rpc/")
    loaded = set(first["modules"])
    assert not {m for m in loaded if m.split(".")[0] in ("pydantic", "pydantic_core")}
    assert heavy(loaded) == set()


def test_invalid_inputs_fail_before_the_store_is_even_imported(workspace: Workspace) -> None:
    env = workspace.environment({"mode": "create"})
    process = subprocess.run(
        [sys.executable, "-X", "importtime", str(ENTRYPOINT)],
        env=env,
        cwd=workspace.workspace,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert process.returncode == 2
    modules = imported_modules(process.stderr)
    assert not any(m.startswith(("odooops_action.store", "httpx")) for m in modules)


def test_main_in_process_queues_a_run(
    workspace: Workspace,
    connection: dict[str, str],
    project: str,
    db: psycopg.Connection[Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from odooops_action.action.main import main

    env = workspace.environment(
        {**connection, "mode": "create", "project_id": project, "workflow_type": "test"}
    )
    exit_code = main(env)

    assert exit_code == 0
    outputs = Path(env["GITHUB_OUTPUT"]).read_text()
    run_id = re.search(r"^run_id=(run-\S+)$", outputs, re.MULTILINE)
    assert run_id is not None
    row = db.execute("select workflow_type from ops.runs where run_id = %s", (run_id.group(1),)).fetchone()
    assert row == ("test",)
    assert f"Queued run {run_id.group(1)}" in capsys.readouterr().out


def test_python_variables_of_the_job_do_not_reach_the_entry_point(
    workspace: Workspace, connection: dict[str, str], project: str, tmp_path: Path
) -> None:
    """The runner passes the job's whole env context in: its PYTHON* variables are for other Pythons."""
    fake = tmp_path / "workspace-src"
    (fake / "httpx").mkdir(parents=True)
    (fake / "httpx" / "__init__.py").write_text('raise ImportError("the workspace\'s own httpx")\n')
    (fake / "pydantic.py").write_text('raise ImportError("the workspace\'s own pydantic")\n')
    hostile = {
        "PYTHONPATH": str(fake),
        "PYTHONWARNINGS": "error",
        "PYTHONSAFEPATH": "",
        "SSL_CERT_FILE": str(tmp_path / "no-such-ca.pem"),  # read from the process environment by httpx
    }
    inputs = {**connection, "mode": "create", "project_id": project, "workflow_type": "build"}

    result = workspace.run(inputs, extra=hostile)

    assert result.exit_code == 0, result.stdout + result.stderr
    assert result.outputs["outcome"] == "queued"
    (warning,) = result.annotations("warning")
    assert "SSL_CERT_FILE=" in warning.data
    assert "does not exist in the Action's container" in warning.data
