"""scripts/lint.sh: one line per gate passed, a clear stop at the first failing gate.

Each test copies the script into a scratch tree (the script works on the tree it lives in) and
runs the real tools on files made to pass or fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
LINT = REPO_ROOT / "scripts" / "lint.sh"
VENV_BIN = Path(sys.executable).parent

GOOD_MIGRATION = """\
set lock_timeout = '5s';
set statement_timeout = '60s';
create schema if not exists demo;
create table demo.items (item_id text primary key, created_at timestamptz not null default now());
create index items_created_idx on demo.items (created_at);
"""
# An index built without CONCURRENTLY on a table that already exists blocks its writers.
BLOCKING_MIGRATION = """\
set lock_timeout = '5s';
set statement_timeout = '60s';
create index items_name_idx on demo.items (name);
"""


def scratch_tree(tmp_path: Path, migration: str) -> Path:
    tree = tmp_path / "repo"
    (tree / "scripts").mkdir(parents=True)
    (tree / "supabase" / "migrations").mkdir(parents=True)
    shutil.copy(LINT, tree / "scripts" / "lint.sh")
    shutil.copy(REPO_ROOT / ".squawk.toml", tree / ".squawk.toml")
    (tree / "supabase" / "migrations" / "20260101000000_demo.sql").write_text(migration)
    return tree


def run_lint(tree: Path, *gates: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("VIRTUAL_ENV", None)
    return subprocess.run(
        ["bash", str(tree / "scripts" / "lint.sh"), *gates],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )


@pytest.fixture(autouse=True)
def squawk_installed() -> None:
    if not (VENV_BIN / "squawk").exists() and shutil.which("squawk") is None:
        pytest.skip("squawk is not installed (pip install -e '.[dev]')")


def test_lists_its_gates(tmp_path: Path) -> None:
    listed = run_lint(scratch_tree(tmp_path, GOOD_MIGRATION), "--list")

    assert listed.returncode == 0
    assert listed.stdout.split() == [
        "ruff-check",
        "ruff-format",
        "mypy",
        "hadolint",
        "action-schema",
        "workflow-schema",
        "dependabot-schema",
        "squawk",
        "zizmor",
    ]


def test_a_passing_gate_prints_one_line(tmp_path: Path) -> None:
    done = run_lint(scratch_tree(tmp_path, GOOD_MIGRATION), "squawk")

    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == [
        "lint: ok  squawk            1 migrations (rules: .squawk.toml)",
        "lint: all 1 gates passed",
    ]


def test_a_failing_gate_shows_the_finding_and_stops(tmp_path: Path) -> None:
    done = run_lint(scratch_tree(tmp_path, BLOCKING_MIGRATION), "squawk", "zizmor")

    assert done.returncode == 1
    assert "require-concurrent-index-creation" in done.stderr
    assert "lint: FAILED gate squawk" in done.stderr
    assert "zizmor" not in done.stdout  # stopped at the first failing gate


def test_a_missing_input_is_named(tmp_path: Path) -> None:
    tree = scratch_tree(tmp_path, GOOD_MIGRATION)

    done = run_lint(tree, "hadolint")

    assert done.returncode == 1
    assert "lint: FAILED gate hadolint: Dockerfile not found" in done.stderr


def test_an_unknown_gate_is_refused_before_anything_runs(tmp_path: Path) -> None:
    done = run_lint(scratch_tree(tmp_path, GOOD_MIGRATION), "squawk", "shellcheck")

    assert done.returncode == 1
    assert "lint: FAILED gate shellcheck: unknown gate" in done.stderr
    assert done.stdout == ""


def zizmor_stub(tree: Path) -> Path:
    """A `zizmor` first on PATH that records its arguments and passes."""
    bin_dir = tree / "stub-bin"
    bin_dir.mkdir()
    stub = bin_dir / "zizmor"
    stub.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$*" >>"$(dirname "$0")/calls"\n')
    stub.chmod(0o755)
    for path in (".github/workflows/ci.yml", "action.yml", ".github/dependabot.yml"):
        (tree / path).parent.mkdir(parents=True, exist_ok=True)
        (tree / path).write_text("name: x\n")
    return bin_dir


def run_zizmor_gate(tree: Path, bin_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "GH_TOKEN", "ZIZMOR_ONLINE")}
    base["PATH"] = f"{bin_dir}{os.pathsep}{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    return subprocess.run(
        ["bash", str(tree / "scripts" / "lint.sh"), "zizmor"],
        capture_output=True,
        text=True,
        env={**base, **env},
        check=False,
        timeout=60,
    )


def test_zizmor_stays_offline_unless_asked(tmp_path: Path) -> None:
    tree = scratch_tree(tmp_path, GOOD_MIGRATION)
    bin_dir = zizmor_stub(tree)

    done = run_zizmor_gate(tree, bin_dir, GITHUB_TOKEN="ghs_from_the_environment")

    assert done.returncode == 0, done.stderr
    assert (bin_dir / "calls").read_text().split()[0] == "--offline"
    assert "(offline audits)" in done.stdout


def test_zizmor_online_needs_a_token_and_then_drops_offline(tmp_path: Path) -> None:
    tree = scratch_tree(tmp_path, GOOD_MIGRATION)
    bin_dir = zizmor_stub(tree)

    refused = run_zizmor_gate(tree, bin_dir, ZIZMOR_ONLINE="1")
    online = run_zizmor_gate(tree, bin_dir, ZIZMOR_ONLINE="1", GH_TOKEN="ghs_test")

    assert refused.returncode == 1
    assert "ZIZMOR_ONLINE=1 needs a GitHub token in GH_TOKEN" in refused.stderr
    assert online.returncode == 0, online.stderr
    assert "--offline" not in (bin_dir / "calls").read_text()
    assert "(online audits)" in online.stdout
