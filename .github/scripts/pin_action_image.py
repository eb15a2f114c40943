"""Point ``runs.image`` of action.yml at a prebuilt image: the release workflow's rewrite step.

    python .github/scripts/pin_action_image.py action.yml docker://ghcr.io/acme/odooops-action:1.2.3

On the default branch ``runs.image`` is ``Dockerfile`` (the runner builds the image at the start of
every job). A release commit replaces it with the image the release workflow pushed, so users of a
release tag only pull. The file is edited as text, keeping comments and layout, and the script
refuses anything it does not recognise instead of guessing: exactly one ``image:`` key directly
under the top-level ``runs:``, whose value is ``Dockerfile`` or an earlier ``docker://`` reference.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

IMAGE_REFERENCE = re.compile(
    r"^docker://[a-z0-9.-]+(?::[0-9]+)?/[a-z0-9._/-]+:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
)
TOP_LEVEL_KEY = re.compile(r"^[A-Za-z_][\w-]*\s*:")
IMAGE_LINE = re.compile(r"^(?P<indent>[ ]+)image:[ ]*(?P<value>[^#\s][^#]*?)?[ ]*(?P<comment>#.*)?$")
REPLACEABLE = re.compile(r"""^(?P<q>['"]?)(Dockerfile|docker://\S+)(?P=q)$""")


class PinError(ValueError):
    """action.yml does not have the shape this script can rewrite safely."""


def runs_block(lines: list[str]) -> range:
    """Line indexes of the top-level ``runs:`` mapping (its header excluded)."""
    starts = [index for index, line in enumerate(lines) if re.match(r"^runs\s*:\s*(#.*)?$", line)]
    if len(starts) != 1:
        raise PinError(f"expected one top-level 'runs:' key, found {len(starts)}")
    end = len(lines)
    for index in range(starts[0] + 1, len(lines)):
        if TOP_LEVEL_KEY.match(lines[index]):
            end = index
            break
    return range(starts[0] + 1, end)


def block_indent(lines: list[str], block: range) -> str:
    for index in block:
        stripped = lines[index].lstrip(" ")
        if stripped and not stripped.startswith("#"):
            return lines[index][: len(lines[index]) - len(stripped)]
    raise PinError("'runs:' is empty")


def pin_image(text: str, image: str) -> str:
    """``text`` with ``runs.image`` set to ``image``; raises :class:`PinError` when unsure."""
    if not IMAGE_REFERENCE.match(image):
        raise PinError(f"{image!r} is not a docker://<registry>/<name>:<tag> reference in lower case")
    lines = text.splitlines(keepends=True)
    block = runs_block(lines)
    indent = block_indent(lines, block)
    hits = [
        (index, match)
        for index in block
        if (match := IMAGE_LINE.match(lines[index].rstrip("\r\n"))) and match.group("indent") == indent
    ]
    if len(hits) != 1:
        raise PinError(f"expected one 'image:' key directly under 'runs:', found {len(hits)}")
    index, match = hits[0]
    current = (match.group("value") or "").strip()
    if not REPLACEABLE.match(current):
        raise PinError(f"runs.image is {current!r}; expected Dockerfile or a docker:// reference")
    newline = lines[index][len(lines[index].rstrip("\r\n")) :]
    lines[index] = f"{indent}image: '{image}'{newline}"
    return "".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: pin_action_image.py ACTION_YML docker://IMAGE:TAG", file=sys.stderr)
        return 2
    path, image = Path(argv[0]), argv[1]
    try:
        path.write_text(pin_image(path.read_text(encoding="utf-8"), image), encoding="utf-8")
    except (OSError, PinError) as error:
        print(f"pin_action_image: {path}: {error}", file=sys.stderr)
        return 1
    print(f"{path}: runs.image = {image}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
