"""The image itself: what it holds, how big it is (measured, recorded in figures.json), the CLI in it."""

from __future__ import annotations

import pytest

from tests.container.engine import Engine, from_image, image_sizes, layer_sizes
from tests.container.session import record, recorded

pytestmark = pytest.mark.slow

MB = 1_000_000


def sh(engine: Engine, image: str, script: str) -> str:
    return engine.must("run", "--rm", "--network", "none", "--entrypoint", "sh", image, "-c", script)


def test_the_image_holds_the_runtime_and_nothing_else(engine: Engine, image: str) -> None:
    # Python of the base, the five packages (and their pins) importable without PYTHONPATH.
    out = sh(
        engine,
        image,
        "python -E -s -c 'import sys, httpx, pydantic, psycopg, actions_toolkit, github, odooops_action; "
        "print(sys.version_info[:2], odooops_action.__file__)'",
    )
    assert out.strip() == "(3, 11) /opt/odooops/odooops_action/__init__.py"
    # No pip cache, no tests, no repository files, no source control.
    leftovers = sh(
        engine,
        image,
        "ls -A /opt/odooops; ls -A /root/.cache/pip 2>/dev/null | head -1; "
        "find / -xdev \\( -name .git -o -path /opt/odooops/tests \\) -print 2>/dev/null | head -3",
    ).split()
    assert sorted(leftovers) == ["entrypoint.py", "odooops_action", "post_entrypoint.py", "requirements.txt"]
    # The worker's entry point (docker run --entrypoint odooops IMAGE worker ...).
    assert "worker" in engine.must(
        "run", "--rm", "--network", "none", "--entrypoint", "odooops", image, "--help"
    )


def test_image_size_is_measured(engine: Engine, image: str) -> None:
    image_id = engine.must("image", "inspect", "--format", "{{.Id}}", image).strip()
    earlier = recorded()
    if earlier.get("image_id") == image_id and "image_compressed_bytes" in earlier:
        # The same image was measured by an earlier session: docker save | gzip takes ~25 s here.
        uncompressed, compressed = earlier["image_uncompressed_bytes"], earlier["image_compressed_bytes"]
    else:
        uncompressed, compressed = image_sizes(engine, image)
    record("image_id", image_id)
    record("image_uncompressed_bytes", uncompressed)
    record("image_compressed_bytes", compressed)
    layers = layer_sizes(engine, image)
    base = int(engine.must("image", "inspect", "--format", "{{.Size}}", from_image()).strip())
    (dependencies,) = [size for size, created_by in layers if "pip install" in created_by]
    record("image_uncompressed_mb", round(uncompressed / MB, 1))
    record("image_compressed_mb", round(compressed / MB, 1))
    record("base_uncompressed_mb", round(base / MB, 1))
    record("dependencies_layer_mb", round(dependencies / MB, 1))

    # What the Dockerfile adds is the dependencies layer, then a few hundred kB of our code.
    added = uncompressed - base
    assert dependencies <= added
    assert added - dependencies < 2 * MB
