"""Check runs through the Checks API (PyGithub, imported only when a check run is published).

The check run is created directly as ``completed`` with its conclusion: the run it reports on has
already ended, and a check left ``in_progress`` by a failed follow-up request would look like
work that is still going on. The first 50 annotations go with the creation; the rest follow in
``PATCH`` updates of at most 50 each, which GitHub appends.

Nothing here raises for an API failure. A 403 or 404 (a token without ``checks: write``, or the
read-only token of a pull request from a fork: GitHub answers 403 "Resource not accessible by
integration" to both) yields ``degraded_reason``, a warning ready to print, which names the cause
when the caller knows whether the run is for a fork's pull request and states both otherwise; the
caller then relies on workflow-command annotations. Other failures yield ``error``.
No message ever contains the token.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from odooops_action.github.annotations import Annotation, limit_title
from odooops_action.github.files import truncate_utf8
from odooops_action.github.summary import safe_url

if TYPE_CHECKING:
    from github.CheckRun import CheckRun
    from github.GithubException import GithubException

Conclusion = Literal["success", "failure", "cancelled", "timed_out", "neutral", "action_required", "skipped"]
ANNOTATIONS_PER_REQUEST = 50
MAX_SUMMARY_CHARS = 65_535
DEFAULT_MAX_ANNOTATIONS = 1000
DEFAULT_API_URL = "https://api.github.com"
PERMISSIONS_SNIPPET = "permissions:\n  checks: write\n  contents: read"
_CONCLUSIONS: dict[str, Conclusion] = {
    "success": "success",
    "failed": "failure",
    "cancelled": "cancelled",
    "timeout": "timed_out",
}
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def conclusion_for(outcome: str) -> Conclusion:
    """The check conclusion for a wait outcome; anything unexpected counts as a failure."""
    return _CONCLUSIONS.get(outcome, "failure")


@dataclass(frozen=True)
class CheckRunResult:
    check_run_id: int | None = None
    html_url: str | None = None
    annotations_sent: int = 0
    annotations_dropped: int = 0
    requests: int = 0
    degraded_reason: str | None = None
    error: str | None = None

    @property
    def published(self) -> bool:
        return self.check_run_id is not None and self.degraded_reason is None and self.error is None


# --- output limits ---------------------------------------------------------------------------------


def _closers(lines: Sequence[str]) -> str:
    """What closes the code fence and ``<details>`` blocks still open after ``lines``."""
    fence: str | None = None
    details = 0
    for line in lines:
        match = _FENCE.match(line)
        if fence is None and match:
            fence = match.group(1)
        elif (
            fence is not None
            and match
            and match.group(1)[0] == fence[0]
            and len(match.group(1)) >= len(fence)
        ):
            if not line.strip().strip(fence[0]):
                fence = None
        elif fence is None:
            details += line.count("<details") - line.count("</details>")
    return (f"{fence}\n" if fence else "") + "\n</details>\n" * max(details, 0)


def limit_summary(markdown: str, limit: int = MAX_SUMMARY_CHARS) -> str:
    """At most ``limit`` UTF-8 bytes (so also characters), cut at a line, open blocks closed."""
    if len(markdown.encode("utf-8")) <= limit:
        return markdown
    note = "\n> [!NOTE]\n> Summary truncated to fit the Checks API limit; the job summary has all of it.\n"
    room = limit - len(note.encode("utf-8"))
    while room > 0:
        kept = truncate_utf8(markdown, room)
        kept = kept[: kept.rfind("\n") + 1] if "\n" in kept else ""
        text = kept + _closers(kept.splitlines()) + note
        if len(text.encode("utf-8")) <= limit:
            return text
        room -= 256
    return truncate_utf8(note, limit)


# --- errors ----------------------------------------------------------------------------------------


def _scrub(text: str, token: str) -> str:
    return text.replace(token, "***") if token else text


def _api_message(exc: GithubException, token: str) -> str:
    """GitHub's message, token removed before shortening (so no fragment of it can survive)."""
    data: Any = exc.data
    message = data.get("message") if isinstance(data, dict) else None
    details = data.get("errors") if isinstance(data, dict) else None
    text = str(message or exc.message or "no message")
    if details:
        text += f" {details}"
    return " ".join(_scrub(text, token).split())[:500]


_FORK_EXPLANATION = (
    "on a pull request from a fork, GITHUB_TOKEN is read-only whatever the workflow's `permissions:` "
    "say, so no check run can be created there"
)
_GRANT = (
    f"grant the job:\n\n{PERMISSIONS_SNIPPET}\n\n"
    "(Listing permissions replaces the defaults: keep the ones the job already needs.)"
)


def _forbidden(name: str, message: str, from_fork: bool | None) -> str:
    head = f"Could not create check run {name!r}: GitHub answered 403 ({message})"
    tail = "The annotations were written to the job log instead."
    if from_fork:
        return f"{head}: this workflow runs for a pull request from a fork: {_FORK_EXPLANATION}. {tail}"
    if from_fork is False:
        return f"{head}: the token lacks the `checks: write` permission. {tail} To get a check run, {_GRANT}"
    return (
        f"{head}. Either the token lacks the `checks: write` permission (then {_GRANT}), or this is a pull "
        f"request from a fork: {_FORK_EXPLANATION}. {tail}"
    )


def _explain(
    exc: GithubException, name: str, repository: str, token: str, from_fork: bool | None = None
) -> tuple[str | None, str]:
    """``(degraded_reason, error)``: exactly one of them is meaningful."""
    status, message = exc.status, _api_message(exc, token)
    lowered = message.lower()
    if status == 429 or (status == 403 and "rate limit" in lowered):
        return None, f"Could not publish check run {name!r}: GitHub rate limit ({status}: {message})."
    if status == 403:
        return _forbidden(name, message, from_fork), ""
    if status == 404:
        return (
            f"Could not create check run {name!r}: GitHub answered 404 ({message}) for {repository}. "
            "The token cannot see the repository or commit: on pull requests from forks GITHUB_TOKEN is "
            "read-only and check runs are not possible; otherwise check the repository name and grant "
            f"the job:\n\n{PERMISSIONS_SNIPPET}\n\nThe annotations were written to the job log instead.",
            "",
        )
    if status == 401:
        return None, f"Could not publish check run {name!r}: GitHub rejected the token (401: {message})."
    if status == 422:
        return None, f"GitHub refused check run {name!r} as invalid (422: {message})."
    return None, f"Could not publish check run {name!r}: GitHub API error {status}: {message}."


# --- publishing ------------------------------------------------------------------------------------


def _batches(items: Sequence[dict[str, str | int]]) -> list[list[dict[str, str | int]]]:
    return [
        list(items[i : i + ANNOTATIONS_PER_REQUEST]) for i in range(0, len(items), ANNOTATIONS_PER_REQUEST)
    ]


@dataclass
class _Progress:
    check: CheckRun | None = None
    sent: int = 0
    requests: int = 0

    def result(
        self, dropped: int, *, degraded: str | None = None, error: str | None = None
    ) -> CheckRunResult:
        return CheckRunResult(
            check_run_id=self.check.id if self.check is not None else None,
            html_url=self.check.html_url if self.check is not None else None,
            annotations_sent=self.sent,
            annotations_dropped=dropped,
            requests=self.requests,
            degraded_reason=degraded or None,
            error=error or None,
        )


def publish_check_run(  # noqa: PLR0917 - the positional order is the documented interface
    token: str,
    repository: str,
    head_sha: str,
    name: str,
    title: str,
    summary_markdown: str,
    conclusion: Conclusion,
    annotations: Sequence[Annotation],
    details_url: str | None = None,
    api_url: str | None = None,
    *,
    max_annotations: int = DEFAULT_MAX_ANNOTATIONS,
    timeout: int = 15,
    seconds_between_writes: float | None = 1.0,
    from_fork: bool | None = None,
) -> CheckRunResult:
    """Create a completed check run with its annotations; never raises for API or network errors."""
    from github import Auth, Github, GithubException
    from github.GithubObject import NotSet

    bodies = [annotation.as_check_annotation() for annotation in annotations[:max_annotations]]
    dropped = max(len(annotations) - max_annotations, 0)
    output: dict[str, Any] = {"title": limit_title(title) or name, "summary": limit_summary(summary_markdown)}
    link = safe_url(details_url) if details_url else None
    client = Github(
        auth=Auth.Token(token),
        base_url=(api_url or DEFAULT_API_URL).rstrip("/"),
        timeout=timeout,
        retry=0,  # a retried POST could create the check run twice
        seconds_between_requests=None,
        seconds_between_writes=seconds_between_writes,
        user_agent="odooops-action",
        lazy=True,  # no GET of the repository before the POST
    )
    progress = _Progress()
    try:
        for batch in _batches(bodies) or [[]]:
            batch_output = {**output, "annotations": batch} if batch else output
            progress.requests += 1
            if progress.check is None:
                progress.check = client.get_repo(repository).create_check_run(
                    name=name,
                    head_sha=head_sha,
                    status="completed",
                    conclusion=conclusion,
                    output=batch_output,
                    details_url=link or NotSet,
                )
            else:
                progress.check.edit(output=batch_output)
            progress.sent += len(batch)
    except GithubException as exc:
        degraded, error = _explain(exc, name, repository, token, from_fork)
        return progress.result(dropped, degraded=_scrub(degraded or "", token), error=_scrub(error, token))
    except Exception as exc:  # a network failure must not fail the action
        error = f"Could not publish check run {name!r}: {type(exc).__name__}: {exc}"
        return progress.result(dropped, error=_scrub(error, token)[:1000])
    finally:
        client.close()
    return progress.result(dropped)
