"""Inert Markdown for the short summaries of ``create`` and ``destroy`` (the long one is the layer's).

Remote text is shown as one line with every ASCII punctuation character backslash-escaped and
``&``, ``<``, ``>`` as entities, so it cannot open HTML, a link, an image, a mention, a table
cell or a code span.
"""

from __future__ import annotations

import string

from odooops_action.github.commands import strip_controls

_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_ESCAPED = frozenset(string.punctuation) - set(_ENTITIES)


def plain(value: object, limit: int = 300) -> str:
    line = " ".join(strip_controls(str(value)).split())
    if len(line) > limit:
        line = line[: limit - 1] + "…"
    return "".join(_ENTITIES.get(ch) or ("\\" + ch if ch in _ESCAPED else ch) for ch in line)


def code(value: object, limit: int = 300) -> str:
    """Monospace without a backtick span (which escapes cannot protect)."""
    return f"<code>{plain(value, limit)}</code>"
