"""A typed view of the environment GitHub gives a step (never the token itself, only its presence)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass

_TOKEN_VARIABLES = ("INPUT_GITHUB_TOKEN", "INPUT_GITHUB-TOKEN", "GITHUB_TOKEN")
_PULL_REQUEST_EVENTS = frozenset({"pull_request", "pull_request_review", "pull_request_review_comment"})


def _positive_int(text: str | None, default: int) -> int:
    try:
        value = int(text) if text else default
    except ValueError:
        return default
    return value if value > 0 else default


@dataclass(frozen=True)
class GitHubContext:
    server_url: str = "https://github.com"
    api_url: str = "https://api.github.com"
    repository: str | None = None
    run_id: str | None = None
    run_attempt: int = 1
    job: str | None = None
    workflow_ref: str | None = None
    sha: str | None = None
    ref: str | None = None
    ref_name: str | None = None
    actor: str | None = None
    event_name: str | None = None
    has_token: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, token: str | None = None) -> GitHubContext:
        env = environ if environ is not None else os.environ

        def get(name: str) -> str | None:
            return env.get(name) or None

        return cls(
            server_url=(get("GITHUB_SERVER_URL") or cls.server_url).rstrip("/"),
            api_url=(get("GITHUB_API_URL") or cls.api_url).rstrip("/"),
            repository=get("GITHUB_REPOSITORY"),
            run_id=get("GITHUB_RUN_ID"),
            run_attempt=_positive_int(get("GITHUB_RUN_ATTEMPT"), 1),
            job=get("GITHUB_JOB"),
            workflow_ref=get("GITHUB_WORKFLOW_REF"),
            sha=get("GITHUB_SHA"),
            ref=get("GITHUB_REF"),
            ref_name=get("GITHUB_REF_NAME"),
            actor=get("GITHUB_ACTOR"),
            event_name=get("GITHUB_EVENT_NAME"),
            has_token=bool(token) or any(get(name) for name in _TOKEN_VARIABLES),
        )

    @property
    def run_url(self) -> str | None:
        if not self.repository or not self.run_id:
            return None
        url = f"{self.server_url}/{self.repository}/actions/runs/{self.run_id}"
        return f"{url}/attempts/{self.run_attempt}" if self.run_attempt > 1 else url

    @property
    def workflow_file(self) -> str | None:
        """``.github/workflows/ci.yml`` from ``owner/repo/.github/workflows/ci.yml@refs/heads/main``."""
        if not self.workflow_ref:
            return None
        path = self.workflow_ref
        if self.repository and path.startswith(self.repository + "/"):
            path = path[len(self.repository) + 1 :]
        else:  # a reusable workflow of another repository: drop its owner/name
            path = path.split("/", 2)[-1]
        # Ref names may hold "@" but always start with "refs/"; cut at the first "@refs/".
        at = path.find("@refs/")
        path = path[:at] if at >= 0 else path.rpartition("@")[0] or path
        return path or None


def pull_request_from_fork(environ: Mapping[str, str]) -> bool | None:
    """Whether the workflow runs for a pull request whose head is another repository (a fork).

    Such runs get a read-only ``GITHUB_TOKEN`` whatever ``permissions:`` says. None when the event
    payload (``GITHUB_EVENT_PATH``) cannot tell.
    """
    if environ.get("GITHUB_EVENT_NAME") not in _PULL_REQUEST_EVENTS:
        return False
    try:
        with open(environ.get("GITHUB_EVENT_PATH", ""), encoding="utf-8") as handle:
            pull_request = json.load(handle)["pull_request"]
        head, base = pull_request["head"]["repo"], pull_request["base"]["repo"]
        return bool(head is None or head["full_name"] != base["full_name"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
