"""The argument checks accept exactly what the database's CHECK constraints accept."""

from __future__ import annotations

import re
import types
from typing import Any

import psycopg
import pytest

from odooops_action import cli
from odooops_action.errors import InputError
from odooops_action.validation import (
    parse_positive_seconds,
    validate_env_id,
    validate_project_id,
    validate_run_id,
    validate_sha,
)

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize(
    "run_id",
    ["run-20260214-120000-abc123d", "run-20260214-120000-abc123d-2", "run-20260214-120000-abc123d-9999"],
)
def test_run_ids_as_the_database_makes_them(run_id: str) -> None:
    assert validate_run_id(run_id) == run_id


@pytest.mark.parametrize(
    "run_id",
    [
        "run-20260214-120000-abc123d-0",
        "run-20260214-120000-abc123d-10000",
        "run-20260214-120000-abc123",
        "run-2026021-120000-abc123d",
        "run-20260214-120000-ABC123D",
        "run-20260214-120000-abc123d\n",
        "run-٢٠٢٦٠٢١٤-120000-abc123d",  # Unicode digits
        " run-20260214-120000-abc123d",
    ],
)
def test_malformed_run_ids(run_id: str) -> None:
    with pytest.raises(InputError, match=r"^run_id must look like"):
        validate_run_id(run_id)


def test_the_run_id_check_matches_the_migration(db: psycopg.Connection[Any]) -> None:
    """Both sides agree on every case above (the database is the reference)."""
    row = db.execute(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'runs_run_id_format'"
    ).fetchone()
    assert row is not None
    pattern = re.search(r"'(\^.*\$)'", row[0])
    assert pattern is not None
    candidates = ["run-20260214-120000-abc123d-2", "run-20260214-120000-abc123d-0", "run-x"]
    for candidate in [*candidates, "run-20260214-120000-abc123d\n", "run-20260214-120000-abc123d-10000"]:
        in_database = db.execute("SELECT %s ~ %s", (candidate, pattern.group(1))).fetchone() == (True,)
        try:
            validate_run_id(candidate)
            locally = True
        except InputError:
            locally = False
        assert locally == in_database, candidate


def test_sha_is_lower_cased_and_trimmed() -> None:
    assert validate_sha(f" {SHA.upper()}\n") == SHA


def test_sha_error_names_the_argument() -> None:
    with pytest.raises(InputError) as short:
        validate_sha("abc123d", name="git_sha")
    assert (
        short.value.message
        == "git_sha must be the full 40-character commit SHA (got 'abc123d', 7 characters)."
    )


@pytest.mark.parametrize("good", ["dev", "staging", "prod", "eu-west.1", "A", "x" * 63])
def test_environment_ids(good: str) -> None:
    assert validate_env_id(good) == good


@pytest.mark.parametrize("bad", ["", "-dev", ".dev", "dev env", "x" * 64, "dév"])
def test_bad_environment_ids(bad: str) -> None:
    with pytest.raises(InputError, match=r"^env_id must be"):
        validate_env_id(bad)


@pytest.mark.parametrize("bad", ["", "_p", "p/q", "x" * 101])
def test_bad_project_ids(bad: str) -> None:
    with pytest.raises(InputError, match=r"^project_id must be"):
        validate_project_id(bad)


@pytest.mark.parametrize(("text", "seconds"), [("1200", 1200.0), (" 2.5 ", 2.5), ("1e3", 1000.0), (7, 7.0)])
def test_positive_seconds(text: str | float, seconds: float) -> None:
    assert parse_positive_seconds(text, "timeout") == seconds


@pytest.mark.parametrize("text", ["0", "-1", "nan", "inf", "", "5s", "ten"])
def test_not_positive_seconds(text: str) -> None:
    with pytest.raises(InputError, match=r"^timeout must be a"):
        parse_positive_seconds(text, "timeout")


def test_worker_command_is_delegated(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []

    def fake_main(argv: list[str]) -> int:
        seen.append(argv)
        return 7

    monkeypatch.setitem(
        __import__("sys").modules, "odooops_action.worker.cli", types.SimpleNamespace(main=fake_main)
    )
    assert cli.main(["worker", "--once", "--rest"]) == 7
    assert seen == [["--once", "--rest"]]
