"""Regenerate ``github-openapi-check-runs.json`` from GitHub's official OpenAPI description.

    cd /tmp && npm pack @octokit/openapi && tar xzf octokit-openapi-*.tgz
    python tests/data/extract_check_runs_schema.py /tmp/package tests/data/github-openapi-check-runs.json

Only the request bodies (and path parameters) of the two check-run operations the action calls are
kept, with every ``$ref`` resolved, OpenAPI's ``nullable`` turned into JSON Schema, and the prose
(``description``, ``examples``) dropped.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OPERATIONS = (
    ("post", "/repos/{owner}/{repo}/check-runs"),
    ("patch", "/repos/{owner}/{repo}/check-runs/{check_run_id}"),
)
DROPPED_KEYS = frozenset({"description", "examples", "example"})


def _pointer(document: dict[str, Any], ref: str) -> Any:
    if not ref.startswith("#/"):
        raise ValueError(f"only local references are supported: {ref}")
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def resolve(document: dict[str, Any], node: Any, seen: tuple[str, ...] = ()) -> Any:
    if isinstance(node, list):
        return [resolve(document, item, seen) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        ref = node["$ref"]
        if ref in seen:
            raise ValueError(f"recursive reference {ref}")
        return resolve(document, _pointer(document, ref), (*seen, ref))
    result = {key: resolve(document, value, seen) for key, value in node.items() if key not in DROPPED_KEYS}
    if result.pop("nullable", False) and isinstance(result.get("type"), str):
        result["type"] = [result["type"], "null"]
    return result


def extract(package_dir: Path) -> dict[str, Any]:
    manifest = json.loads((package_dir / "package.json").read_text(encoding="utf-8"))
    document = json.loads((package_dir / "generated" / "api.github.com.json").read_text(encoding="utf-8"))
    operations: dict[str, Any] = {}
    for method, path in OPERATIONS:
        operation = document["paths"][path][method]
        parameters = [resolve(document, p) for p in operation.get("parameters", [])]
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        operations[f"{method.upper()} {path}"] = {
            "operationId": operation["operationId"],
            "pathParameters": {p["name"]: p["schema"] for p in parameters if p["in"] == "path"},
            "requestBody": resolve(document, body),
        }
    return {
        "source": {
            "package": manifest["name"],
            "version": manifest["version"],
            "file": "generated/api.github.com.json",
            "openapi": document["openapi"],
            "extracted_by": "tests/data/extract_check_runs_schema.py",
        },
        "operations": operations,
    }


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    result = extract(Path(argv[1]))
    Path(argv[2]).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
