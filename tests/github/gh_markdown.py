"""Render Markdown with cmark-gfm (GitHub's own renderer) and take the HTML apart for assertions."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser

# A dev dependency on purpose (not skipped when missing): the escaping tests mean nothing without it.
import cmarkgfm
from cmarkgfm.cmark import Options


@dataclass
class Rendered:
    html: str
    tags: list[str] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)  # (href, text)
    tables: list[list[list[str]]] = field(default_factory=list)  # table -> row -> cell text
    pre_blocks: list[str] = field(default_factory=list)
    text: str = ""


class _Collector(HTMLParser):
    def __init__(self, rendered: Rendered) -> None:
        super().__init__(convert_charrefs=True)
        self.out = rendered
        self._href: str | None = None
        self._link_text: list[str] = []
        self._cell: list[str] | None = None
        self._pre: list[str] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.out.tags.append(tag)
        if tag == "a":
            self._href = dict(attrs).get("href") or ""
            self._link_text = []
        elif tag == "table":
            self.out.tables.append([])
        elif tag == "tr":
            self.out.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "pre":
            self._pre = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href is not None:
            self.out.links.append((self._href, "".join(self._link_text)))
            self._href = None
        elif tag in ("td", "th") and self._cell is not None:
            self.out.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "pre" and self._pre is not None:
            self.out.pre_blocks.append("".join(self._pre))
            self._pre = None

    def handle_data(self, data: str) -> None:
        self._text.append(data)
        for sink in (self._cell, self._pre, self._link_text if self._href is not None else None):
            if sink is not None:
                sink.append(data)

    def close(self) -> None:
        super().close()
        self.out.text = "".join(self._text)


def render_markdown(markdown: str) -> Rendered:
    # UNSAFE keeps raw HTML in the output, so that any HTML we let through becomes visible.
    html = cmarkgfm.github_flavored_markdown_to_html(markdown, options=Options.CMARK_OPT_UNSAFE)
    rendered = Rendered(html=html)
    collector = _Collector(rendered)
    collector.feed(html)
    collector.close()
    return rendered
