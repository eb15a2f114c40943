"""A scoped token in the connection settings and on the wire (respx for HTTP)."""

from __future__ import annotations

import json

import httpx
import pytest
import respx
from rest_fakes import ANON_JWT, BASE_URL, RPC_URL

from odooops_action.config import ConnectionSettings
from odooops_action.errors import AuthError, ConfigError
from odooops_action.store.rest import RestStore

TOKEN = "odooops_pat_" + "Q" * 43
PUBLISHABLE = "sb_publishable_abcdefghijklmnop"


def test_a_token_goes_with_the_publishable_or_anon_key() -> None:
    settings = ConnectionSettings.from_env(
        {"SUPABASE_URL": BASE_URL, "SUPABASE_PUBLISHABLE_KEY": PUBLISHABLE, "ODOOOPS_TOKEN": TOKEN}, None
    )
    assert (settings.supabase_key, settings.token, settings.key_variable) == (
        PUBLISHABLE,
        TOKEN,
        "SUPABASE_PUBLISHABLE_KEY",
    )
    anon = ConnectionSettings.from_env(
        {"SUPABASE_URL": BASE_URL, "SUPABASE_ANON_KEY": ANON_JWT, "ODOOOPS_TOKEN": TOKEN}, None
    )
    assert anon.supabase_key == ANON_JWT
    assert TOKEN not in repr(settings)
    assert "token='<redacted>'" in repr(settings)


def test_a_token_without_a_key_names_the_variable_to_set() -> None:
    with pytest.raises(
        ConfigError, match="ODOOOPS_TOKEN is set but no key goes with it: export SUPABASE_PUBLISHABLE_KEY"
    ):
        ConnectionSettings.from_env({"SUPABASE_URL": BASE_URL, "ODOOOPS_TOKEN": TOKEN}, None)


@pytest.mark.parametrize(
    "value", ["ghp_0123456789abcdefghij", "odooops_pat_short", "odooops_pat_" + "x" * 30 + " y"]
)
def test_text_that_is_not_a_token_is_refused_without_echoing_it(value: str) -> None:
    with pytest.raises(ConfigError) as refused:
        ConnectionSettings(supabase_url=BASE_URL, supabase_key=PUBLISHABLE, token=value)
    assert "ODOOOPS_TOKEN is not an OdooOps token" in str(refused.value)
    assert value not in str(refused.value)


def test_the_anon_key_alone_points_to_tokens() -> None:
    with pytest.raises(
        ConfigError, match="cannot manage runs alone: set ODOOOPS_TOKEN to a scoped project token"
    ):
        ConnectionSettings(supabase_url=BASE_URL, supabase_key=ANON_JWT)


@respx.mock
def test_the_token_travels_in_a_header_never_in_the_body_or_url() -> None:
    route = respx.post(f"{RPC_URL}/cancel_run").mock(
        return_value=httpx.Response(
            403,
            json={
                "code": "PT403",
                "message": "OdooOps token tok-0123456789ab may read; ops.cancel_run needs the scope cancel, "
                "which it does not have",
                "hint": "Create a token whose --scope includes cancel (odooops token create).",
                "details": None,
            },
        )
    )
    store = RestStore(ConnectionSettings(supabase_url=BASE_URL, supabase_key=PUBLISHABLE, token=TOKEN))
    with pytest.raises(AuthError) as refused:
        store.cancel_run("run-20261201-120000-0123abc")
    request = route.calls.last.request
    assert request.headers["X-OdooOps-Token"] == TOKEN
    assert request.headers["apikey"] == PUBLISHABLE
    assert "Authorization" not in request.headers  # a publishable key is not a JWT
    assert TOKEN not in str(request.url)
    assert TOKEN not in json.dumps(json.loads(request.content))
    assert str(refused.value).startswith(
        "OdooOps token tok-0123456789ab may read; ops.cancel_run needs the scope cancel"
    )
    assert "Create a token whose --scope includes cancel" in str(refused.value)
