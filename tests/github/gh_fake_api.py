"""A real HTTP server on 127.0.0.1 playing the two check-run endpoints of GitHub's REST API.

Every request body is validated against the vendored request schemas from GitHub's official
OpenAPI description (``tests/data/github-openapi-check-runs.json``) and against the documented
limits the schema does not encode (annotation message 64 KB, title 255 characters).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema

SCHEMA_FILE = Path(__file__).resolve().parents[1] / "data" / "github-openapi-check-runs.json"
VENDORED = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
CREATE = "POST /repos/{owner}/{repo}/check-runs"
UPDATE = "PATCH /repos/{owner}/{repo}/check-runs/{check_run_id}"
_ROUTES = {
    CREATE: ("POST", re.compile(r"^/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/check-runs$")),
    UPDATE: (
        "PATCH",
        re.compile(r"^/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/check-runs/(?P<check_run_id>[^/]+)$"),
    ),
}


def _validator(schema: dict[str, Any]) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)


@dataclass
class Recorded:
    operation: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    raw: str


@dataclass
class FakeGitHub:
    """Answers check-run calls; ``fail`` maps an operation to ``(status, json body)`` to return."""

    fail: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    base_url: str = ""
    next_id: int = 7001

    def problems_in(self, operation: str, path_params: dict[str, str], body: Any) -> list[str]:
        spec = VENDORED["operations"][operation]
        problems = [f"{operation}: {e.message}" for e in _validator(spec["requestBody"]).iter_errors(body)]
        for name, schema in spec["pathParameters"].items():
            value: Any = path_params[name]
            if schema.get("type") == "integer":
                value = int(value) if value.isdigit() else value
            problems += [f"{operation} {name}: {e.message}" for e in _validator(schema).iter_errors(value)]
        output = body.get("output", {}) if isinstance(body, dict) else {}
        if "title" in output and len(output["title"]) > 255:
            problems.append("output.title longer than 255 characters")
        for annotation in output.get("annotations", []):
            if len(annotation.get("message", "").encode("utf-8")) > 64 * 1024:
                problems.append("annotation message larger than 64 KB")
            if len(annotation.get("title", "")) > 255:
                problems.append("annotation title longer than 255 characters")
        return problems

    def check_run(self, check_run_id: int, owner: str, repo: str, body: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.base_url}/repos/{owner}/{repo}/check-runs/{check_run_id}"
        return {
            "id": check_run_id,
            "node_id": f"CR_{check_run_id}",
            "head_sha": body.get("head_sha", "0" * 40),
            "external_id": "",
            "url": url,
            "html_url": f"https://github.com/{owner}/{repo}/runs/{check_run_id}",
            "details_url": body.get("details_url"),
            "status": body.get("status", "completed"),
            "conclusion": body.get("conclusion"),
            "started_at": "2025-03-01T12:00:00Z",
            "completed_at": "2025-03-01T12:01:12Z",
            "output": {
                "title": body.get("output", {}).get("title"),
                "summary": body.get("output", {}).get("summary"),
                "text": None,
                "annotations_count": len(body.get("output", {}).get("annotations", [])),
                "annotations_url": f"{url}/annotations",
            },
            "name": body.get("name", "odooops"),
            "check_suite": {"id": 1},
            "app": None,
            "pull_requests": [],
        }

    def handle(self, method: str, path: str, headers: dict[str, str], raw: str) -> tuple[int, dict[str, Any]]:
        for operation, (route_method, pattern) in _ROUTES.items():
            match = pattern.match(path)
            if route_method != method or not match:
                continue
            try:
                body = json.loads(raw)
            except json.JSONDecodeError:
                self.problems.append(f"{operation}: body is not JSON")
                return 400, {"message": "Problems parsing JSON"}
            self.requests.append(Recorded(operation, path, headers, body, raw))
            problems = self.problems_in(operation, match.groupdict(), body)
            if problems:
                self.problems += problems
                return 422, {"message": "Invalid request.", "errors": problems}
            if operation in self.fail:
                return self.fail[operation]
            params = match.groupdict()
            if operation == CREATE:
                self.next_id += 1
                return 201, self.check_run(self.next_id, params["owner"], params["repo"], body)
            return 200, self.check_run(int(params["check_run_id"]), params["owner"], params["repo"], body)
        self.problems.append(f"unexpected request {method} {path}")
        return 404, {"message": "Not Found"}


def _handler(fake: FakeGitHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode("utf-8") if length else ""
            status, body = fake.handle(self.command, self.path, dict(self.headers.items()), raw)
            data = json.dumps(body).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


@contextmanager
def serve(fake: FakeGitHub) -> Iterator[FakeGitHub]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    host, port = server.server_address[:2]
    fake.base_url = f"http://{host!s}:{port}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
