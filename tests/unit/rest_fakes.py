"""Test data shared by the unit tests: keys, URLs and rows shaped like the ``ops`` functions' answers."""

from __future__ import annotations

import base64
import json
from typing import Any

BASE_URL = "https://abcdefgh.supabase.co"
RPC_URL = f"{BASE_URL}/rest/v1/rpc"
SECRET_KEY = "sb_secret_Zx9QeVb3kLmN0pQrStUvWxYz12345678"


def _b64url(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def make_jwt(role: str) -> str:
    header = _b64url({"alg": "HS256", "typ": "JWT"})
    payload = _b64url(
        {"iss": "supabase", "ref": "abcdefgh", "role": role, "iat": 1700000000, "exp": 2000000000}
    )
    return f"{header}.{payload}.c2lnbmF0dXJlLW5vdC1jaGVja2Vk-{role}"


SERVICE_JWT = make_jwt("service_role")
ANON_JWT = make_jwt("anon")


def run_row(**overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "run_id": "run-20261201-120000-0123abc",
        "project_id": "acme",
        "env_id": "dev",
        "workflow_type": "build",
        "git_sha": "0123abc" + "0" * 33,
        "git_ref": "refs/heads/main",
        "status": "queued",
        "claimed_by": None,
        "queued_at": "2026-12-01T12:00:00+00:00",
        "attempt": 0,
        "event_seq": 0,
        "metadata": {},
    }
    row.update(overrides)
    return row


def event_row(seq: int, message: str = "step") -> dict[str, Any]:
    return {
        "event_id": f"evt-{seq}",
        "run_id": "run-20261201-120000-0123abc",
        "seq": seq,
        "level": "info",
        "message": message,
        "payload": {"n": seq},
        "created_at": "2026-12-01T12:00:05+00:00",
    }


def artifact_row(**overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "artifact_id": "art-1",
        "run_id": "run-20261201-120000-0123abc",
        "artifact_type": "image",
        "storage_path": "ghcr.io/acme/odoo@sha256:abc",
        "digest": "sha256:abc",
        "size_bytes": 1234,
        "metadata": {},
        "created_at": "2026-12-01T12:00:09+00:00",
    }
    row.update(overrides)
    return row
