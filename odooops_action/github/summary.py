"""The job summary page (GitHub-flavoured Markdown) for one followed run.

Every value that came from the run queue is untrusted: it is shown as a code span (pipes escaped
inside tables) so it cannot break a table, open HTML, make a link, image, mention or autolink,
and the log tail sits in a fence longer than any backtick run it contains. The page is
kept under a byte budget (default well below GitHub's 1 MiB per step) whatever the input size:
the log tail is trimmed first, then the list of warnings and errors, then the metadata, timeline
and artifacts, each with a visible note of what was cut.

Links: only ``http``/``https`` URLs become links. Registry references (``ghcr.io/...``) and other
storage paths are shown as code, since no public page is reliably derivable from them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, urlsplit

from odooops_action.github.commands import split_lines, strip_controls
from odooops_action.github.context import GitHubContext
from odooops_action.github.files import SUMMARY_LIMIT_BYTES, truncate_utf8

if TYPE_CHECKING:  # pydantic models: imported when a response is parsed, not at start-up
    from odooops_action.models import Artifact, Run, RunEvent


Outcome = Literal["success", "failed", "cancelled", "timeout", "not_found", "error"]
DEFAULT_MAX_BYTES = SUMMARY_LIMIT_BYTES - 48 * 1024  # leaves room for other appends in the step

MAX_FIELD_CHARS = 200
MAX_DETAIL_CHARS = 2000
MAX_NOTABLE = 50
MAX_NOTABLE_CHARS = 1000
MAX_TIMELINE = 100
MAX_ARTIFACTS = 100
MAX_METADATA = 30
MAX_TAIL_EVENT_CHARS = 4096
MAX_URL_CHARS = 2048

_ELLIPSIS = "…"
_BACKTICK_RUNS = re.compile(r"`+")
_OUTCOMES: dict[str, tuple[str, str]] = {
    "success": ("✅", "succeeded"),
    "failed": ("❌", "failed"),
    "cancelled": ("🚫", "was cancelled"),
    "timeout": ("⏱️", "did not finish before the wait timed out"),
    "not_found": ("❓", "was not found"),
    "error": ("⚠️", "could not be followed to its end"),
}
_LEVEL_ICONS = {"error": "❌", "warn": "⚠️", "info": "ℹ️", "debug": "🔍"}  # noqa: RUF001


@dataclass(frozen=True)
class SummaryView:
    run: Run | None
    outcome: Outcome
    now: datetime
    outcome_detail: str | None = None
    artifacts: Sequence[Artifact] = field(default_factory=list)
    notable_events: Sequence[RunEvent] = field(default_factory=list)
    log_tail: Sequence[RunEvent] = field(default_factory=list)
    total_events: int = 0
    suppressed_annotations: dict[str, int] = field(default_factory=dict)
    github: GitHubContext | None = None
    # Every event counted by level, when the lists above hold only some of them (a long run).
    level_counts: Mapping[str, int] | None = None
    # Status-change events (payload ``kind: status``), for a timeline that outlives the log tail.
    status_events: Sequence[RunEvent] = field(default_factory=list)


# --- escaping --------------------------------------------------------------------------------------


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + _ELLIPSIS


def _one_line(value: object, limit: int) -> str:
    return _shorten(" ".join(strip_controls(line) for line in split_lines(str(value))), limit)


def text(value: object, limit: int = MAX_FIELD_CHARS, *, in_table: bool = False) -> str:
    """Untrusted text as an inline code span: one line, shown verbatim and inert.

    In a code span Markdown does no emphasis, links, images, HTML, entities or autolinks, and
    GitHub's own filters (mentions, issue references, emoji) leave code alone. Inside a table a
    ``|`` still ends the cell, so it becomes ``\\|``, which GitHub shows as ``|``.
    """
    content = _one_line(value, limit)
    if not content.strip():
        return "—"
    if in_table:
        content = content.replace("|", "\\|")
    fence = "`" * (_longest_backtick_run(content) + 1)
    # The spaces are stripped by the renderer and keep edge backticks apart from the fence.
    return f"{fence} {content} {fence}"


def cell(value: object, limit: int = MAX_FIELD_CHARS) -> str:
    return text(value, limit, in_table=True)


def safe_url(url: str) -> str | None:
    """The URL, percent-encoded for a link destination, when it is an absolute http(s) URL."""
    if len(url) > MAX_URL_CHARS or url != strip_controls(url) or any(ch.isspace() for ch in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return quote(url, safe="!#$%&'()*+,-./:;=?@[]_~")


def table_link(label: object, url: str | None) -> str:
    """A link (inside a table) when ``url`` is http(s), else just the label."""
    target = safe_url(url) if url else None
    return f"[{cell(label)}](<{target}>)" if target else cell(label)


# --- formatting ------------------------------------------------------------------------------------


def human_duration(seconds: float) -> str:
    total = max(int(seconds), 0)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h {minutes:02d}m"
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def human_size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.1f} {unit}"


def short_digest(digest: str) -> str:
    algorithm, sep, value = digest.partition(":")
    return f"{algorithm}:{value[:12]}" if sep else digest[:12]


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _clock(moment: datetime) -> str:
    return _utc(moment).strftime("%Y-%m-%d %H:%M:%S")


def _between(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "—"
    return human_duration((_utc(end) - _utc(start)).total_seconds())


@dataclass(frozen=True)
class Durations:
    queued: str
    running: str
    total: str


def durations(run: Run, now: datetime) -> Durations:
    """Time in the queue, running and overall; an unfinished phase is measured up to ``now``."""
    end = run.finished_at or (None if run.is_terminal else now)
    left_queue = run.claimed_at or run.started_at
    so_far = "" if run.is_terminal else " (so far)"
    return Durations(
        queued=_between(run.queued_at, left_queue or end) + ("" if left_queue else so_far),
        running=_between(run.started_at, end) + so_far if run.started_at else "—",
        total=_between(run.queued_at, end) + so_far,
    )


# --- sections --------------------------------------------------------------------------------------


def _outcome_section(view: SummaryView) -> str:
    emoji, verb = _OUTCOMES.get(view.outcome, _OUTCOMES["error"])
    run = view.run
    if run is None:
        sentence = f"{emoji} **The OdooOps run {verb}.**"
    else:
        sentence = (
            f"{emoji} **The {run.workflow_type} run {text(run.run_id)} of {text(run.project_id)} "
            f"on {text(run.env_id)} {verb}.**"
        )
    lines = ["## OdooOps run", "", sentence]
    if view.outcome_detail:
        lines += ["", text(view.outcome_detail, MAX_DETAIL_CHARS)]
    return "\n".join(lines) + "\n"


def _run_table(run: Run, now: datetime) -> str:
    spent = durations(run, now)
    status: str = run.status
    if run.exit_code is not None:
        status += f" (exit code {run.exit_code})"
    rows = [
        ("Run", cell(run.run_id)),
        ("Project", cell(run.project_id)),
        ("Environment", cell(run.env_id)),
        ("Workflow", run.workflow_type),
        ("Ref", cell(run.git_ref)),
        ("Commit", cell(run.short_sha, 7)),
        ("Queued by", cell(run.created_by or "")),
        ("Status", status),
        ("Reason", cell(run.status_reason, MAX_DETAIL_CHARS) if run.status_reason else None),
        ("Worker", cell(run.claimed_by) if run.claimed_by else None),
        ("Attempt", str(run.attempt) if run.attempt > 1 else None),
        ("Queued for", spent.queued),
        ("Running for", spent.running),
        ("Total", spent.total),
    ]
    body = "".join(f"| {name} | {value} |\n" for name, value in rows if value is not None)
    return "| | |\n| --- | --- |\n" + body


def _metadata_items(run: Run) -> list[str]:
    def show(value: Any) -> str:
        return cell(value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False))

    # ops.create_run copies workflow_type, git_ref and created_by into the metadata: the facts
    # table shows them already.
    entries = _own_metadata(run)[:MAX_METADATA]
    return [f"| {cell(key, 100)} | {show(value)} |" for key, value in entries]


def _own_metadata(run: Run) -> list[tuple[str, Any]]:
    """The run's metadata without what the facts table shows already."""
    facts = ("workflow_type", "git_ref", "created_by")
    return [(k, v) for k, v in run.metadata.items() if not (k in facts and v == getattr(run, k))]


def _render_metadata(items: Sequence[str], total: int) -> str:
    if not items and not total:
        return ""
    rows = "".join(item + "\n" for item in items)
    table = f"| Key | Value |\n| --- | --- |\n{rows}{_more(total - len(items))}"
    return f"<details><summary>Run metadata</summary>\n\n{table}\n</details>\n"


@dataclass(frozen=True)
class _Change:
    at: datetime
    text: str
    to_status: str | None


def _status_changes(view: SummaryView) -> list[_Change]:
    seen: set[int] = set()
    changes: list[_Change] = []
    candidates = [
        *view.status_events[:MAX_TIMELINE],
        *view.notable_events[:MAX_NOTABLE],
        *view.log_tail[-MAX_TIMELINE:],
    ]
    for event in candidates:
        payload = event.payload
        if event.seq in seen or payload.get("kind") != "status" or event.created_at is None:
            continue
        seen.add(event.seq)
        old, new = payload.get("from"), payload.get("to")
        if not isinstance(new, str):
            continue
        change = f"{cell(old) if isinstance(old, str) else 'new'} → {cell(new)}"
        if event.message:
            change += f" — {cell(event.message)}"
        changes.append(_Change(event.created_at, change, new))
    return changes


def _run_changes(run: Run) -> list[_Change]:
    finished = f"finished: {run.status}"
    if run.exit_code is not None:
        finished += f" (exit code {run.exit_code})"
    if run.status_reason:  # who cancelled and why, what failed
        finished += f": {cell(run.status_reason, MAX_DETAIL_CHARS)}"
    candidates = [
        (run.queued_at, "queued" + (f" by {cell(run.created_by)}" if run.created_by else ""), "queued"),
        (run.claimed_at, "claimed" + (f" by {cell(run.claimed_by)}" if run.claimed_by else ""), "claimed"),
        (run.started_at, "started", "running"),
        (run.finished_at, finished, run.status),
    ]
    return [_Change(at, text, status) for at, text, status in candidates if at is not None]


def _timeline_items(view: SummaryView) -> list[str]:
    if view.run is None:
        return []
    events = _status_changes(view)

    def reported(change: _Change) -> bool:  # the same change as a status event within 2 seconds
        return any(
            e.to_status == change.to_status and abs((_utc(e.at) - _utc(change.at)).total_seconds()) <= 2
            for e in events
        )

    changes = sorted(
        [*events, *(c for c in _run_changes(view.run) if not reported(c))], key=lambda c: _utc(c.at)
    )
    origin = view.run.queued_at
    return [f"| {_clock(c.at)} | +{_between(origin, c.at)} | {c.text} |" for c in changes]


def _render_timeline(items: Sequence[str], total: int) -> str:
    if not items and not total:
        return ""
    rows = "".join(item + "\n" for item in items)
    header = "| Time (UTC) | Since queued | Change |\n| --- | --- | --- |\n"
    return f"### Timeline\n\n{header}{rows}{_more(total - len(items))}"


def _artifact_row(artifact: Artifact) -> str:
    path = artifact.storage_path
    location = table_link(_shorten(path, 300), path) if safe_url(path) else cell(path, 300)
    digest = cell(short_digest(artifact.digest), 80) if artifact.digest else "—"
    size = human_size(artifact.size_bytes) if artifact.size_bytes is not None else "—"
    return f"| {artifact.artifact_type} | {location} | {digest} | {size} |"


def _render_artifacts(items: Sequence[str], total: int) -> str:
    if not items and not total:
        return ""
    rows = "".join(item + "\n" for item in items)
    header = "| Type | Location | Digest | Size |\n| --- | --- | --- | --- |\n"
    return f"### Artifacts\n\n{header}{rows}{_more(total - len(items))}"


def _notable_item(event: RunEvent) -> str:
    icon = _LEVEL_ICONS.get(event.level, "•")
    at = _clock(event.created_at) if event.created_at is not None else "—"
    return f"- {icon} {at} · {text(event.message, MAX_NOTABLE_CHARS)}"


def _render_notable(items: Sequence[str], total: int, counts: str, suppressed: dict[str, int]) -> str:
    if not total:
        return ""
    lines = [f"### Warnings and errors ({counts})", "", *items]
    more = _more(total - len(items))
    hidden = {level: n for level, n in suppressed.items() if n}
    if hidden:
        listed = ", ".join(f"{n} {text(level)}" for level, n in sorted(hidden.items()))
        more += (
            "\n_GitHub keeps at most 10 annotations per level and step, one of them for the step's own "
            f"result; the job log shows the rest as plain lines ({listed} not annotated)._\n"
        )
    return "\n".join(lines) + "\n" + more


def _tail_block(event: RunEvent) -> str:
    lines = split_lines(_shorten(event.message, MAX_TAIL_EVENT_CHARS))
    at = _utc(event.created_at).strftime("%H:%M:%S") if event.created_at is not None else "--:--:--"
    prefix = f"{at} {event.level.upper():<5} "
    indent = " " * len(prefix)
    return "".join(
        (prefix if index == 0 else indent) + strip_controls(line) + "\n" for index, line in enumerate(lines)
    )


def _longest_backtick_run(content: str) -> int:
    return max(map(len, _BACKTICK_RUNS.findall(content)), default=0)


def _render_tail(items: Sequence[str], available: int, total_events: int) -> str:
    if not available:
        return ""
    content = "".join(items)
    fence = "`" * max(3, _longest_backtick_run(content) + 1)
    shown = len(items)
    summary = f"Log: last {shown:,} of {max(total_events, available):,} events"
    note = ""
    if shown < available:
        cut = available - shown
        note = f"_{cut:,} earlier log events were cut to keep this page small; see the job log._\n"
    return f"<details><summary>{summary}</summary>\n\n{fence}text\n{content}{fence}\n\n</details>\n{note}"


def _more(hidden: int) -> str:
    return f"\n_…and {hidden:,} more._\n" if hidden > 0 else ""


def _links(view: SummaryView) -> str:
    parts = []
    github = view.github
    if github is not None and github.run_url:
        target = safe_url(github.run_url)
        parts.append(f"[GitHub workflow run](<{target}>)" if target else text(github.run_url))
        if github.workflow_file:
            parts.append(f"workflow {text(github.workflow_file)}")
    parts.append(f"generated {_clock(view.now)} UTC by odooops\\-action")
    return "---\n\n" + " · ".join(parts) + "\n"


# --- assembly --------------------------------------------------------------------------------------


@dataclass
class _Trimmable:
    """A section whose items can be dropped (from the end, or from the start for the log tail)."""

    items: Sequence[str]
    available: int
    render: Callable[[Sequence[str], int], str]
    keep_last: bool = False
    shown: int = -1

    def __post_init__(self) -> None:
        self.shown = len(self.items)

    def text(self, shown: int | None = None) -> str:
        count = self.shown if shown is None else shown
        kept = self.items[len(self.items) - count :] if self.keep_last else self.items[:count]
        return self.render(kept, self.available)


def _size(page: str) -> int:
    return len(page.encode("utf-8"))


def _tail_candidates(view: SummaryView, budget: int) -> list[str]:
    """Rendered tail events, newest last, but only as many as could possibly fit in ``budget``."""
    picked: list[str] = []
    used = 0
    for event in reversed(view.log_tail):
        block = _tail_block(event)
        used += _size(block)
        if used > budget:
            break
        picked.append(block)
    picked.reverse()
    return picked


def _notable_figures(view: SummaryView) -> tuple[int, int, int]:
    """How many errors, warnings and other notable events the run had (not only those kept)."""
    if view.level_counts is not None:
        errors, warnings = view.level_counts.get("error", 0), view.level_counts.get("warn", 0)
        return errors, warnings, 0
    events = view.notable_events
    errors = sum(1 for event in events if event.level == "error")
    warnings = sum(1 for event in events if event.level == "warn")
    return errors, warnings, len(events) - errors - warnings


def _notable_counts(errors: int, warnings: int, others: int) -> str:
    parts = [_plural(errors, "error"), _plural(warnings, "warning")] + (
        [f"{others:,} other"] if others else []
    )
    return ", ".join(parts)


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


def render_summary(view: SummaryView, *, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """The whole page, at most ``max_bytes`` UTF-8 bytes and always under GitHub's 1 MiB."""
    max_bytes = min(max_bytes, SUMMARY_LIMIT_BYTES - 1)
    head = _outcome_section(view)
    if view.run is not None:
        head += "\n" + _run_table(view.run, view.now)
    foot = _links(view)
    figures = _notable_figures(view)
    counts = _notable_counts(*figures)
    run = view.run
    metadata = _metadata_items(run) if run is not None else []
    artifacts = [_artifact_row(a) for a in view.artifacts[:MAX_ARTIFACTS]]
    notable = [_notable_item(e) for e in view.notable_events[:MAX_NOTABLE]]
    timeline = _timeline_items(view)
    sections = {
        "metadata": _Trimmable(metadata, len(_own_metadata(run)) if run is not None else 0, _render_metadata),
        "timeline": _Trimmable(timeline[:MAX_TIMELINE], len(timeline), _render_timeline),
        "artifacts": _Trimmable(artifacts, len(view.artifacts), _render_artifacts),
        "notable": _Trimmable(
            notable,
            max(sum(figures), len(notable)),
            lambda items, total: _render_notable(items, total, counts, view.suppressed_annotations),
        ),
        "tail": _Trimmable(
            _tail_candidates(view, max_bytes),
            len(view.log_tail),
            lambda items, available: _render_tail(items, available, view.total_events),
            keep_last=True,
        ),
    }

    def assemble() -> str:
        bodies = [section.text() for section in sections.values()]
        return "\n".join(part for part in [head, *bodies, foot] if part)

    for name in ("tail", "notable", "metadata", "timeline", "artifacts"):
        if _size(assemble()) <= max_bytes:
            break
        _shrink(sections[name], lambda: _size(assemble()), max_bytes)
    page = assemble()
    if _size(page) > max_bytes:  # only when the fixed parts alone exceed a tiny budget
        page = truncate_utf8(page, max_bytes)
    return page


def _shrink(section: _Trimmable, measure: Callable[[], int], max_bytes: int) -> None:
    """Keep the most items of ``section`` for which the page fits (binary search)."""
    low, high = 0, section.shown
    while low < high:
        middle = (low + high + 1) // 2
        section.shown = middle
        if measure() <= max_bytes:
            low = middle
        else:
            high = middle - 1
    section.shown = low
