"""ConnectionSettings: environment and .env parsing, precedence, validation, redaction."""

from __future__ import annotations

from pathlib import Path

import pytest
from rest_fakes import ANON_JWT, SECRET_KEY, SERVICE_JWT, make_jwt

from odooops_action.config import ConnectionSettings, jwt_claims, looks_like_jwt, parse_dotenv
from odooops_action.errors import ConfigError, InputError

URL = "https://abcdefgh.supabase.co"


def write_env(tmp_path: Path, text: str) -> Path:
    path = tmp_path / ".env"
    path.write_text(text, encoding="utf-8")
    return path


def test_reads_url_and_service_role_key_from_the_environment(tmp_path: Path) -> None:
    settings = ConnectionSettings.from_env(
        {"SUPABASE_URL": URL, "SUPABASE_SERVICE_ROLE_KEY": SERVICE_JWT}, tmp_path / "absent.env"
    )

    assert settings.supabase_url == URL
    assert settings.supabase_key == SERVICE_JWT
    assert settings.database_url is None
    assert (settings.timeout_seconds, settings.max_retries) == (10.0, 3)
    assert settings.has_rest


@pytest.mark.parametrize(
    ("variables", "expected_variable"),
    [
        (
            {
                "SUPABASE_SERVICE_ROLE_KEY": SERVICE_JWT,
                "SUPABASE_SECRET_KEY": "sb_secret_b",
                "SUPABASE_KEY": "k",
            },
            "SUPABASE_SERVICE_ROLE_KEY",
        ),
        ({"SUPABASE_SECRET_KEY": SECRET_KEY, "SUPABASE_KEY": "sb_secret_other"}, "SUPABASE_SECRET_KEY"),
        ({"SUPABASE_KEY": SECRET_KEY}, "SUPABASE_KEY"),
    ],
)
def test_key_variables_are_tried_in_order(variables: dict[str, str], expected_variable: str) -> None:
    settings = ConnectionSettings.from_env({"SUPABASE_URL": URL, **variables}, None)

    assert settings.supabase_key == variables[expected_variable]
    assert settings.key_variable == expected_variable


def test_the_anon_key_variable_is_never_used() -> None:
    with pytest.raises(ConfigError, match="SUPABASE_SERVICE_ROLE_KEY is not set"):
        ConnectionSettings.from_env({"SUPABASE_URL": URL, "SUPABASE_ANON_KEY": ANON_JWT}, None)


def test_dotenv_supplies_what_the_environment_lacks(tmp_path: Path) -> None:
    dotenv = write_env(
        tmp_path,
        "# local stack\n"
        f"export SUPABASE_URL={URL}/\n"
        f"SUPABASE_SERVICE_ROLE_KEY='{SERVICE_JWT}'\n"
        'DATABASE_URL="postgresql://postgres:pw@127.0.0.1:54322/postgres"  # direct\n',
    )

    settings = ConnectionSettings.from_env({}, dotenv)

    assert settings.supabase_url == URL
    assert settings.supabase_key == SERVICE_JWT
    assert settings.database_url == "postgresql://postgres:pw@127.0.0.1:54322/postgres"


def test_the_environment_wins_over_dotenv(tmp_path: Path) -> None:
    dotenv = write_env(
        tmp_path, f"SUPABASE_URL=https://other.supabase.co\nSUPABASE_SERVICE_ROLE_KEY={SERVICE_JWT}\n"
    )

    settings = ConnectionSettings.from_env({"SUPABASE_URL": URL, "SUPABASE_KEY": SECRET_KEY}, dotenv)

    assert settings.supabase_url == URL
    # A key exported in the shell is not shadowed by a differently named key in the file.
    assert settings.supabase_key == SECRET_KEY
    assert settings.key_variable == "SUPABASE_KEY"


def test_an_empty_environment_variable_falls_through_to_dotenv(tmp_path: Path) -> None:
    dotenv = write_env(tmp_path, f"SUPABASE_URL={URL}\nSUPABASE_SECRET_KEY={SECRET_KEY}\n")

    settings = ConnectionSettings.from_env({"SUPABASE_URL": "", "SUPABASE_SERVICE_ROLE_KEY": "  "}, dotenv)

    assert settings.supabase_url == URL
    assert settings.supabase_key == SECRET_KEY


def test_dotenv_parser_handles_quotes_exports_and_comments() -> None:
    text = "\n".join(
        [
            "# comment",
            "   ",
            "export A=plain value  # trailing comment",
            "B='single # not a comment'",
            'C="double \\"quoted\\"\\nline" # comment',
            "D=abc#def",
            "E=",
            "  F = spaced  ",
            "not an assignment",
            "1BAD=x",
            "G='unterminated",
        ]
    )

    assert parse_dotenv(text) == {
        "A": "plain value",
        "B": "single # not a comment",
        "C": 'double "quoted"\nline',
        "D": "abc#def",
        "E": "",
        "F": "spaced",
        "G": "unterminated",
    }


def test_missing_url_says_what_to_export() -> None:
    with pytest.raises(ConfigError) as caught:
        ConnectionSettings.from_env({"SUPABASE_SERVICE_ROLE_KEY": SERVICE_JWT}, None)

    assert str(caught.value) == (
        "SUPABASE_URL is not set: export SUPABASE_URL=https://<project>.supabase.co "
        "(or set DATABASE_URL for a direct PostgreSQL connection)."
    )


def test_database_url_alone_is_enough() -> None:
    settings = ConnectionSettings.from_env({"DATABASE_URL": "postgresql://u:secretpw@db:5432/postgres"}, None)

    assert settings.database_url == "postgresql://u:secretpw@db:5432/postgres"
    assert not settings.has_rest
    with pytest.raises(ConfigError, match="SUPABASE_URL is not set"):
        settings.require_rest()


def test_missing_key_names_the_variable() -> None:
    with pytest.raises(
        ConfigError, match=r"SUPABASE_SERVICE_ROLE_KEY is not set: export SUPABASE_SERVICE_ROLE_KEY="
    ):
        ConnectionSettings.from_env({"SUPABASE_URL": URL}, None)


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("https://abcdefgh.supabase.co", URL),
        ("https://abcdefgh.supabase.co/", URL),
        ("https://abcdefgh.supabase.co/rest/v1", URL),
        ("https://abcdefgh.supabase.co/rest/v1/", URL),
        ("  http://127.0.0.1:54321  ", "http://127.0.0.1:54321"),
    ],
)
def test_url_is_normalized_to_the_project_base(raw: str, normalized: str) -> None:
    assert ConnectionSettings(supabase_url=raw, supabase_key=SECRET_KEY).supabase_url == normalized


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("abcdefgh.supabase.co", "must start with https://"),
        ("ftp://abcdefgh.supabase.co", "must start with https://"),
        ("https://", "name a host"),
        ("https://abcdefgh.supabase.co/rest/v1/rpc", "without a path (got path '/rest/v1/rpc')"),
        ("https://abcdefgh.supabase.co/project", "without a path"),
        ("https://abcdefgh.supabase.co?x=1", "query string"),
        ("https://user:pw@abcdefgh.supabase.co", "must not contain credentials"),
        ("https://abcdefgh.supabase.co:99999", "not a valid URL"),
    ],
)
def test_malformed_urls_are_rejected_with_the_fix(raw: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ConnectionSettings(supabase_url=raw, supabase_key=SECRET_KEY)

    assert words in str(caught.value)
    assert "SUPABASE_URL" in str(caught.value)
    assert "pw" not in str(caught.value)


def test_anon_jwt_is_rejected_naming_the_variable_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as caught:
        ConnectionSettings.from_env({"SUPABASE_URL": URL, "SUPABASE_KEY": ANON_JWT}, None)

    message = str(caught.value)
    assert "SUPABASE_KEY holds the project's anon" in message
    assert "service_role key" in message
    assert ANON_JWT not in message
    assert ANON_JWT.split(".")[1] not in message


def test_publishable_key_is_rejected() -> None:
    key = "sb_publishable_AbCdEf123456"
    with pytest.raises(ConfigError, match="publishable key") as caught:
        ConnectionSettings(supabase_url=URL, supabase_key=key)

    assert key not in str(caught.value)


@pytest.mark.parametrize("key", ["eyJhbGciOi.eyJub3QganNvbg.sig", "sb_secret_has space", "sb_secret_ü"])
def test_malformed_keys_are_rejected(key: str) -> None:
    with pytest.raises(ConfigError, match="SUPABASE_SERVICE_ROLE_KEY") as caught:
        ConnectionSettings(supabase_url=URL, supabase_key=key)

    assert key not in str(caught.value)


@pytest.mark.parametrize("role", ["service_role", "authenticated", "custom_worker"])
def test_non_anon_jwts_are_accepted(role: str) -> None:
    key = make_jwt(role)

    assert ConnectionSettings(supabase_url=URL, supabase_key=key).supabase_key == key


def test_jwt_detection_and_unverified_claims() -> None:
    assert looks_like_jwt(SERVICE_JWT)
    assert not looks_like_jwt(SECRET_KEY)
    assert not looks_like_jwt("a.b")
    assert jwt_claims(SERVICE_JWT) == {
        "iss": "supabase",
        "ref": "abcdefgh",
        "role": "service_role",
        "iat": 1700000000,
        "exp": 2000000000,
    }
    assert jwt_claims("a.!!!.c") is None


def test_repr_and_str_hide_the_key_and_the_database_password() -> None:
    settings = ConnectionSettings(
        supabase_url=URL,
        supabase_key=SERVICE_JWT,
        database_url="postgresql://postgres:s3cr3t@db:5432/postgres",
    )

    for text in (repr(settings), str(settings), f"{settings}"):
        assert SERVICE_JWT not in text
        assert "s3cr3t" not in text
        assert "<redacted>" in text
        assert "postgres:***@db:5432" in text


def test_keyword_dsn_passwords_are_hidden_too() -> None:
    settings = ConnectionSettings(database_url="host=db user=postgres password=s3cr3t")

    assert "s3cr3t" not in repr(settings)


@pytest.mark.parametrize(("timeout", "retries"), [(0.0, 3), (-1.0, 3), (10.0, -1)])
def test_nonsense_timeouts_and_retries_are_rejected(timeout: float, retries: int) -> None:
    with pytest.raises(ConfigError):
        ConnectionSettings(
            supabase_url=URL, supabase_key=SECRET_KEY, timeout_seconds=timeout, max_retries=retries
        )


def test_an_unreadable_dotenv_is_a_config_error(tmp_path: Path) -> None:
    directory = tmp_path / "dir.env"
    directory.mkdir()

    with pytest.raises(ConfigError, match=r"Cannot read .*dir\.env"):
        ConnectionSettings.from_env({"SUPABASE_URL": URL, "SUPABASE_KEY": SECRET_KEY}, directory)


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://u:secretpw@db:5432/postgres",
        "postgres://db/postgres",
        "postgresql:///postgres?host=/var/run/postgresql",
        "host=db port=5432 dbname=postgres user=u password='with space'",
    ],
)
def test_database_urls_libpq_parses_are_accepted(dsn: str) -> None:
    assert ConnectionSettings(database_url=dsn).require_database_url() == dsn


@pytest.mark.parametrize(
    ("dsn", "words"),
    [
        ("not a url", "DATABASE_URL must be a PostgreSQL URL (postgresql://...) or a key=value connection"),
        ("postgresql://u:secretpw@db:port/postgres", "DATABASE_URL is not a valid PostgreSQL URL"),
        ("mysql://u:secretpw@db/app", "got (not repeated: it may hold a password)"),
        ("host=db password", "DATABASE_URL must be a PostgreSQL URL"),
    ],
)
def test_a_malformed_database_url_is_an_input_error_naming_it(dsn: str, words: str) -> None:
    settings = ConnectionSettings(database_url=dsn)
    with pytest.raises(InputError) as raised:
        settings.require_database_url()
    assert raised.value.exit_code == 2
    assert words in str(raised.value)
    assert "secretpw" not in str(raised.value)
