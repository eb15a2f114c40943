"""Keys, JWTs and roles: what the Supabase gateway and PostgREST accept, and as whom SQL runs."""

from __future__ import annotations

import time

import httpx

from tests.devstack import DevStack, mint_jwt, role_jwt

PROFILE = {"Accept-Profile": "conformance", "Content-Profile": "conformance"}


def whoami(client: httpx.Client, headers: dict[str, str]) -> httpx.Response:
    return client.post("/rpc/whoami", json={}, headers={**PROFILE, **headers})


def test_missing_apikey_is_refused_by_the_gateway(bare: httpx.Client) -> None:
    response = bare.get("/projects", headers=PROFILE)
    assert response.status_code == 401
    assert "No API key" in response.json()["message"]


def test_unknown_apikey_is_refused(bare: httpx.Client) -> None:
    response = bare.get("/projects", headers={**PROFILE, "apikey": "sb_secret_not-a-real-key"})
    assert response.status_code == 401
    assert response.json()["message"] == "Invalid API key"


def test_non_jwt_in_authorization_is_pgrst301(bare: httpx.Client, devstack: DevStack) -> None:
    secret = devstack.secret_key
    response = whoami(bare, {"apikey": secret, "Authorization": f"Bearer {secret}"})
    assert response.status_code == 401
    body = response.json()
    assert body["code"] == "PGRST301"
    assert "Expected 3 parts in JWT" in body["message"]


def test_jwt_with_wrong_signature_is_pgrst301(bare: httpx.Client, devstack: DevStack) -> None:
    forged = role_jwt("service_role", "another-secret-that-is-long-enough-0000")
    response = whoami(bare, {"apikey": devstack.anon_key, "Authorization": f"Bearer {forged}"})
    assert response.status_code == 401
    assert response.json()["code"] == "PGRST301"


def test_expired_jwt_is_pgrst303_with_challenge(bare: httpx.Client, devstack: DevStack) -> None:
    expired = role_jwt(
        "service_role", devstack.keys.jwt_secret, issued_at=int(time.time()) - 7200, ttl_seconds=60
    )
    response = whoami(bare, {"apikey": devstack.anon_key, "Authorization": f"Bearer {expired}"})
    assert response.status_code == 401
    assert response.json()["code"] == "PGRST303"
    assert response.json()["message"] == "JWT expired"
    assert "invalid_token" in response.headers["WWW-Authenticate"]


def test_service_role_jwt_runs_as_service_role_with_claims(api: httpx.Client) -> None:
    body = api.post("/rpc/whoami", json={}).json()
    assert body["role"] == "service_role"
    assert body["claims"]["role"] == "service_role"
    assert body["claims"]["iss"] == "supabase"
    assert body["method"] == "POST"


def test_secret_key_in_apikey_only_maps_to_service_role(bare: httpx.Client, devstack: DevStack) -> None:
    response = whoami(bare, {"apikey": devstack.secret_key})
    assert response.status_code == 200
    assert response.json()["role"] == "service_role"


def test_publishable_key_maps_to_anon(bare: httpx.Client, devstack: DevStack) -> None:
    assert whoami(bare, {"apikey": devstack.publishable_key}).json()["role"] == "anon"


def test_anon_key_without_authorization_is_anon_with_its_timeout(
    bare: httpx.Client, devstack: DevStack
) -> None:
    body = whoami(bare, {"apikey": devstack.anon_key}).json()
    assert body["role"] == "anon"
    assert body["claims"] == {"role": "anon"}
    assert body["statement_timeout"] == "3s"


def test_role_comes_from_the_bearer_token(bare: httpx.Client, devstack: DevStack) -> None:
    token = mint_jwt(
        {"role": "authenticated", "sub": "u-1", "exp": int(time.time()) + 60}, devstack.keys.jwt_secret
    )
    body = whoami(bare, {"apikey": devstack.anon_key, "Authorization": f"Bearer {token}"}).json()
    assert body["role"] == "authenticated"
    assert body["claims"]["sub"] == "u-1"


def test_insufficient_privilege_is_401_without_jwt(bare: httpx.Client, devstack: DevStack) -> None:
    response = bare.get("/tasks", headers={**PROFILE, "apikey": devstack.anon_key})
    assert response.status_code == 401
    assert response.json()["code"] == "42501"


# PostgREST decides 401 or 403 by the request's role, not by whether a JWT came with it:
# ``PgError (Just authRole /= configDbAnonRole)`` in its App.hs; AuthSpec "hides tables from users
# with JWT that contain no claims about role" expects 401 with a JWT. So Supabase's anon key, a
# JWT of role anon, gets 401 on a table it has no privilege on, and a logged-in user gets 403.
def test_insufficient_privilege_is_401_for_the_anon_role_even_with_a_jwt(
    bare: httpx.Client, devstack: DevStack
) -> None:
    anon = devstack.anon_key
    response = bare.get("/tasks", headers={**PROFILE, "apikey": anon, "Authorization": f"Bearer {anon}"})
    assert response.status_code == 401
    assert response.json()["code"] == "42501"
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_insufficient_privilege_is_401_for_a_jwt_without_a_role(
    bare: httpx.Client, devstack: DevStack
) -> None:
    token = mint_jwt({"sub": "u-1", "exp": int(time.time()) + 60}, devstack.keys.jwt_secret)
    response = bare.get(
        "/tasks", headers={**PROFILE, "apikey": devstack.anon_key, "Authorization": f"Bearer {token}"}
    )
    assert (response.status_code, response.json()["code"]) == (401, "42501")


def test_insufficient_privilege_is_403_for_another_role(bare: httpx.Client, devstack: DevStack) -> None:
    token = mint_jwt({"role": "authenticated", "exp": int(time.time()) + 60}, devstack.keys.jwt_secret)
    response = bare.get(
        "/tasks", headers={**PROFILE, "apikey": devstack.anon_key, "Authorization": f"Bearer {token}"}
    )
    assert (response.status_code, response.json()["code"]) == (403, "42501")
    assert "WWW-Authenticate" not in response.headers


def test_rls_without_policy_hides_rows_from_anon(bare: httpx.Client, devstack: DevStack) -> None:
    anon = devstack.anon_key
    response = bare.get("/projects", headers={**PROFILE, "apikey": anon, "Authorization": f"Bearer {anon}"})
    assert response.status_code == 200
    assert response.json() == []


def test_service_role_bypasses_rls(api: httpx.Client) -> None:
    assert len(api.get("/projects").json()) == 3


def test_request_headers_reach_sql_as_json_with_lower_cased_names(
    bare: httpx.Client, devstack: DevStack
) -> None:
    """PostgREST hands every request header to SQL as ``request.headers`` (JSON, names
    lower-cased) and switches role with SET ROLE: what the token-checked functions rely on."""
    response = whoami(bare, {"apikey": devstack.publishable_key, "X-OdooOps-Token": "odooops_pat_Abc-123"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["headers"]["x-odooops-token"] == "odooops_pat_Abc-123"
    assert body["headers"]["apikey"] == devstack.publishable_key
    assert all(name == name.lower() for name in body["headers"])
    assert (body["role"], body["set_role"]) == ("anon", "anon")
