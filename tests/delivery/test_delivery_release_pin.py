"""The release step that points action.yml at the prebuilt image (.github/scripts/pin_action_image.py)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / ".github" / "scripts" / "pin_action_image.py"
IMAGE = "docker://ghcr.io/acme/odooops-action:1.2.3"

ACTION_YML = """\
name: OdooOps
description: 'Queue runs; the image: line in this description is not a key'
inputs:
  mode:
    description: create, wait or destroy
    required: true
runs:
  using: docker
  # Built from source on main; a release commit points at ghcr.io.
  image: Dockerfile
  env:
    image: not-this-one
branding:
  icon: play
"""


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pin_action_image", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pin = load_script()


def test_only_runs_image_changes() -> None:
    pinned = pin.pin_image(ACTION_YML, IMAGE)

    changed = [
        (before, after)
        for before, after in zip(ACTION_YML.splitlines(), pinned.splitlines(), strict=True)
        if before != after
    ]
    assert changed == [("  image: Dockerfile", f"  image: '{IMAGE}'")]


def test_a_second_release_can_repin_a_pinned_file() -> None:
    once = pin.pin_image(ACTION_YML, IMAGE)
    twice = pin.pin_image(once, "docker://ghcr.io/acme/odooops-action:1.2.4")

    assert "odooops-action:1.2.4'" in twice
    assert "1.2.3" not in twice


def test_crlf_line_endings_are_kept() -> None:
    pinned = pin.pin_image(ACTION_YML.replace("\n", "\r\n"), IMAGE)

    assert f"  image: '{IMAGE}'\r\n" in pinned


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (ACTION_YML.replace("runs:\n", "runz:\n"), "one top-level 'runs:'"),
        (ACTION_YML.replace("  image: Dockerfile\n", ""), "found 0"),
        (ACTION_YML.replace("  image: Dockerfile\n", "  image: Dockerfile\n" * 2), "found 2"),
        (ACTION_YML.replace("image: Dockerfile", "image: build/Containerfile"), "expected Dockerfile"),
    ],
)
def test_refuses_shapes_it_does_not_know(text: str, problem: str) -> None:
    with pytest.raises(pin.PinError, match=problem):
        pin.pin_image(text, IMAGE)


@pytest.mark.parametrize(
    "image",
    [
        "ghcr.io/acme/odooops-action:1.2.3",  # no docker:// scheme
        "docker://ghcr.io/Acme/odooops-action:1.2.3",  # registries want lower case
        "docker://ghcr.io/acme/odooops-action",  # no tag
        "docker://ghcr.io/acme/odooops-action:1.2.3' # injected",
    ],
)
def test_refuses_bad_image_references(image: str) -> None:
    with pytest.raises(pin.PinError, match="not a docker://"):
        pin.pin_image(ACTION_YML, image)


def test_command_line_rewrites_the_file(tmp_path: Path) -> None:
    action = tmp_path / "action.yml"
    action.write_text(ACTION_YML)

    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(action), IMAGE], capture_output=True, text=True, check=False
    )

    assert done.returncode == 0, done.stderr
    assert f"image: '{IMAGE}'" in action.read_text()


def test_command_line_fails_without_touching_the_file(tmp_path: Path) -> None:
    action = tmp_path / "action.yml"
    action.write_text(ACTION_YML.replace("image: Dockerfile", "image: other"))

    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(action), IMAGE], capture_output=True, text=True, check=False
    )

    assert done.returncode == 1
    assert "expected Dockerfile" in done.stderr
    assert "image: other" in action.read_text()


def test_the_real_action_yml_pins_and_stays_valid(tmp_path: Path) -> None:
    action = REPO_ROOT / "action.yml"
    if not action.exists():
        pytest.skip("action.yml is not in this checkout yet")
    checker = shutil.which("check-jsonschema") or str(Path(sys.executable).parent / "check-jsonschema")
    if not Path(checker).exists():
        pytest.skip("check-jsonschema is not installed (pip install -e '.[dev]')")
    pinned = tmp_path / "action.yml"
    pinned.write_text(pin.pin_image(action.read_text(), IMAGE))

    validated = subprocess.run(
        [checker, "--builtin-schema", "vendor.github-actions", str(pinned)],
        capture_output=True,
        text=True,
        check=False,
    )

    assert validated.returncode == 0, validated.stdout + validated.stderr
    assert f"image: '{IMAGE}'" in pinned.read_text()
